"""The Trainer's `history.json`: what `run_fn` writes in its ModelRun output, per phase, and how
the reports read it back. Its keys are named here only."""
from __future__ import annotations

import json
import os
from typing import Dict, Optional

HISTORY_FILE = "history.json"
PHASE1 = "phase1"
PHASE2 = "phase2"
PHASES = (PHASE1, PHASE2)
# Keras' names for the loss and the metric `compile_model` asks for; "val_" + name for the
# validation split's.
LOSS = "loss"
ACCURACY = "accuracy"
VAL_PREFIX = "val_"
VAL_LOSS = VAL_PREFIX + LOSS
VAL_ACCURACY = VAL_PREFIX + ACCURACY
# What the Trainer's `_RecordEpochFacts` adds to every epoch's logs.
LEARNING_RATE = "learning_rate"
TRAINABLE_PARAMS = "trainable_params"
EPOCH_SECONDS = "epoch_seconds"
# Phase 1 on features: the one pass computing them, before its epochs.
FEATURES_SECONDS = "features_seconds"

History = Dict[str, Dict[str, list]]  # {phase: {key: one value per epoch}}


def history_path(model_run_dir: str) -> str:
    return os.path.join(model_run_dir, HISTORY_FILE)


def read(path: str) -> Optional[History]:
    """The history at `path`, or None when the Trainer wrote none there."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def best_val_accuracy(history: History, phase: str) -> Optional[float]:
    values = history.get(phase, {}).get(VAL_ACCURACY) or []
    return max(values) if values else None


def trained_params(history: History, phase: str) -> Optional[int]:
    """Parameters trained in `phase` (its first epoch's count), None when it did not run."""
    params = history.get(phase, {}).get(TRAINABLE_PARAMS)
    return int(params[0]) if params else None


def training_seconds(history: History) -> float:
    """Wall time of both phases' epochs and of computing phase 1's features."""
    return sum(sum(history.get(phase, {}).get(key, []))
               for phase in PHASES for key in (EPOCH_SECONDS, FEATURES_SECONDS))
