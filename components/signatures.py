"""Serving signatures: raw image bytes or serialized tf.Examples in, class probabilities out.

Every signature applies the Transform graph before the model, so serving runs exactly the
training preprocessing.
"""
from __future__ import annotations

from typing import Dict, List

import tensorflow as tf
import tensorflow_transform as tft

from tfx_finetune.components import features

SERVING_DEFAULT = "serving_default"
SERVING_EXAMPLES = "serving_examples"
TRANSFORM_FEATURES = "transform_features"
# TF Serving's REST API base64-decodes {"b64": ...} values of inputs whose name ends in _bytes.
IMAGE_BYTES_INPUT = "image_bytes"


def class_names(tf_transform_output: tft.TFTransformOutput) -> List[str]:
    """Class names in label-index order, from the Transform's label vocabulary."""
    return [name.decode("utf-8") for name in
            tf_transform_output.vocabulary_by_name(features.LABEL_VOCABULARY)]


def make_signatures(model: tf.keras.Model,
                    tf_transform_output: tft.TFTransformOutput) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """Builds the `serving_default`, `serving_examples` and `transform_features` signatures.

    The Transform layer is attached to `model` so that it is saved with it.
    """
    model.tft_layer = tf_transform_output.transform_features_layer()
    names = tf.constant(class_names(tf_transform_output))
    raw_spec = tf_transform_output.raw_feature_spec()
    input_spec = {features.IMAGE_KEY: raw_spec[features.IMAGE_KEY]}
    image_xf = features.transformed_name(features.IMAGE_KEY)

    def predict(raw_features):
        probabilities = model(model.tft_layer(raw_features)[image_xf], training=False)
        class_id = tf.argmax(probabilities, axis=-1)
        return {"probabilities": probabilities, "class_id": class_id,
                "class_name": tf.gather(names, class_id)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)])
    def serve_image_bytes(image_bytes):
        return predict({features.IMAGE_KEY: tf.reshape(image_bytes, [-1, 1])})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        return predict(tf.io.parse_example(examples, input_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, raw_spec))

    return {
        SERVING_DEFAULT: serve_image_bytes.get_concrete_function(),
        SERVING_EXAMPLES: serve_examples.get_concrete_function(),
        TRANSFORM_FEATURES: transform_features.get_concrete_function(),
    }
