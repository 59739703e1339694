"""The Tuner's `tuner_fn` (referred to as `tfx_finetune.components.tuner.search.tuner_fn`): a
KerasTuner random search whose trials are the Trainer's own fine-tune.

A trial is not one Keras `fit`: it builds the Trainer's model and runs both phases
(`trainer.train_two_phases`) on the Trainer's cached inputs, so the search is a `BaseTuner`
with its own `run_trial`. (`keras_tuner.Tuner` would also check the model against Keras 3,
which KerasTuner 1.4 imports here, while the pipeline's models are Keras 2, `tf_keras`.)
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Dict, Optional

import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from keras_tuner.engine import base_tuner
from keras_tuner.engine import trial as trial_lib
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.tuner.component import TunerFnResult

from tfx_finetune.components import history as history_lib
from tfx_finetune.components import trainer
from tfx_finetune.components.trainer_config import UNFREEZE_ALL, TrainerConfig
from tfx_finetune.components.tuner import OBJECTIVE, TRIALS_KEY, TUNED_FIELDS

# Depths every search may try beside the configured one.
UNFREEZE_DEPTHS = (20, 50, 100, UNFREEZE_ALL)


def search_space(hp: TrainerConfig) -> keras_tuner.HyperParameters:
    """Around the configured values, which are each field's default: phase 2's rate from a
    tenth to three times it (log scale), the configured depth or one of `UNFREEZE_DEPTHS`,
    and from half to twice the configured phase-2 epochs."""
    space = keras_tuner.HyperParameters()
    rate = hp.phase2_learning_rate
    space.Float("phase2_learning_rate", rate / 10, rate * 3, sampling="log", default=rate)
    space.Choice("unfreeze_layers", sorted({hp.unfreeze_layers, *UNFREEZE_DEPTHS}),
                 default=hp.unfreeze_layers)
    space.Int("phase2_epochs", max(1, hp.phase2_epochs // 2), 2 * hp.phase2_epochs,
              default=hp.phase2_epochs)
    return space


def trial_config(hp: TrainerConfig, values: Dict) -> TrainerConfig:
    return dataclasses.replace(hp, **{name: values[name] for name in TUNED_FIELDS})


def best_val_accuracy(history: Dict[str, Dict[str, list]]) -> float:
    """The validation accuracy the trained model ends with: each phase keeps its best epoch,
    so the last phase's best."""
    phase = history_lib.PHASE2 if history_lib.PHASE2 in history else history_lib.PHASE1
    return float(max(history[phase][OBJECTIVE]))


class NoTrialCompletedError(RuntimeError):
    """Every trial failed; the message holds the first failure."""


class TwoPhaseSearch(base_tuner.BaseTuner):
    """Random search over `search_space(hp)`; each trial fine-tunes from the same start (same
    seed, same pretrained weights) with the trial's values and reports `OBJECTIVE`."""

    def __init__(self, fn_args: FnArgs, hp: TrainerConfig, trials: int):
        super().__init__(
            oracle=keras_tuner.oracles.RandomSearchOracle(
                objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
                max_trials=trials, hyperparameters=search_space(hp), tune_new_entries=False,
                seed=hp.seed),
            directory=fn_args.working_dir, project_name="trials", overwrite=True)
        self._fn_args, self._hp = fn_args, hp
        self._inputs: Optional[trainer.TrainingInputs] = None

    def search(self, *args, **kwargs) -> None:
        """Decodes and caches the train and eval splits once for all trials."""
        transform_output = tft.TFTransformOutput(self._fn_args.transform_graph_path)
        with trainer.training_inputs(self._fn_args, self._hp, transform_output) as inputs:
            self._inputs = inputs
            try:
                super().search(*args, **kwargs)
            finally:
                self._inputs = None
        completed = [t for t in self.oracle.trials.values()
                     if t.status == trial_lib.TrialStatus.COMPLETED]
        if not completed:
            failures = [t.message for t in self.oracle.trials.values() if t.message]
            raise NoTrialCompletedError(
                "no Tuner trial completed; the first failure:\n"
                + (failures[0] if failures else "(none recorded)"))

    def run_trial(self, trial, *args, **kwargs) -> Dict[str, float]:
        config = trial_config(self._hp, trial.hyperparameters.values)
        logging.info("Tuner trial %s: %s", trial.trial_id,
                     {name: getattr(config, name) for name in TUNED_FIELDS})
        inputs = self._inputs
        tf.keras.utils.set_random_seed(config.seed)  # every trial starts alike
        with inputs.hardware.strategy.scope():
            model = trainer.build_model(config, inputs.num_classes)
            history = trainer.train_two_phases(
                model, inputs.train, inputs.val, config,
                os.path.join(self._fn_args.working_dir, "logs", trial.trial_id), inputs.weights)
        return {OBJECTIVE: best_val_accuracy(history)}


def tuner_fn(fn_args: FnArgs) -> TunerFnResult:
    """TFX Tuner entry point; `fn_args.custom_config` is the Trainer's with `TRIALS_KEY`."""
    custom_config = dict(fn_args.custom_config)
    trials = int(custom_config.pop(TRIALS_KEY))
    hp = TrainerConfig.from_custom_config(custom_config)
    return TunerFnResult(tuner=TwoPhaseSearch(fn_args, hp, trials), fit_kwargs={})
