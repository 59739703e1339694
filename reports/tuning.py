"""The Tuner's search in a run's summary and report: its trials and the values the Trainer
trained with."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List

from tfx_finetune.components import tuner
from tfx_finetune.components.trainer_config import UNFREEZE_ALL
from tfx_finetune.reports.formatting import number


@dataclasses.dataclass
class Tuning:
    """The Tuner's completed trials, best first (TFX's tuner_results.json rows: `trial_id`,
    `score` = the trial's validation accuracy, and its values of `tuner.TUNED_FIELDS`), and
    the values the Trainer trained with."""

    trials: List[dict]
    best: Dict[str, Any]
    cached: bool  # the search is an earlier run's: nothing was tuned now


def read(results_uri: str, best_hyperparameters_uri: str, cached: bool) -> Tuning:
    """From the Tuner's two outputs (`tuner_results`, `best_hyperparameters`)."""
    with open(os.path.join(results_uri, tuner.TUNER_RESULTS_FILE)) as f:
        trials = json.load(f)
    with open(os.path.join(best_hyperparameters_uri, tuner.BEST_HYPERPARAMETERS_FILE)) as f:
        values = json.load(f)["values"]
    return Tuning(trials, {name: values[name] for name in tuner.TUNED_FIELDS}, cached)


def _value(name: str, value: Any) -> str:
    if name == "unfreeze_layers" and value == UNFREEZE_ALL:
        return "all"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def text(tuning: Tuning) -> str:
    """The search and what the Trainer took from it, on one line."""
    best = ", ".join(f"{name} {_value(name, tuning.best[name])}" for name in tuner.TUNED_FIELDS)
    score = number(tuning.trials[0]["score"]) if tuning.trials else "n/a"
    cached = " (from the cache: not tuned again)" if tuning.cached else ""
    return (f"{len(tuning.trials)} trial(s), best val accuracy {score}{cached}; "
            f"trained with {best}")


def report_lines(tuning: Tuning) -> List[str]:
    """The report's Tuning section: every completed trial, best first."""
    lines = ["", "## Tuning", "", f"- {text(tuning)}", "",
             "| trial | val accuracy | " + " | ".join(tuner.TUNED_FIELDS) + " |",
             "|---|---|" + "---|" * len(tuner.TUNED_FIELDS)]
    for trial in tuning.trials:
        values = " | ".join(_value(name, trial.get(name)) for name in tuner.TUNED_FIELDS)
        lines.append(f"| {trial['trial_id']} | {number(trial['score'])} | {values} |")
    return lines
