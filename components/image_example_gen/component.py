"""The image ExampleGen component: a FileBasedExampleGen with our executor and driver."""
from __future__ import annotations

import os
from typing import Sequence

from google.protobuf import struct_pb2
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from tfx_finetune.components import features
from tfx_finetune.components.image_example_gen import driver, executor
from tfx_finetune.components.image_example_gen.options import IngestionOptions
from tfx_finetune.components.splits import SPLIT_NAMES


class ImageExampleGen(FileBasedExampleGen):
    """Writes train/eval/test tf.Examples (`image`, `label`, `path`) from one of:

    - `input_format="folder"`: `<input_path>/<class>/<image>`;
    - `input_format="csv"`: `input_path` is a CSV manifest with `path,label` columns, paths
      relative to its folder;
    - `input_format="tfrecord"`: `input_path` is a folder of TFRecord files of tf.Examples
      whose `image_feature` and `label_feature` hold the bytes and the class.

    The split is by hash of each image's stable key (its relative path), so it is
    deterministic and an image keeps its split when others are added; the one exception
    keeps every class in train: a class none of whose images hashes to train has its image
    with the smallest hash placed there (Transform's label vocabulary is built from train
    alone). `split_ratios` are the train, eval and test hash buckets; `options` say what is
    read and what is accepted.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = driver.ContentFingerprintDriver

    def __init__(self, input_path: str, split_ratios: Sequence[int], options: IngestionOptions):
        if options.input_format == "csv":
            input_base, pattern = os.path.dirname(input_path), os.path.basename(input_path)
        elif options.input_format == "tfrecord":
            input_base, pattern = input_path, "*"
        else:
            input_base, pattern = input_path, "*/*"
        struct = struct_pb2.Struct()
        struct.update(options.to_struct_dict())
        custom_config = example_gen_pb2.CustomConfig()
        custom_config.custom_config.Pack(struct)
        super().__init__(
            input_base=input_base,
            input_config=example_gen_pb2.Input(
                splits=[example_gen_pb2.Input.Split(name="images", pattern=pattern)]),
            output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
                splits=[example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=ratio)
                        for name, ratio in zip(SPLIT_NAMES, split_ratios)],
                partition_feature_name=features.PATH_KEY)),
            custom_config=custom_config)
