"""The Evaluator component: TFX's Evaluator, its baseline read from the serving directory."""
from __future__ import annotations

from typing import List

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from tfx_finetune.components.evaluator import driver, executor


class EvaluatorSpec(standard_component_specs.EvaluatorSpec):
    """TFX's Evaluator spec (its `baseline_model` input left unconnected) plus where the
    baseline is served."""

    PARAMETERS = {
        **standard_component_specs.EvaluatorSpec.PARAMETERS,
        executor.BASELINE_BASE_DIRECTORY_KEY: ExecutionParameter(type=str, optional=True),
        # Set by the driver where the orchestrator runs it (see `driver`).
        executor.BASELINE_MODEL_PATH_KEY: ExecutionParameter(type=str, optional=True),
    }


class Evaluator(base_beam_component.BaseBeamComponent):
    """Evaluates `model` on `example_splits` with TFMA and blesses it per `eval_config`.

    With `baseline_base_directory` (a TF Serving base directory) the baseline of the change
    thresholds is the newest version served there whose content differs from the candidate;
    without one, or when nothing is served yet, only the value thresholds judge (TFX's rubber
    stamp). The blessing records the baseline as `baseline_model_path`.
    """

    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = driver.BaselineDriver

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 eval_config: tfma.EvalConfig, example_splits: List[str],
                 baseline_base_directory: str = ""):
        super().__init__(spec=EvaluatorSpec(
            examples=examples, model=model, eval_config=eval_config,
            example_splits=json_utils.dumps(example_splits),
            baseline_base_directory=baseline_base_directory or None,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing)))
