"""The Tuner stage: the search space around the config, trials through the Trainer's own
fine-tune on inputs decoded once, TFX's outputs of the search, and the Trainer taking the best
values. Training is scripted here (a trial's score is a function of its values); the
end-to-end run of `finetune run --tuner-trials` trains for real (tests/pipeline)."""
import contextlib
import dataclasses

import pytest
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.tuner import executor as tfx_tuner_executor
from tfx.types import standard_artifacts, standard_component_specs

from tfx_finetune.components import trainer, tuner
from tfx_finetune.components.trainer_config import UNFREEZE_ALL
from tfx_finetune.components.tuner import search
from tfx_finetune.pipeline.config import PipelineConfig
from tfx_finetune.reports import tuning as tuning_report

HP = PipelineConfig(weights="none", phase2_epochs=4, phase2_learning_rate=3e-3,
                    unfreeze_layers=30).trainer_config()


def test_search_space_is_around_the_configured_values():
    space = search.search_space(HP)
    assert space.values == {"phase2_learning_rate": 3e-3, "unfreeze_layers": 30,
                            "phase2_epochs": 4}
    assert tuple(space.values) == tuner.TUNED_FIELDS
    rate, depth, epochs = (space.get_config()["space"][i]["config"] for i in range(3))
    assert (rate["min_value"], rate["max_value"], rate["sampling"]) == (
        pytest.approx(3e-4), pytest.approx(9e-3), "log")
    assert depth["values"] == [UNFREEZE_ALL, 20, 30, 50, 100]
    assert (epochs["min_value"], epochs["max_value"]) == (2, 8)


def test_the_trainer_takes_the_best_values_and_keeps_the_config_without_a_tuner():
    best = {"space": [], "values": {"phase2_learning_rate": 1e-3, "unfreeze_layers": -1,
                                    "phase2_epochs": 6, "unrelated": 1}}
    tuned = tuner.with_best(HP, best)
    assert tuned == dataclasses.replace(HP, phase2_learning_rate=1e-3,
                                        unfreeze_layers=UNFREEZE_ALL, phase2_epochs=6)
    assert tuner.with_best(HP, None) is HP


def test_the_output_files_are_the_ones_tfx_writes():
    assert tuner.BEST_HYPERPARAMETERS_FILE == tfx_tuner_executor._DEFAULT_BEST_HP_FILE_NAME
    assert tuner.TUNER_RESULTS_FILE == tfx_tuner_executor._DEFAULT_TUNER_RESULTS_FILE_NAME


def _scripted(monkeypatch, score):
    """Trials train nothing: `train_two_phases` answers `score(config)` as the best epoch's
    validation accuracy. Returns the log of (inputs, config) each trial trained with and of
    the times the inputs were decoded."""
    log = {"trials": [], "decoded": 0}

    @contextlib.contextmanager
    def training_inputs(fn_args, hp, transform_output):
        log["decoded"] += 1
        yield trainer.TrainingInputs(trainer.configure_hardware([], hp.batch_size),
                                     "train", "val", None, 3)

    def train_two_phases(model, train, val, config, log_dir, weights):
        log["trials"].append(((train, val), config))
        return {"phase1": {"val_accuracy": [0.1]},
                "phase2": {"val_accuracy": [0.2, score(config), 0.3]}}

    monkeypatch.setattr(trainer, "training_inputs", training_inputs)
    monkeypatch.setattr(trainer, "build_model", lambda config, num_classes: object())
    monkeypatch.setattr(trainer, "train_two_phases", train_two_phases)
    return log


def _tune(tmp_path, trials):
    fn_args = FnArgs(working_dir=str(tmp_path / "work"), transform_graph_path=str(tmp_path / "tg"),
                     custom_config={**HP.to_custom_config(), tuner.TRIALS_KEY: trials})
    result = search.tuner_fn(fn_args)
    result.tuner.search(**result.fit_kwargs)
    return result.tuner


def test_each_trial_is_a_fine_tune_and_the_best_reaches_the_report(tmp_path, monkeypatch):
    """Every trial fine-tunes with its own values on the same inputs, decoded once; TFX's
    Tuner writes the best trial's values, which the Trainer and the report read."""
    log = _scripted(monkeypatch, lambda c: 0.5 + c.phase2_epochs / 100)
    found = _tune(tmp_path, trials=4)
    assert log["decoded"] == 1 and len(log["trials"]) == 4
    assert {inputs for inputs, _ in log["trials"]} == {("train", "val")}
    configs = [config for _, config in log["trials"]]
    assert len({tuple(getattr(c, f) for f in tuner.TUNED_FIELDS) for c in configs}) == 4
    assert all(dataclasses.replace(c, **{f: getattr(HP, f) for f in tuner.TUNED_FIELDS}) == HP
               for c in configs)  # nothing else varies
    winner = max(configs, key=lambda c: c.phase2_epochs)

    outputs = {key: [standard_artifacts.HyperParameters()]
               for key in (standard_component_specs.BEST_HYPERPARAMETERS_KEY,
                           standard_component_specs.TUNER_RESULTS_KEY)}
    for key, (artifact,) in outputs.items():
        artifact.uri = str(tmp_path / key)
    tfx_tuner_executor.write_best_hyperparameters(found, outputs)
    read = tuning_report.read(outputs[standard_component_specs.TUNER_RESULTS_KEY][0].uri,
                              outputs[standard_component_specs.BEST_HYPERPARAMETERS_KEY][0].uri,
                              cached=False)
    assert read.best == {f: getattr(winner, f) for f in tuner.TUNED_FIELDS}
    assert [t["score"] for t in read.trials] == sorted(
        (0.5 + c.phase2_epochs / 100 for c in configs), reverse=True)
    best_hp = found.get_best_hyperparameters()[0].get_config()
    assert tuner.with_best(HP, best_hp) == winner


def test_a_search_where_every_trial_fails_says_why(tmp_path, monkeypatch):
    def fail(config):
        raise ValueError("out of memory in phase 2")

    _scripted(monkeypatch, fail)
    with pytest.raises(search.NoTrialCompletedError, match="out of memory in phase 2"):
        _tune(tmp_path, trials=2)


def test_the_report_lists_every_trial_best_first():
    tuning = tuning_report.Tuning(
        trials=[{"trial_id": "1", "score": 0.9, "phase2_learning_rate": 0.001,
                 "unfreeze_layers": -1, "phase2_epochs": 6},
                {"trial_id": "0", "score": 0.8, "phase2_learning_rate": 0.003,
                 "unfreeze_layers": 100, "phase2_epochs": 5}],
        best={"phase2_learning_rate": 0.001, "unfreeze_layers": -1, "phase2_epochs": 6},
        cached=True)
    lines = tuning_report.report_lines(tuning)
    assert lines[1] == "## Tuning"
    assert lines[3] == ("- 2 trial(s), best val accuracy 0.9000 (from the cache: not tuned "
                        "again); trained with phase2_learning_rate 0.001, unfreeze_layers all, "
                        "phase2_epochs 6")
    assert lines[-2:] == ["| 1 | 0.9000 | 0.001 | all | 6 |", "| 0 | 0.8000 | 0.003 | 100 | 5 |"]
