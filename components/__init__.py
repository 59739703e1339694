"""Code that runs inside TFX executors: ingestion, preprocessing, model building, training.

Keras version, decided here and only here: TF Transform 1.16's TransformFeaturesLayer is a
`tf_keras` (Keras 2) model, and TFMA loads our SavedModels through `tf.keras`. Both must mean the
same Keras, so `tf.keras` is pinned to `tf_keras` before TensorFlow is first imported. Every
entry point (CLI, tests, TFX executors) imports this package before TensorFlow.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
