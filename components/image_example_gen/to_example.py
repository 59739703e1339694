"""The Beam side of ingestion: reading and checking each listed image (or TFRecord) into a
tf.Example, and sending what fails to the rejects of the ingestion report."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from tfx_finetune.components import features
from tfx_finetune.components.image_example_gen import listing
from tfx_finetune.components.image_example_gen.image_check import check_image
from tfx_finetune.components.image_example_gen.options import IngestionOptions
from tfx_finetune.components.image_example_gen.summary import REJECTS_FILE, UNNAMED
from tfx_finetune.components.labels import check_class_name, name_of
from tfx_finetune.components.uri import is_uri

# The exec property under which the executor passes the ingestion report's directory.
REPORT_DIR_KEY = "_ingestion_report_dir"


def options_from_exec_properties(exec_properties: Dict[str, Any]) -> IngestionOptions:
    """The component's options, packed as a Struct in ExampleGen's CustomConfig."""
    custom = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY],
        example_gen_pb2.CustomConfig())
    struct = struct_pb2.Struct()
    custom.custom_config.Unpack(struct)
    return IngestionOptions.from_struct_dict(json_format.MessageToDict(struct))


def _example(image: bytes, label: str, key: str) -> tf.train.Example:
    def feature(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    return tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE_KEY: feature(image),
        features.LABEL_KEY: feature(label.encode("utf-8")),
        features.PATH_KEY: feature(key.encode("utf-8")),
    }))


def _read_at_most(path: str, max_bytes: int) -> Tuple[Optional[bytes], int]:
    """(content, size) of a file, or (None, size) when it is larger than `max_bytes`.

    A local file is read with one open and one stat: tf.io.gfile's reader costs twice as much
    per small file (it allocates a 512 KiB buffer for each).
    """
    if is_uri(path):
        size = tf.io.gfile.stat(path).length
        if size > max_bytes:
            return None, size
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read(), size
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        return (None if size > max_bytes else f.readall()), size


def _unnamed(key: str, label: str, names: Sequence[str]) -> beam.pvalue.TaggedOutput:
    return beam.pvalue.TaggedOutput("rejects", {
        "path": key, "kind": UNNAMED, "label": label,
        "reason": f"label {label!r} has no name in label_names ({len(names)} names)"})


class _ToExample(beam.DoFn):
    """Reads and checks one entry: a tf.Example, or a reject on the `rejects` output."""

    def __init__(self, options: IngestionOptions):
        self._max_bytes = options.max_image_bytes
        self._max_pixels = options.max_image_pixels
        self._names = options.label_names

    def process(self, entry: listing.Entry) -> Iterator[Any]:
        label = name_of(entry.label, self._names) if self._names else entry.label
        if label is None:
            yield _unnamed(entry.key, entry.label, self._names)
            return
        data, size = _read_at_most(entry.path, self._max_bytes)
        if data is None:  # not even read
            reason = f"file is {size} bytes, above max_image_bytes={self._max_bytes}"
        else:
            reason = check_image(data, self._max_bytes, self._max_pixels)
        if reason:
            yield beam.pvalue.TaggedOutput("rejects", {"path": entry.key, "kind": "rejected",
                                                       "reason": reason})
        else:
            yield _example(data, label, entry.key)


class _RecordToExample(beam.DoFn):
    """Maps a tf.Example with any image/label feature names to the project's layout."""

    def __init__(self, options: IngestionOptions):
        self._image = options.image_feature
        self._label = options.label_feature
        self._max_bytes = options.max_image_bytes
        self._max_pixels = options.max_image_pixels
        self._names = options.label_names

    def process(self, record: bytes) -> Iterator[Any]:
        feats = tf.train.Example.FromString(record).features.feature
        image = _first_bytes(feats, self._image)
        label_feature = feats.get(self._label)
        if label_feature is not None and label_feature.int64_list.value:
            label = str(label_feature.int64_list.value[0])
        else:
            label = _first_bytes(feats, self._label).decode("utf-8", "replace")
        # Without a path, the image content is the stable key that decides the split.
        key = (_first_bytes(feats, features.PATH_KEY).decode("utf-8", "replace")
               or "sha256:" + hashlib.sha256(image).hexdigest())
        if self._names and not check_class_name(label):
            named = name_of(label, self._names)
            if named is None:
                yield _unnamed(key, label, self._names)
                return
            label = named
        if not image:
            reason = f"no '{self._image}' bytes feature"
        elif check_class_name(label):
            reason = f"label feature '{self._label}' is missing or {check_class_name(label)}"
        else:
            reason = check_image(image, self._max_bytes, self._max_pixels)
        if reason:
            yield beam.pvalue.TaggedOutput("rejects", {"path": key, "kind": "rejected",
                                                       "reason": reason})
        else:
            yield _example(image, label, key)


def _first_bytes(feats, key: str) -> bytes:
    feature = feats.get(key)
    return feature.bytes_list.value[0] if feature is not None and feature.bytes_list.value else b""


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def ImagesToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                    split_pattern: str) -> beam.pvalue.PCollection:
    """Reads the input (folder, CSV manifest or TFRecords) into checked tf.Examples.

    Rejected and skipped inputs are written to the ingestion report directory.
    """
    options = options_from_exec_properties(exec_properties)
    root = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    report_dir = exec_properties[REPORT_DIR_KEY]
    input_format = options.input_format
    if input_format == "tfrecord":
        others: List[Dict[str, str]] = []
        records = pipeline | "ReadTFRecords" >> beam.Create(listing.tfrecord_files(root)) \
            | "ReadAll" >> beam.io.ReadAllFromTFRecord(
                compression_type=beam.io.filesystem.CompressionTypes.AUTO)
        converted = records | "ToExample" >> beam.ParDo(
            _RecordToExample(options)).with_outputs("rejects", main="examples")
    else:
        entries, others = (listing.list_csv(os.path.join(root, split_pattern)) if input_format == "csv"
                           else listing.list_folder(root))
        logging.info("ingesting %d image files from %s (%d skipped or refused while listing)",
                     len(entries), root, len(others))
        # Create's reshuffle spreads the shards over the Beam workers.
        shards = listing.write_listing(listing.mixed_order(entries),
                                      os.path.join(report_dir, listing.LISTING_DIR))
        converted = (pipeline
                     | "ListingShards" >> beam.Create(shards)
                     | "ReadListing" >> beam.FlatMap(listing.read_listing)
                     | "ToExample" >> beam.ParDo(_ToExample(options)).with_outputs(
                         "rejects", main="examples"))
    _ = ((converted.rejects, pipeline | "ListingRejects" >> beam.Create(others))
         | "AllRejects" >> beam.Flatten()
         | "RejectsToJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
         | "WriteRejects" >> beam.io.WriteToText(
             os.path.join(report_dir, REJECTS_FILE), shard_name_template=""))
    return converted.examples
