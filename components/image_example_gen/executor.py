"""Executor of the image-folder ExampleGen: lists, decodes and converts images to tf.Example."""
from __future__ import annotations

import io
import logging
import os
from typing import Any, Dict, Iterator, List, Tuple

import apache_beam as beam
import tensorflow as tf
from PIL import Image
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.types import standard_component_specs

from components import features

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp"})


def list_images(root: str) -> List[Tuple[str, str]]:
    """Lists `(relative_path, label)` for every image file under `<root>/<class>/`.

    Files are sorted, so the listing (and the examples written) is deterministic.

    Raises:
      ValueError: when `root` is not a directory or holds no class folder with an image.
    """
    if not os.path.isdir(root):
        raise ValueError(f"input folder {root} does not exist: point --data at a folder "
                         "laid out as <root>/<class>/<image>")
    entries = []
    for label in sorted(os.listdir(root)):
        class_dir = os.path.join(root, label)
        if label.startswith(".") or not os.path.isdir(class_dir):
            continue
        for name in sorted(os.listdir(class_dir)):
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                entries.append((f"{label}/{name}", label))
    if not entries:
        raise ValueError(f"no images found under {root}: expected <root>/<class>/<image> with "
                         f"extensions {', '.join(sorted(IMAGE_EXTENSIONS))}")
    return entries


def decode_check(data: bytes) -> str:
    """Returns "" when `data` decodes fully as an image, else the reason it does not."""
    if not data:
        return "empty file"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception as e:  # PIL raises many types for corrupt data; all mean "not an image".
        return f"cannot decode image: {e}"
    return ""


def to_example(root: str, relative_path: str, label: str) -> Iterator[tf.train.Example]:
    """Yields the tf.Example for one image, or nothing (with a warning) when it does not decode."""
    with open(os.path.join(root, relative_path), "rb") as f:
        data = f.read()
    reason = decode_check(data)
    if reason:
        logging.warning("skipping %s: %s", relative_path, reason)
        beam.metrics.Metrics.counter("image_folder_example_gen", "rejected").inc()
        return
    beam.metrics.Metrics.counter("image_folder_example_gen", "accepted").inc()
    yield tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE_KEY: _bytes_feature(data),
        features.LABEL_KEY: _bytes_feature(label.encode("utf-8")),
        features.PATH_KEY: _bytes_feature(relative_path.encode("utf-8")),
    }))


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def ImageFolderToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                         split_pattern: str) -> beam.pvalue.PCollection:
    """Reads `<input_base>/<class>/<image>` into tf.Examples (the split pattern is fixed)."""
    del split_pattern  # The component always reads the whole class-folder tree.
    root = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    entries = list_images(root)
    logging.info("image-folder ExampleGen: %d image files under %s", len(entries), root)
    return (pipeline
            | "ListImages" >> beam.Create(entries, reshuffle=False)
            | "ToExample" >> beam.FlatMap(lambda entry: to_example(root, *entry)))


class Executor(BaseExampleGenExecutor):
    """ExampleGen executor for image folders; TFX splits by hash of the `path` feature."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return ImageFolderToExample
