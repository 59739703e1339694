"""Driver of the image ExampleGen: a content fingerprint of the input for TFX caching."""
from __future__ import annotations

import os
from typing import Iterable, Optional

from tfx.components.example_gen import driver, input_processor
from tfx.proto import example_gen_pb2, range_config_pb2

from tfx_finetune.components.digest import directory_digest


class _ContentInputProcessor(input_processor.InputProcessor):
    """A local input folder: span 0 and no version (ImageExampleGen's split patterns have no
    {SPAN} or {VERSION}), fingerprinted by content."""

    def __init__(self, input_base: str, splits: Iterable[example_gen_pb2.Input.Split],
                 range_config: Optional[range_config_pb2.RangeConfig] = None):
        super().__init__(splits=splits, range_config=range_config)
        self._input_base = input_base

    def get_pattern_for_span_version(self, pattern: str, span: int,
                                     version: Optional[int]) -> str:
        return pattern

    def get_latest_span(self) -> int:
        return 0

    def get_input_fingerprint(self, span: int, version: Optional[int]) -> str:
        return f"sha256:{directory_digest(self._input_base)}"


class ContentFingerprintDriver(driver.FileBasedDriver):
    """Stock file-based ExampleGens fingerprint inputs by size and mtime, so an image edited in
    place with its mtime kept would reuse stale examples. This fingerprint hashes content, and
    replaces TFX's (which would list and stat every file once more). Remote inputs (gs://,
    s3://) keep TFX's own fingerprint."""

    def get_input_processor(self, splits: Iterable[example_gen_pb2.Input.Split],
                            range_config: Optional[range_config_pb2.RangeConfig] = None,
                            input_base_uri: Optional[str] = None
                            ) -> input_processor.InputProcessor:
        if input_base_uri and os.path.isdir(input_base_uri):
            return _ContentInputProcessor(input_base_uri, splits, range_config)
        return super().get_input_processor(splits, range_config, input_base_uri)
