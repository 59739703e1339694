"""A tiny Keras classifier that needs no training ("bright" when the mean pixel is above 127.5),
its TFLite conversions, and the SavedModel signatures the TFLiteCheck reads, for fast tests."""
import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from tfx_finetune.components import preprocessing, signatures, tflite

SIZE = 8
CLASSES = ["dark", "bright"]


def brightness_classifier(invert: bool = False) -> tf.keras.Model:
    """Flatten → Dense(64) → softmax over (dark, bright); unit 0 of the hidden layer is the mean
    pixel, the others are small random weights (so the file has weights to quantize).
    `invert` swaps the answers."""
    rng = np.random.default_rng(0)
    inputs = tf.keras.Input((SIZE, SIZE, 3))
    hidden = tf.keras.layers.Dense(64)(tf.keras.layers.Flatten()(inputs))
    outputs = tf.keras.layers.Dense(2, activation="softmax")(hidden)
    model = tf.keras.Model(inputs, outputs)
    kernel = rng.uniform(-0.01, 0.01, (SIZE * SIZE * 3, 64)).astype(np.float32)
    kernel[:, 0] = 1.0 / (SIZE * SIZE * 3)
    k = -0.2 if invert else 0.2
    head = np.zeros((64, 2), np.float32)
    head[0] = [-k, k]
    model.layers[2].set_weights([kernel, np.zeros(64, np.float32)])
    model.layers[3].set_weights([head, np.array([k * 127.5, -k * 127.5], np.float32)])
    return model


def png(level: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((SIZE, SIZE, 3), level, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def example(level: int, label: str) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png(level)])),
        "label": tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()])),
    })).SerializeToString()


# Grey levels and labels: two of the ten are labelled against their brightness.
LABELLED = [(10, "dark"), (60, "dark"), (100, "dark"), (200, "dark"), (120, "dark"),
            (250, "bright"), (180, "bright"), (140, "bright"), (30, "bright"), (220, "bright")]


def write_examples(root: str, split: str = "test") -> str:
    """An Examples artifact folder holding `LABELLED` as `split`."""
    os.makedirs(os.path.join(root, f"Split-{split}"))
    with tf.io.TFRecordWriter(os.path.join(root, f"Split-{split}", "data.gz"), "GZIP") as writer:
        for level, label in LABELLED:
            writer.write(example(level, label))
    return root


def save_serving_model(model: tf.keras.Model, path: str) -> str:
    """A SavedModel with the trained model's `transform_features` and `serving_examples`
    signatures (the Transform's decode and resize, labels by name)."""
    module = tf.Module()
    module.model = model
    spec = {"image": tf.io.FixedLenFeature([1], tf.string),
            "label": tf.io.FixedLenFeature([1], tf.string)}

    def transform(examples):
        parsed = tf.io.parse_example(examples, spec)
        return {"image_xf": preprocessing.decode_and_resize(parsed["image"], SIZE),
                "label_xf": tf.cast(tf.reshape(parsed["label"], [-1]) == CLASSES[1], tf.int64)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return transform(examples)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        return {"probabilities": model(transform(examples)["image_xf"], training=False)}

    tf.saved_model.save(module, path, signatures={
        signatures.TRANSFORM_FEATURES: transform_features,
        signatures.SERVING_EXAMPLES: serve_examples})
    return path


def trained_model_dir(root: str, tflite_model: tf.keras.Model, mode: str = "float32") -> str:
    """A Trainer's Model artifact folder: the brightness SavedModel in Format-Serving and
    `tflite_model` converted in Format-TFLite."""
    save_serving_model(brightness_classifier(), os.path.join(root, "Format-Serving"))
    representative = preprocessing.decode_and_resize(
        tf.constant([png(level) for level in range(0, 256, 16)]), SIZE).numpy()
    tflite.convert(tflite_model, SIZE, mode, tflite.tflite_dir(root), CLASSES, representative)
    return root
