"""The image ExampleGen's typed options and their form inside ExampleGen's CustomConfig."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Tuple

from tfx_finetune.components import typed_dict

INPUT_FORMATS = ("folder", "csv", "tfrecord")


@dataclasses.dataclass(frozen=True)
class IngestionOptions:
    """What ingestion reads and what it accepts.

    The pipeline config (`tfx_finetune.pipeline.config.PipelineConfig.ingestion_options`)
    makes them; no field has a default here, so every value comes from there.
    `input_format` is one of `INPUT_FORMATS`; `image_feature` and `label_feature` name the
    features of TFRecord input; `label_names`, when not empty, turns label i (an index) into
    `label_names[i]`. Images above `max_image_bytes` or `max_image_pixels` are rejected; the
    run fails above `max_reject_fraction` rejected or below `min_images_per_class` images in a
    class.
    """

    input_format: str
    image_feature: str
    label_feature: str
    max_image_bytes: int
    max_image_pixels: int
    max_reject_fraction: float
    min_images_per_class: int
    label_names: Tuple[str, ...]

    def __post_init__(self):
        if self.input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format {self.input_format!r}: use one of "
                             f"{', '.join(INPUT_FORMATS)}")

    def to_struct_dict(self) -> Dict[str, Any]:
        """The options as a dict a protobuf Struct can hold (ExampleGen's CustomConfig)."""
        return typed_dict.plain(self)

    @classmethod
    def from_struct_dict(cls, values: Mapping[str, Any]) -> "IngestionOptions":
        """Rebuilds the options from `to_struct_dict`'s form with the field types
        (`typed_dict.rebuild`): a protobuf Struct holds every number as a float.

        Raises:
          ValueError: when `values` do not fit, naming what to do.
        """
        return typed_dict.rebuild(cls, values, "the ImageExampleGen options")
