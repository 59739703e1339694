"""Class weights for imbalanced training splits (Keras `class_weight`)."""
from __future__ import annotations

import collections
from typing import Dict, Optional

import tensorflow as tf

from tfx_finetune.components.trainer_config import TrainerConfig

# Classes are "imbalanced" when the largest has this many times the images of the smallest.
IMBALANCE_RATIO = 1.5


def balanced(label_counts: Dict[int, int]) -> Optional[Dict[int, float]]:
    """Balanced class weights (n / (k · count)) when classes are imbalanced, else None."""
    counts = [c for c in label_counts.values() if c]
    if not counts or max(counts) < IMBALANCE_RATIO * min(counts):
        return None
    total, k = sum(counts), len(label_counts)
    return {label: total / (k * count) for label, count in label_counts.items() if count}


def label_counts(dataset: tf.data.Dataset) -> Dict[int, int]:
    """Images per integer label in a dataset of (images, labels) batches."""
    counts: Dict[int, int] = collections.Counter()
    for _, labels in dataset:
        counts.update(labels.numpy().tolist())
    return dict(counts)


def training_class_weights(hp: TrainerConfig,
                           train: tf.data.Dataset) -> Optional[Dict[int, float]]:
    """`balanced` weights of the training split when the config asks for them ("auto")."""
    return balanced(label_counts(train)) if hp.class_weights == "auto" else None
