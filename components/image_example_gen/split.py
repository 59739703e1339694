"""Splitting checked examples into train/eval/test and writing them.

The split is by hash of each example's key, as TFX's own, except that every class is kept in
train (`SplitKeepingEveryClassInTrain`): Transform builds the label vocabulary from train.
Examples are written in the order listing gave them (`WriteSplit`), without TFX's reshuffle:
TFX's own ExampleGen shuffle does not mix the classes in memory (Beam's in-memory Reshuffle keeps
the input order) and sends every example through the runner process. TFRecord input keeps the
order of its files.
"""
from __future__ import annotations

import bisect
import hashlib
import os
from typing import Dict, List

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen import write_split

from tfx_finetune.components import features


@beam.ptransform_fn
def WriteSplit(examples: beam.pvalue.PCollection, split_uri: str) -> beam.pvalue.PDone:
    """TFX's WriteSplit (same files) without its Reshuffle (see the module docstring)."""
    return (examples
            | "Serialize" >> beam.ParDo(write_split.MaybeSerialize())
            | "Write" >> beam.io.WriteToTFRecord(
                os.path.join(split_uri, write_split.DEFAULT_TF_RECORD_FILE_NAME),
                file_name_suffix=".gz"))


def label_of(example: tf.train.Example) -> str:
    return example.features.feature[features.LABEL_KEY].bytes_list.value[0].decode("utf-8")


def _split_digest(key: str) -> bytes:
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[key.encode("utf-8")]))
    return hashlib.sha256(feature.SerializeToString(deterministic=True)).digest()


def split_hash(key: str) -> int:
    """The hash that places an example: TFX's own (`base_example_gen_executor._PartitionFn` on
    the `path` feature), so splits made before the train guarantee below stay where they were."""
    return int.from_bytes(_split_digest(key), "big")


def hash_split(key: str, buckets: List[int]) -> int:
    """The split index of `key` by hash alone; `buckets` are the cumulative split ratios."""
    return bisect.bisect(buckets, split_hash(key) % buckets[-1])


def _key_of(example: tf.train.Example) -> str:
    return example.features.feature[features.PATH_KEY].bytes_list.value[0].decode("utf-8")


def _split_index(example: tf.train.Example, num_splits: int, buckets: List[int],
                 train_anchors: Dict[str, str]) -> int:
    if train_anchors.get(label_of(example)) == _key_of(example):
        return 0
    return hash_split(_key_of(example), buckets)


@beam.ptransform_fn
def SplitKeepingEveryClassInTrain(examples: beam.pvalue.PCollection, buckets: List[int]
                                   ) -> List[beam.pvalue.PCollection]:
    """Partitions `examples` by hash of their key, except that a class none of whose examples
    hashes to train (split 0) gets its example with the smallest hash moved to train.

    Transform builds the label vocabulary from train alone, so a class missing there would get
    label -1 in eval and test. Only such classes change, and only by that one example: every
    other example keeps its hash split, whatever else is added.
    """
    # min() of (not in train, hash, key) per class: a train example wins when there is one,
    # else the smallest hash, which no other example of the class depends on. The hash travels
    # as its big-endian digest (same order as the number), which Beam's coders can carry.
    anchors = (examples
               | "ClassAndHash" >> beam.Map(lambda e: (label_of(e), (
                   hash_split(_key_of(e), buckets) != 0, _split_digest(_key_of(e)),
                   _key_of(e))))
               | "FirstPerClass" >> beam.CombinePerKey(min)
               | "ClassesWithoutTrain" >> beam.Filter(lambda kv: kv[1][0])
               | "AnchorKey" >> beam.Map(lambda kv: (kv[0], kv[1][2])))
    return examples | "SplitData" >> beam.Partition(_split_index, len(buckets), buckets,
                                                    beam.pvalue.AsDict(anchors))
