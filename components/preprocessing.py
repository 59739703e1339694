"""The TF Transform preprocessing: decode any image to RGB, resize, build the label vocabulary.

This graph is the single preprocessing definition: the Trainer's input pipeline and both
serving signatures apply it, so training and serving cannot disagree. Backbone-specific
normalisation lives inside the model, so one Transform output serves every backbone.
"""
from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf
import tensorflow_transform as tft

from tfx_finetune.components import features


def resize_images(images: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resizes a batch of [N, H, W, 3] images to float32 [N, size, size, 3] in [0, 255]."""
    return tf.image.resize(tf.cast(images, tf.float32), (image_size, image_size),
                           method=tf.image.ResizeMethod.BILINEAR)


def decode_image(image_bytes: tf.Tensor) -> tf.Tensor:
    """Decodes one JPEG/PNG/GIF/BMP by content to uint8 RGB [H, W, 3].

    Grayscale becomes three equal channels, alpha is dropped, a GIF gives its first frame.
    """
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def decode_and_resize(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Maps a [N] (or [N, 1]) string tensor of encoded images to float32 [N, size, size, 3]."""
    image_bytes = tf.reshape(image_bytes, [-1])
    return tf.map_fn(
        lambda b: resize_images(decode_image(b)[tf.newaxis], image_size)[0],
        image_bytes,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))


def preprocessing_fn(inputs: Dict[str, tf.Tensor],
                     custom_config: Dict[str, Any]) -> Dict[str, tf.Tensor]:
    """TF Transform entry point.

    Args:
      inputs: raw features; `image` holds encoded bytes, `label` the class name.
      custom_config: {"image_size": int}, the pipeline config's image size.

    Returns:
      `image_xf`: float32 [N, size, size, 3] RGB in [0, 255];
      `label_xf`: int64 [N] index into the `label_vocabulary` asset.

    Raises:
      ValueError: when `custom_config` has no image size.
    """
    if "image_size" not in custom_config:
        raise ValueError("preprocessing_fn needs Transform(custom_config={'image_size': N}): "
                         "pass the pipeline config's image_size")
    image_size = custom_config["image_size"]
    label = tf.reshape(inputs[features.LABEL_KEY], [-1])
    return {
        features.transformed_name(features.IMAGE_KEY):
            decode_and_resize(inputs[features.IMAGE_KEY], image_size),
        features.transformed_name(features.LABEL_KEY):
            tft.compute_and_apply_vocabulary(label, vocab_filename=features.LABEL_VOCABULARY),
    }
