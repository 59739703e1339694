"""The split folders of TFX artifacts (`<uri>/Split-<name>/`, as ExampleGen and StatisticsGen
write them) and the GZIP TFRecords of serialized tf.Examples an Examples artifact holds there."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable, List

if TYPE_CHECKING:
    import tensorflow as tf

# The splits ImageExampleGen writes: the Trainer trains on the first, early-stops on the second;
# the Evaluator, ServingCheck and TFLiteCheck judge on the third.
TRAIN = "train"
EVAL = "eval"
TEST = "test"
SPLIT_NAMES = (TRAIN, EVAL, TEST)
SPLIT_PREFIX = "Split-"
# How TFX's ExampleGen, and ours, compress the TFRecord files of Examples artifacts.
COMPRESSION = "GZIP"


def split_dir(artifact_uri: str, split: str) -> str:
    return os.path.join(artifact_uri, SPLIT_PREFIX + split)


def split_files(examples_uri: str, split: str) -> List[str]:
    """The record files of `split`, in name order."""
    import tensorflow as tf

    return sorted(tf.io.gfile.glob(os.path.join(split_dir(examples_uri, split), "*")))


def records(files: Iterable[str]) -> tf.data.Dataset:
    """The serialized examples of the files, in file order."""
    import tensorflow as tf

    return tf.data.TFRecordDataset(list(files), compression_type=COMPRESSION)


def first_records(files: Iterable[str], count: int) -> List[bytes]:
    """The first `count` serialized examples of the files, in file order."""
    return [record.numpy() for record in records(files).take(count)]
