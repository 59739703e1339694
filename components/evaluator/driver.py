"""Driver of the Evaluator: puts the baseline (the served version) into the cache key."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from tfx import types
from tfx.types import standard_component_specs
from tfx.utils import path_utils

from tfx_finetune.components import published
from tfx_finetune.components.evaluator import executor


class BaselineDriver(published.WorkspaceDriver):
    """Finds the served version to bless against: the newest other than the candidate."""

    EXEC_PROPERTY = executor.BASELINE_MODEL_PATH_KEY

    def lookup(self, input_dict: Dict[str, List[types.Artifact]],
               exec_properties: Dict[str, Any]) -> Optional[str]:
        base_dir = exec_properties.get(executor.BASELINE_BASE_DIRECTORY_KEY)
        if not base_dir:
            return None
        return published.baseline_model(base_dir, path_utils.serving_model_path(
            input_dict[standard_component_specs.MODEL_KEY][0].uri))
