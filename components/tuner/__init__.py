"""The optional Tuner stage (`tuner_trials` > 0): TFX's Tuner runs `search.tuner_fn`, whose
trials are the Trainer's own two-phase fine-tune with phase 2's rate, unfreezing depth and
epochs drawn from `search_space`, each judged by its best validation accuracy on the eval
split; the Trainer trains with the best trial's values (`with_best`).

This module holds what the Trainer and the reports need without loading KerasTuner."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

from tfx_finetune.components import history as history_lib
from tfx_finetune.components.trainer_config import TrainerConfig

# The TrainerConfig fields a trial varies, in the order the report shows them.
TUNED_FIELDS = ("phase2_learning_rate", "unfreeze_layers", "phase2_epochs")
# What a trial is judged by (the Trainer keeps each phase's best epoch on it too).
OBJECTIVE = history_lib.VAL_ACCURACY
# Where TFX's Tuner executor writes its outputs (tfx/components/tuner/executor.py:
# _DEFAULT_BEST_HP_FILE_NAME, _DEFAULT_TUNER_RESULTS_FILE_NAME; tested against them).
BEST_HYPERPARAMETERS_FILE = "best_hyperparameters.txt"
TUNER_RESULTS_FILE = "tuner_results.json"
# The key of the trial budget in the Tuner's custom_config, beside the Trainer's config.
TRIALS_KEY = "tuner_trials"


def with_best(hp: TrainerConfig, hyperparameters: Optional[Mapping[str, Any]]) -> TrainerConfig:
    """`hp` with the tuned fields of a KerasTuner HyperParameters config (what TFX hands the
    Trainer as `fn_args.hyperparameters`: {"space": [...], "values": {...}}); `hp` itself
    without one."""
    if not hyperparameters:
        return hp
    values = hyperparameters["values"]
    return dataclasses.replace(hp, **{name: type(getattr(hp, name))(values[name])
                                      for name in TUNED_FIELDS if name in values})
