import dataclasses

import pytest
from google.protobuf import json_format, struct_pb2

from tfx_finetune.components.image_example_gen.options import IngestionOptions
from tfx_finetune.pipeline.config import PipelineConfig


def _through_struct(options: IngestionOptions) -> dict:
    """What the executor reads back from ExampleGen's CustomConfig."""
    struct = struct_pb2.Struct()
    struct.update(options.to_struct_dict())
    return json_format.MessageToDict(struct)


def test_options_come_back_typed_from_the_struct_that_holds_ints_as_floats():
    options = dataclasses.replace(PipelineConfig().ingestion_options(), label_names=("a", "b"))
    carried = _through_struct(options)
    assert isinstance(carried["max_image_bytes"], float)
    rebuilt = IngestionOptions.from_struct_dict(carried)
    assert rebuilt == options
    assert type(rebuilt.max_image_bytes) is int and type(rebuilt.min_images_per_class) is int


def test_an_unknown_input_format_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="use one of folder, csv, tfrecord"):
        dataclasses.replace(PipelineConfig().ingestion_options(), input_format="zip")
