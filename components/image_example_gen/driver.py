"""Driver of the image ExampleGen: a content fingerprint of the input for TFX caching."""
from __future__ import annotations

import os
from typing import Any, Dict

from tfx.components.example_gen import driver, utils
from tfx.types import standard_component_specs

from components.digest import directory_digest


class ContentFingerprintDriver(driver.FileBasedDriver):
    """Stock file-based ExampleGens fingerprint inputs by size and mtime, so an image edited in
    place with its mtime kept would reuse stale examples. This fingerprint hashes content.
    Remote inputs (gs://, s3://) keep TFX's own fingerprint."""

    def resolve_exec_properties(self, exec_properties: Dict[str, Any], pipeline_info,
                                component_info) -> Dict[str, Any]:
        exec_properties = super().resolve_exec_properties(exec_properties, pipeline_info,
                                                          component_info)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        if os.path.isdir(input_base):
            exec_properties[utils.FINGERPRINT_PROPERTY_NAME] = (
                f"sha256:{directory_digest(input_base)}")
        return exec_properties
