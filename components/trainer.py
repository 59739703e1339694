"""The Trainer's `run_fn`: the two-phase fine-tune, composed of small functions."""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List

import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from components import features, model as model_lib, signatures

SHUFFLE_BUFFER = 10_000


def _input_fn(file_patterns: List[str], tf_transform_output: tft.TFTransformOutput,
              batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    """(image_xf, label_xf) batches from raw ExampleGen records through the Transform graph.

    Transform does not materialise its output (no float pixels on disk); the graph runs here
    in parallel, after the small encoded records are cached in memory.
    """
    files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
    raw_spec = tf_transform_output.raw_feature_spec()
    image_xf = features.transformed_name(features.IMAGE_KEY)
    label_xf = features.transformed_name(features.LABEL_KEY)

    def transform(serialized):
        transformed = tf_transform_output.transform_raw_features(
            tf.io.parse_example(serialized, raw_spec), drop_unused_features=True)
        return transformed[image_xf], transformed[label_xf]

    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").cache()
    if shuffle:
        dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    return (dataset.batch(batch_size)
            .map(transform, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def _callbacks(log_dir: str) -> list:
    return [
        tf.keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=3,
                                         restore_best_weights=True),
        tf.keras.callbacks.TensorBoard(log_dir=log_dir),
    ]


def train_two_phases(model: tf.keras.Model, train: tf.data.Dataset, val: tf.data.Dataset,
                     hp: Dict[str, Any], log_dir: str) -> Dict[str, Dict[str, list]]:
    """Phase 1 trains the head on the frozen base; phase 2 unfreezes the top base layers.

    Returns:
      Per-phase Keras history: {"phase1": {...}, "phase2": {...}}.
    """
    model_lib.compile_model(model, hp["phase1_learning_rate"])
    logging.info("phase 1: head only, %d epochs at lr %g", hp["phase1_epochs"],
                 hp["phase1_learning_rate"])
    phase1 = model.fit(train, validation_data=val, epochs=hp["phase1_epochs"], verbose=2,
                       callbacks=_callbacks(os.path.join(log_dir, "phase1")))
    history = {"phase1": phase1.history}
    if hp["phase2_epochs"] and hp["unfreeze_layers"]:
        unfrozen = model_lib.unfreeze_top_layers(model, hp["unfreeze_layers"])
        model_lib.compile_model(model, hp["phase2_learning_rate"])  # trainable changed
        logging.info("phase 2: top %d base layers (%d with weights) unfrozen, %d epochs at lr %g",
                     hp["unfreeze_layers"], unfrozen, hp["phase2_epochs"],
                     hp["phase2_learning_rate"])
        start = len(phase1.history["loss"])
        phase2 = model.fit(train, validation_data=val, initial_epoch=start,
                           epochs=start + hp["phase2_epochs"], verbose=2,
                           callbacks=_callbacks(os.path.join(log_dir, "phase2")))
        history["phase2"] = phase2.history
    return history


def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer entry point (referred to as `components.trainer.run_fn`)."""
    hp = fn_args.custom_config
    tf.keras.utils.set_random_seed(hp["seed"])
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _input_fn(fn_args.train_files, tf_transform_output, hp["batch_size"], True, hp["seed"])
    val = _input_fn(fn_args.eval_files, tf_transform_output, hp["batch_size"], False, hp["seed"])
    num_classes = len(signatures.class_names(tf_transform_output))
    model = model_lib.build_model(hp["backbone"], num_classes, hp["image_size"], hp["weights"],
                                  hp["head_units"], hp["dropout"])
    history = train_two_phases(model, train, val, hp, fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, "history.json"), "w") as f:
        json.dump(history, f, indent=2, default=float)
    model.save(fn_args.serving_model_dir, save_format="tf",
               signatures=signatures.make_signatures(model, tf_transform_output))
