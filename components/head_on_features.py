"""Phase 1 on the frozen base's features: each image goes through the base once, and the head
trains on the pooled features it gave.

While the base is frozen (and its BatchNorm in inference mode), its output for an image
never changes, so every phase-1 epoch on images recomputes the same features. Computing them
once makes a phase-1 epoch cost almost nothing, so the head trains to convergence for the
price of one inference pass: linear probing, then fine-tuning (LP-FT, Kumar et al., ICLR 2022,
"Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution"). The
training images are not augmented in this phase (the features are computed once); phase 2
trains on augmented images as before.
"""
from __future__ import annotations

import time
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

# The layer the head starts from (`model.build_model`).
POOL_LAYER = "pool"


def head_model(model: tf.keras.Model) -> tf.keras.Model:
    """The model's head as a model of its own, from the pooled features to the class
    probabilities. It shares the model's layers: training it trains the model's head."""
    names = [layer.name for layer in model.layers]
    pool = model.get_layer(POOL_LAYER)
    inputs = tf.keras.Input(pool.output.shape[1:], name="pooled_features")
    x = inputs
    for layer in model.layers[names.index(POOL_LAYER) + 1:]:
        x = layer(x)
    return tf.keras.Model(inputs, x, name="head")


def pooled_features(model: tf.keras.Model,
                    dataset: tf.data.Dataset) -> Tuple[np.ndarray, np.ndarray, float]:
    """(features, labels, seconds): the pooled base output of every image of `dataset` in
    inference mode (augmentation off), one pass in the dataset's order. The features take
    4 bytes per channel of the base's output and image (5 KB for MobileNetV2's 1,280)."""
    started = time.perf_counter()
    extractor = tf.keras.Model(model.inputs, model.get_layer(POOL_LAYER).output)
    features, labels = [], []
    for images, batch_labels in dataset:
        features.append(extractor.predict_on_batch(images))
        labels.append(batch_labels.numpy())
    if not features:
        raise ValueError("phase 1 on features: the dataset has no images")
    return (np.concatenate(features).astype(np.float32), np.concatenate(labels),
            time.perf_counter() - started)


def applies(phase1_on_features: bool, base: tf.keras.Model) -> bool:
    """Whether phase 1 trains on features: when `phase1_on_features` asks for it and the base
    is frozen (from scratch, weights="none", the base trains in phase 1 too, on images)."""
    return phase1_on_features and not base.trainable


def feature_batches(model: tf.keras.Model, dataset: tf.data.Dataset, batch_size: int,
                    seed: Optional[int] = None) -> Tuple[tf.data.Dataset, float]:
    """(batches, seconds): the `pooled_features` of `dataset` with their labels in batches
    of `batch_size`, reshuffled each epoch with `seed` (None: in order), and the seconds
    computing them took."""
    x, y, seconds = pooled_features(model, dataset)
    batches = tf.data.Dataset.from_tensor_slices((x, y))
    if seed is not None:
        batches = batches.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return batches.batch(batch_size), seconds


def phase1_inputs(model: tf.keras.Model, train: tf.data.Dataset, val: tf.data.Dataset,
                  batch_size: int, seed: int
                  ) -> Tuple[tf.keras.Model, tf.data.Dataset, tf.data.Dataset, float]:
    """What phase 1 fits on features: the head (`head_model`), the training split's features
    (reshuffled each epoch) and the validation split's, in batches of `batch_size`, and the
    seconds computing the features took."""
    train_features, train_seconds = feature_batches(model, train, batch_size, seed)
    val_features, val_seconds = feature_batches(model, val, batch_size)
    return head_model(model), train_features, val_features, train_seconds + val_seconds
