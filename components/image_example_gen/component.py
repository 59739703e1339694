"""The image-folder ExampleGen component: a FileBasedExampleGen with our executor."""
from __future__ import annotations

from typing import Sequence

from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components import features
from components.image_folder_example_gen import executor

SPLIT_NAMES = ("train", "eval", "test")


class ImageFolderExampleGen(FileBasedExampleGen):
    """Reads `<input_base>/<class>/<image>` and writes train/eval/test tf.Examples.

    The split is by hash of each image's path relative to the root, so it is deterministic
    and an image keeps its split when others are added. TFX fingerprints `<class>/<file>`
    for caching: an unchanged folder re-uses the previous output.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, input_base: str, split_ratios: Sequence[int] = (80, 10, 10)):
        super().__init__(
            input_base=input_base,
            input_config=example_gen_pb2.Input(
                splits=[example_gen_pb2.Input.Split(name="images", pattern="*/*")]),
            output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
                splits=[example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=ratio)
                        for name, ratio in zip(SPLIT_NAMES, split_ratios)],
                partition_feature_name=features.PATH_KEY)))
