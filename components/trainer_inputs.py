"""The Trainer's tf.data input pipeline: raw ExampleGen records through the Transform graph
into batches, decoded once and cached (in memory, or on local disk past a budget)."""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import tempfile
from typing import Iterator, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from tfx_finetune.components import features, splits

SHUFFLE_BUFFER = 10_000
# The shuffle buffer holds decoded images: at most this many bytes of them (1,700 at 224 px).
SHUFFLE_BUFFER_BYTES = 256 * 2**20
TRANSFORM_BATCH = 256
# Decoded, resized images (uint8) are cached in memory up to this size, beyond it on local disk.
CACHE_BUDGET_BYTES = 2 * 2**30
# glibc's mallopt parameters (malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _image_shape(tf_transform_output: tft.TFTransformOutput) -> List[int]:
    spec = tf_transform_output.transformed_feature_spec()
    return list(spec[features.transformed_name(features.IMAGE_KEY)].shape)


def input_fn(file_patterns: List[str], tf_transform_output: tft.TFTransformOutput,
             batch_size: int, shuffle: bool, seed: int, cache_file: str = "") -> tf.data.Dataset:
    """(image_xf, label_xf) batches from raw ExampleGen records through the Transform graph.

    Transform does not materialise its output (no float pixels on disk); the graph runs here,
    in parallel over large batches, in the first epoch only: its output is cached as uint8
    pixels (a quarter of float32; Transform's float pixels rounded, at most half a grey level
    off), in memory with `cache_file=""`, else in that local file. Every later epoch reads
    the cache, so a large photo is decoded once. The shuffle buffer holds at most
    `SHUFFLE_BUFFER_BYTES` of images (ExampleGen writes the examples in an order that already
    mixes the classes). Batches are float32 in [0, 255], as the model expects.
    """
    files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
    raw_spec = tf_transform_output.raw_feature_spec()
    image_xf = features.transformed_name(features.IMAGE_KEY)
    label_xf = features.transformed_name(features.LABEL_KEY)

    def transform(serialized):
        transformed = tf_transform_output.transform_raw_features(
            tf.io.parse_example(serialized, raw_spec), drop_unused_features=True)
        pixels = tf.cast(tf.clip_by_value(tf.round(transformed[image_xf]), 0, 255), tf.uint8)
        return pixels, transformed[label_xf]

    dataset = (splits.records(files)
               .batch(TRANSFORM_BATCH)
               .map(transform, num_parallel_calls=tf.data.AUTOTUNE)
               .unbatch()
               .cache(cache_file))
    if shuffle:
        image_bytes = int(np.prod(_image_shape(tf_transform_output)))
        buffer = max(1, min(SHUFFLE_BUFFER, SHUFFLE_BUFFER_BYTES // image_bytes))
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return (dataset.batch(batch_size)
            .map(lambda x, y: (tf.cast(x, tf.float32), y),
                 num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def first_records(file_patterns: List[str], count: int) -> List[bytes]:
    """The first `count` serialized examples of the files, in file order."""
    return splits.first_records(
        sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)), count)


def transformed_images(file_patterns: List[str], tf_transform_output: tft.TFTransformOutput,
                       count: int) -> np.ndarray:
    """The Transform's float pixels [N, size, size, 3] of the first `count` examples (ExampleGen
    writes each split in an order that mixes the classes, so these cover them)."""
    records = first_records(file_patterns, count)
    if not records:
        return np.zeros([0] + _image_shape(tf_transform_output), np.float32)
    transformed = tf_transform_output.transform_raw_features(
        tf.io.parse_example(records, tf_transform_output.raw_feature_spec()),
        drop_unused_features=True)
    return transformed[features.transformed_name(features.IMAGE_KEY)].numpy()


def record_count(file_patterns: List[str]) -> int:
    files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
    return int(splits.records(files).reduce(
        tf.constant(0, tf.int64), lambda count, _: count + 1))


def return_freed_buffers_to_the_system() -> None:
    """Makes glibc hand large freed buffers back to the system at once.

    By default glibc raises its mmap threshold each time a large buffer is freed (up to
    32 MB), so the first epoch's stream of decoded photos and image batches is then served
    from heap arenas (one per thread) that fragment and never shrink: the process grew with
    the number of images cached to disk (bench/README.md, input_memory.py). A fixed 128 KiB
    threshold and two arenas keep it flat. Process-wide; nothing happens without glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
    mallopt(_M_ARENA_MAX, 2)


@contextlib.contextmanager
def cached_inputs(split_patterns: Sequence[Tuple[List[str], bool]],
                  tf_transform_output: tft.TFTransformOutput, batch_size: int, seed: int,
                  budget_bytes: int = CACHE_BUDGET_BYTES) -> Iterator[List[tf.data.Dataset]]:
    """One `input_fn` dataset per (file patterns, shuffle) split, cached in memory when the
    decoded images of all the splits fit `budget_bytes`, else in files of a temporary local
    directory that is removed on exit, whatever happens. Memory then stays flat whatever the
    data size (the directory needs the decoded size on disk: 150 KB an image at 224 px).
    """
    return_freed_buffers_to_the_system()
    image_bytes = int(np.prod(_image_shape(tf_transform_output)))
    needed = record_count([p for patterns, _ in split_patterns for p in patterns]) * image_bytes
    directory = None if needed <= budget_bytes else tempfile.mkdtemp(prefix="trainer-cache-")
    if directory:
        logging.info("decoded images: %.1f GB, over the %.1f GB memory budget: cached in %s",
                     needed / 1e9, budget_bytes / 1e9, directory)
    try:
        yield [input_fn(patterns, tf_transform_output, batch_size, shuffle, seed,
                        cache_file=os.path.join(directory, str(i)) if directory else "")
               for i, (patterns, shuffle) in enumerate(split_patterns)]
    finally:
        if directory:
            shutil.rmtree(directory)
