"""Executor of the image ExampleGen: TFX's ExampleGen `Do` around this project's ingestion.

Listing (`listing`), reading and checking images (`to_example`), splitting (`split`) and the
ingestion report (`summary`) each live in their own module; this one wires them into TFX.
"""
from __future__ import annotations

import itertools
import json
import os
from typing import Any, Dict

import apache_beam as beam
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from tfx_finetune.components.image_example_gen.split import (
    SplitKeepingEveryClassInTrain, WriteSplit, label_of)
from tfx_finetune.components.image_example_gen import REPORT_DIR
from tfx_finetune.components.image_example_gen.summary import summarize_ingestion
from tfx_finetune.components.image_example_gen.to_example import (
    REPORT_DIR_KEY, ImagesToExample, options_from_exec_properties)


class Executor(BaseExampleGenExecutor):
    """ExampleGen executor for images: splits by hash of the `path` feature, with every class
    kept in train (`split.SplitKeepingEveryClassInTrain`)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return ImagesToExample

    def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                               exec_properties: Dict[str, Any]) -> Dict[str, beam.pvalue.PCollection]:
        """The base class's split by hash buckets (ImageExampleGen always configures output
        splits over one input split), with every class kept in train."""
        input_config, output_config = example_gen_pb2.Input(), example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                                  input_config)
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                                  output_config)
        names = example_gen_utils.generate_output_split_names(input_config, output_config)
        buckets = list(itertools.accumulate(
            s.hash_buckets for s in output_config.split_config.splits))
        examples = pipeline | "InputToRecord" >> ImagesToExample(
            exec_properties, input_config.splits[0].pattern)
        splits = dict(zip(names, examples | "Split" >> SplitKeepingEveryClassInTrain(buckets)))
        report_dir = exec_properties[REPORT_DIR_KEY]
        for name, examples in splits.items():
            _ = (examples
                 | f"Labels[{name}]" >> beam.Map(label_of)
                 | f"CountPerClass[{name}]" >> beam.combiners.Count.PerElement()
                 | f"AsDict[{name}]" >> beam.combiners.ToDict()
                 | f"ToJson[{name}]" >> beam.Map(json.dumps)
                 | f"WriteCounts[{name}]" >> beam.io.WriteToText(
                     os.path.join(report_dir, f"counts-{name}.json"), shard_name_template=""))
        return splits

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        """BaseExampleGenExecutor.Do, with the examples written by `split.WriteSplit`."""
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY])
        report_dir = os.path.join(examples.uri, REPORT_DIR)
        properties = dict(exec_properties, **{REPORT_DIR_KEY: report_dir})
        input_config, output_config = example_gen_pb2.Input(), example_gen_pb2.Output()
        proto_utils.json_to_proto(properties[standard_component_specs.INPUT_CONFIG_KEY],
                                  input_config)
        proto_utils.json_to_proto(properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                                  output_config)
        examples.split_names = artifact_utils.encode_split_names(
            example_gen_utils.generate_output_split_names(input_config, output_config))
        with self._make_beam_pipeline() as pipeline:
            for name, split in self.GenerateExamplesByBeam(pipeline, properties).items():
                _ = split | f"WriteSplit[{name}]" >> WriteSplit(
                    artifact_utils.get_split_uri([examples], name))
        examples_utils.set_payload_format(
            examples, properties[standard_component_specs.OUTPUT_DATA_FORMAT_KEY])
        examples_utils.set_file_format(examples, write_split.to_file_format_str(
            properties[standard_component_specs.OUTPUT_FILE_FORMAT_KEY]))
        summary = summarize_ingestion(report_dir, options_from_exec_properties(exec_properties))
        examples.set_int_custom_property("rejected_count", summary["rejected"])
        examples.set_int_custom_property("skipped_count", summary["skipped"])
