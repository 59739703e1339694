"""Executor of the Evaluator: TFX's, with the served model as the baseline."""
from __future__ import annotations

import logging
import os
import shutil
from typing import Any, Dict, List

from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import io_utils, path_utils

from tfx_finetune.components import published
from tfx_finetune.components.evaluator import BASELINE_MODEL_PROPERTY

BASELINE_BASE_DIRECTORY_KEY = "baseline_base_directory"
BASELINE_MODEL_PATH_KEY = "baseline_model_path"
# TFX records the baseline's ML Metadata id; the baseline here is a served version, not an
# artifact, so its path is recorded instead (BASELINE_MODEL_PROPERTY).
_BASELINE_ID_PROPERTY = "baseline_model_id"


def resolve_baseline(exec_properties: Dict[str, Any], candidate_model_dir: str) -> str:
    """The served version to bless against, or "" when there is none.

    Takes the driver's answer when it ran (`baseline_model_path`), else looks in
    `baseline_base_directory` itself; an empty base directory means no baseline.
    """
    found = exec_properties.get(BASELINE_MODEL_PATH_KEY)
    base_dir = exec_properties.get(BASELINE_BASE_DIRECTORY_KEY)
    if not found and base_dir:
        found = published.baseline_model(base_dir, candidate_model_dir)
    return "" if not found or found == published.NOTHING_EARLIER else found


class Executor(evaluator_executor.Executor):
    """Runs TFX's Evaluator with the newest served version (other than the candidate) as
    `baseline_model`. TFX reads a Model artifact's SavedModel from `<uri>/Format-Serving`, so
    the served version is copied into that layout in the executor's temporary directory."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        candidate = path_utils.serving_model_path(
            artifact_utils.get_single_uri(input_dict[standard_component_specs.MODEL_KEY]))
        baseline_path = resolve_baseline(exec_properties, candidate)
        inputs = dict(input_dict)
        staged = None
        if baseline_path:
            logging.info("Evaluator: blessing against the served version %s", baseline_path)
            staged = os.path.join(self._get_tmp_dir(), "baseline")
            io_utils.copy_dir(baseline_path, path_utils.serving_model_dir(staged))
            baseline = standard_artifacts.Model()
            baseline.uri = staged
            inputs[standard_component_specs.BASELINE_MODEL_KEY] = [baseline]
        try:
            super().Do(inputs, output_dict, exec_properties)
        finally:
            if staged and os.path.isdir(staged):
                shutil.rmtree(staged)
        blessing = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.BLESSING_KEY])
        blessing.set_string_custom_property(BASELINE_MODEL_PROPERTY, baseline_path)
        if blessing.has_custom_property(_BASELINE_ID_PROPERTY):
            del blessing.mlmd_artifact.custom_properties[_BASELINE_ID_PROPERTY]
