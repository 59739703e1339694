"""Model building and the two fine-tune phases, each a small function testable without TFX."""
from __future__ import annotations

import os
from typing import Optional

import tensorflow as tf

from components import features
from components.backbones import BACKBONES


def resolve_weights(weights: str) -> Optional[str]:
    """Maps the config's `weights` value to what keras.applications accepts.

    Raises:
      FileNotFoundError: when a weights path does not exist.
    """
    if weights == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"weights file {weights} does not exist: pass weights=imagenet (needs internet), "
            "weights=none, or the path of a weights file saved for this backbone")
    return weights


def build_base(backbone: str, image_size: int, weights: str) -> tf.keras.Model:
    """Builds the pretrained base without its top, all layers frozen.

    Raises:
      RuntimeError: when ImageNet weights cannot be downloaded (no internet), saying where
        to put the file instead.
    """
    spec = BACKBONES[backbone]
    try:
        base = spec.build(image_size, resolve_weights(weights))
    except Exception as e:
        if weights != "imagenet":
            raise
        raise RuntimeError(
            f"could not get ImageNet weights for {spec.application} ({e}). Without internet, "
            "download the '..._notop' weights file on a connected machine, copy it here and "
            "pass weights=<path to the file> (Keras caches downloads in ~/.keras/models/).") from e
    base.trainable = False
    return base


def build_model(backbone: str, num_classes: int, image_size: int, weights: str,
                head_units: int, dropout: float) -> tf.keras.Model:
    """Phase-1 model: frozen base + GAP → Dense(head_units, relu) → Dropout → softmax.

    The input is the Transform output: float32 RGB in [0, 255]; the backbone's own
    normalisation is the first step inside the model.
    """
    base = build_base(backbone, image_size, weights)
    inputs = tf.keras.Input((image_size, image_size, 3),
                            name=features.transformed_name(features.IMAGE_KEY))
    x = BACKBONES[backbone].normalize(inputs)
    x = base(x, training=False)  # keep BatchNorm in inference mode after unfreezing
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = tf.keras.layers.Dense(head_units, activation="relu", name="head_dense")(x)
    x = tf.keras.layers.Dropout(dropout, name="head_dropout")(x)
    # float32 output keeps softmax numerically safe if a mixed-precision policy is ever set.
    outputs = tf.keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                    name="probabilities")(x)
    return tf.keras.Model(inputs, outputs, name=f"{backbone}_finetune")


def compile_model(model: tf.keras.Model, learning_rate: float) -> None:
    """(Re)compiles with Adam at `learning_rate`; needed after every change of `trainable`."""
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def get_base(model: tf.keras.Model) -> tf.keras.Model:
    """The pretrained base: the one nested model inside the fine-tune model."""
    return next(layer for layer in model.layers if isinstance(layer, tf.keras.Model))


def unfreeze_top_layers(model: tf.keras.Model, count: int) -> int:
    """Phase 2: makes the last `count` base layers trainable, BatchNorm layers excepted.

    Returns:
      The number of base layers left trainable.
    """
    base = get_base(model)
    base.trainable = True
    cutoff = len(base.layers) - count
    for index, layer in enumerate(base.layers):
        is_batch_norm = isinstance(layer, tf.keras.layers.BatchNormalization)
        layer.trainable = index >= cutoff and not is_batch_norm
    return sum(1 for layer in base.layers if layer.trainable and layer.weights)
