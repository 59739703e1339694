"""Executor of the image ExampleGen: lists, fully decodes and converts images to tf.Example.

Inputs are read through tf.io.gfile, so a local folder and a bucket (gs://, s3://) work alike;
symbolic-link checks apply to local folders (object stores have none).

Every image is decoded at ingestion, so a bad file never reaches Transform. What is not
ingested is listed with its reason in `<examples>/ingestion/rejects.jsonl`:
`skipped` entries (OS junk, hidden files, unknown extensions) are expected noise; `rejected`
entries (undecodable, too large, outside the input root) count towards `max_reject_fraction`,
above which the run fails. The images to read are listed in `<examples>/ingestion/listing/`,
in shards that Beam spreads over its workers.

The split is by hash of each example's key, as TFX's own, except that every class is kept in
train (`_SplitKeepingEveryClassInTrain`): Transform builds the label vocabulary from train.

Examples are written in a fixed order that mixes the classes (by a hash of each key; with Beam
workers, each worker's file follows it): a folder arrives class by class, and the Trainer's
shuffle buffer is smaller than many datasets. TFX's own ExampleGen shuffle does not do this in
memory (Beam's in-memory Reshuffle keeps the input order) and sends every example through the
runner process, so it is not used. TFRecord input keeps the order of its files.
"""
from __future__ import annotations

import bisect
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import logging
import os
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf
from PIL import Image, UnidentifiedImageError
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils
from google.protobuf import json_format, struct_pb2

from tfx_finetune.components import features
from tfx_finetune.components.image_example_gen.options import IngestionOptions
from tfx_finetune.components.labels import check_class_name, name_of

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp"})
# What TensorFlow's decode_image (used in Transform and serving) can read.
DECODABLE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP"})
OS_JUNK = frozenset({"thumbs.db", "desktop.ini", "icon\r"})
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrecord.gz", ".tfrecords.gz", ".gz")
REPORT_DIR = "ingestion"
REJECTS_FILE = "rejects.jsonl"
SUMMARY_FILE = "summary.json"
LISTING_DIR = "listing"
LISTING_SHARD_SIZE = 1000
_REPORT_DIR_KEY = "_ingestion_report_dir"

class IngestionError(RuntimeError):
    """The input cannot be ingested as it is; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One image to ingest: `key` is stable (relative path) and decides the split."""

    key: str
    label: str
    path: str


def options_from_exec_properties(exec_properties: Dict[str, Any]) -> IngestionOptions:
    """The component's options, packed as a Struct in ExampleGen's CustomConfig."""
    custom = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY],
        example_gen_pb2.CustomConfig())
    struct = struct_pb2.Struct()
    custom.custom_config.Unpack(struct)
    return IngestionOptions.from_struct_dict(json_format.MessageToDict(struct))


def _is_uri(path: str) -> bool:
    return "://" in path


def _listdir(path: str) -> List[str]:
    """Sorted entry names; local paths and URIs (gs://, s3://) alike."""
    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(path))


@dataclasses.dataclass(frozen=True)
class _Kind:
    """What a listed path is; `is_dir` and `is_file` follow links, as opening the path would."""

    is_dir: bool
    is_file: bool
    is_link: bool = False


def _kind(path: str) -> _Kind:
    if _is_uri(path):
        is_dir = tf.io.gfile.isdir(path)
        return _Kind(is_dir, not is_dir and tf.io.gfile.exists(path))
    return _Kind(os.path.isdir(path), os.path.isfile(path), os.path.islink(path))


def _scan(path: str) -> List[Tuple[str, _Kind]]:
    """A folder's sorted (name, kind) pairs; one `os.scandir` for a local folder, whose entries
    carry their type, instead of several calls per file."""
    if _is_uri(path):
        return [(name, _kind(os.path.join(path, name))) for name in _listdir(path)]
    with os.scandir(path) as scan:
        return sorted(((e.name, _Kind(e.is_dir(), e.is_file(), e.is_symlink())) for e in scan),
                      key=lambda pair: pair[0])


def _resolves_inside(root_real: str, path: str) -> bool:
    if _is_uri(path):  # object stores have no links; ".." in a manifest is refused earlier
        return True
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


def _listed_inside(root_real: str, path: str, kind: _Kind) -> bool:
    """`_resolves_inside` for an entry of a folder already known to be inside the root: only a
    link can lead out of it, so nothing else is resolved."""
    return not kind.is_link or _resolves_inside(root_real, path)


def _file_verdict(name: str, kind: _Kind, inside: bool) -> Optional[Tuple[str, str]]:
    """(kind, reason) when a file is not ingested as an image, else None."""
    if name.startswith(".") or name.lower() in OS_JUNK:
        return "skipped", "hidden file or OS junk"
    if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
        return "skipped", (f"unknown extension '{os.path.splitext(name)[1]}' (images: "
                           f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
    if not inside:
        return "rejected", "resolves outside the input root (not opened)"
    if not kind.is_file:
        return "rejected", "not a regular file"
    return None


def list_folder(root: str) -> Tuple[List[Entry], List[Dict[str, str]]]:
    """Lists `<root>/<class>/<image>` without opening any file.

    Returns:
      (entries to ingest, sorted by key; skipped or rejected files with reasons).

    Raises:
      IngestionError: for a missing or empty root or an invalid class folder name.
    """
    if not tf.io.gfile.isdir(root):
        raise IngestionError(f"input folder {root} does not exist: point --data at a folder "
                             "laid out as <root>/<class>/<image>")
    root_real = root if _is_uri(root) else os.path.realpath(root)
    entries: List[Entry] = []
    others: List[Dict[str, str]] = []
    for name, kind in _scan(root):
        path = os.path.join(root, name)
        if not kind.is_dir:
            verdict = (_file_verdict(name, kind, _listed_inside(root_real, path, kind))
                       or ("skipped", "not inside a class folder"))
            others.append({"path": name, "kind": verdict[0], "reason": verdict[1]})
            continue
        if name.startswith("."):
            others.append({"path": name + "/", "kind": "skipped", "reason": "hidden folder"})
            continue
        if not _listed_inside(root_real, path, kind):
            others.append({"path": name + "/", "kind": "rejected",
                           "reason": "class folder resolves outside the input root (not opened)"})
            continue
        problem = check_class_name(name)
        if problem:
            raise IngestionError(f"class folder {name!r} under {root} {problem}: rename it "
                                 "(class folder names become the model's class names)")
        for file_name, file_kind in _scan(path):
            file_path = os.path.join(path, file_name)
            key = f"{name}/{file_name}"
            if file_kind.is_dir and not file_kind.is_link:
                others.append({"path": key + "/", "kind": "skipped",
                               "reason": "nested folder inside a class folder"})
                continue
            verdict = _file_verdict(file_name, file_kind,
                                    _listed_inside(root_real, file_path, file_kind))
            if verdict:
                others.append({"path": key, "kind": verdict[0], "reason": verdict[1]})
            else:
                entries.append(Entry(key, name, file_path))
    if not entries:
        raise IngestionError(f"no images found under {root}: expected <root>/<class>/<image> "
                             f"with extensions {', '.join(sorted(IMAGE_EXTENSIONS))}")
    return entries, others


def list_csv(manifest: str) -> Tuple[List[Entry], List[Dict[str, str]]]:
    """Lists a CSV manifest of `path,label` rows; paths are relative to the manifest's folder.

    Raises:
      IngestionError: for a missing manifest, a bad header, an invalid label or no rows.
    """
    if not tf.io.gfile.exists(manifest):
        raise IngestionError(f"CSV manifest {manifest} does not exist")
    root = os.path.dirname(manifest if _is_uri(manifest) else os.path.abspath(manifest))
    root_real = root if _is_uri(root) else os.path.realpath(root)
    entries, others = [], []
    with tf.io.gfile.GFile(manifest) as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise IngestionError(f"{manifest} needs a header row with 'path' and 'label' columns")
        for line, row in enumerate(reader, start=2):
            rel, label = (row["path"] or "").strip(), row["label"] or ""
            problem = check_class_name(label)
            if problem:
                raise IngestionError(f"{manifest} line {line}: label {label!r} {problem}")
            full = os.path.join(root, rel)
            verdict = _file_verdict(os.path.basename(rel), _kind(full),
                                    _resolves_inside(root_real, full))
            if os.path.isabs(rel) or not rel:
                verdict = ("rejected", "path must be relative to the manifest's folder")
            elif _is_uri(root) and ".." in rel.split("/"):
                verdict = ("rejected", "resolves outside the input root (not opened)")
            if verdict:
                others.append({"path": rel, "kind": verdict[0], "reason": verdict[1]})
            else:
                entries.append(Entry(os.path.normpath(rel), label.strip(), full))
    if not entries:
        raise IngestionError(f"no usable rows in {manifest}")
    return sorted(entries, key=lambda e: e.key), others


def check_image(data: bytes, max_bytes: int, max_pixels: int) -> str:
    """Returns "" when `data` is an image TensorFlow can decode within the limits, else why not.

    The pixel count is read from the header before decoding, so decompression bombs are
    refused without being decoded.
    """
    if not data:
        return "empty file"
    if len(data) > max_bytes:
        return f"file is {len(data)} bytes, above max_image_bytes={max_bytes}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return (f"image is {width}x{height} pixels, above "
                            f"max_image_pixels={max_pixels}")
                if image.format not in DECODABLE_FORMATS:
                    return (f"format {image.format} cannot be decoded by TensorFlow "
                            f"(use {', '.join(sorted(DECODABLE_FORMATS))})")
                image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return f"decompression bomb refused: {e}"
    except UnidentifiedImageError:  # PIL's message names only an in-memory buffer
        return "cannot decode image: not an image format PIL recognises"
    except Exception as e:  # PIL raises many types for corrupt data; all mean "not an image".
        return f"cannot decode image: {e}"
    return ""


def _example(image: bytes, label: str, key: str) -> tf.train.Example:
    def feature(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    return tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE_KEY: feature(image),
        features.LABEL_KEY: feature(label.encode("utf-8")),
        features.PATH_KEY: feature(key.encode("utf-8")),
    }))


def mixed_order(entries: List[Entry]) -> List[Entry]:
    """`entries` in a fixed pseudo-random order: by a hash of each key, so it does not depend
    on the runner, the worker count or the other files."""
    return sorted(entries, key=lambda e: hashlib.sha256(e.key.encode("utf-8")).digest())


def write_listing(entries: List[Entry], listing_dir: str) -> List[str]:
    """Writes `entries` as shards of at most LISTING_SHARD_SIZE (JSON arrays of
    [key, label, path]); returns their paths.

    The pipeline starts from these few paths rather than from every entry: Beam serializes a
    `Create`'s values into the pipeline in this process, which took 2.4–3.3 s per 80,000 entries,
    and a `Create` without a reshuffle runs everything it feeds on a single worker.
    """
    tf.io.gfile.makedirs(listing_dir)
    paths = []
    for start in range(0, len(entries), LISTING_SHARD_SIZE):
        path = os.path.join(listing_dir, f"shard-{start // LISTING_SHARD_SIZE:05d}.json")
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(json.dumps([(e.key, e.label, e.path)
                                for e in entries[start:start + LISTING_SHARD_SIZE]]))
        paths.append(path)
    return paths


def read_listing(path: str) -> List[Entry]:
    """The entries of one shard written by `write_listing`."""
    with tf.io.gfile.GFile(path) as f:
        return [Entry(*fields) for fields in json.load(f)]


def _read_at_most(path: str, max_bytes: int) -> Tuple[Optional[bytes], int]:
    """(content, size) of a file, or (None, size) when it is larger than `max_bytes`.

    A local file is read with one open and one stat: tf.io.gfile's reader costs twice as much
    per small file (it allocates a 512 KiB buffer for each).
    """
    if _is_uri(path):
        size = tf.io.gfile.stat(path).length
        if size > max_bytes:
            return None, size
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read(), size
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        return (None if size > max_bytes else f.readall()), size


UNNAMED = "unnamed"  # the `kind` of a rejects entry whose label has no name


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

    def process(self, entry: Entry) -> Iterator[Any]:
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


def _tfrecord_files(root: str) -> List[str]:
    if not tf.io.gfile.isdir(root):
        raise IngestionError(f"TFRecord folder {root} does not exist")
    files = [os.path.join(root, n) for n in _listdir(root)
             if n.endswith(TFRECORD_SUFFIXES) and not n.startswith(".")]
    if not files:
        raise IngestionError(f"no TFRecord files ({', '.join(TFRECORD_SUFFIXES)}) in {root}")
    return files


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
    report_dir = exec_properties[_REPORT_DIR_KEY]
    input_format = options.input_format
    if input_format == "tfrecord":
        others: List[Dict[str, str]] = []
        records = pipeline | "ReadTFRecords" >> beam.Create(_tfrecord_files(root)) \
            | "ReadAll" >> beam.io.ReadAllFromTFRecord(
                compression_type=beam.io.filesystem.CompressionTypes.AUTO)
        converted = records | "ToExample" >> beam.ParDo(
            _RecordToExample(options)).with_outputs("rejects", main="examples")
    else:
        entries, others = (list_csv(os.path.join(root, split_pattern)) if input_format == "csv"
                           else list_folder(root))
        logging.info("ingesting %d image files from %s (%d skipped or refused while listing)",
                     len(entries), root, len(others))
        # Create's reshuffle spreads the shards over the Beam workers.
        shards = write_listing(mixed_order(entries), os.path.join(report_dir, LISTING_DIR))
        converted = (pipeline
                     | "ListingShards" >> beam.Create(shards)
                     | "ReadListing" >> beam.FlatMap(read_listing)
                     | "ToExample" >> beam.ParDo(_ToExample(options)).with_outputs(
                         "rejects", main="examples"))
    _ = ((converted.rejects, pipeline | "ListingRejects" >> beam.Create(others))
         | "AllRejects" >> beam.Flatten()
         | "RejectsToJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
         | "WriteRejects" >> beam.io.WriteToText(
             os.path.join(report_dir, REJECTS_FILE), shard_name_template=""))
    return converted.examples


@beam.ptransform_fn
def _WriteSplit(examples: beam.pvalue.PCollection, split_uri: str) -> beam.pvalue.PDone:
    """TFX's WriteSplit (same files) without its Reshuffle: see the module docstring."""
    return (examples
            | "Serialize" >> beam.ParDo(write_split.MaybeSerialize())
            | "Write" >> beam.io.WriteToTFRecord(
                os.path.join(split_uri, write_split.DEFAULT_TF_RECORD_FILE_NAME),
                file_name_suffix=".gz"))


def _label_of(example: tf.train.Example) -> str:
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
    if train_anchors.get(_label_of(example)) == _key_of(example):
        return 0
    return hash_split(_key_of(example), buckets)


@beam.ptransform_fn
def _SplitKeepingEveryClassInTrain(examples: beam.pvalue.PCollection, buckets: List[int]
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
               | "ClassAndHash" >> beam.Map(lambda e: (_label_of(e), (
                   hash_split(_key_of(e), buckets) != 0, _split_digest(_key_of(e)),
                   _key_of(e))))
               | "FirstPerClass" >> beam.CombinePerKey(min)
               | "ClassesWithoutTrain" >> beam.Filter(lambda kv: kv[1][0])
               | "AnchorKey" >> beam.Map(lambda kv: (kv[0], kv[1][2])))
    return examples | "SplitData" >> beam.Partition(_split_index, len(buckets), buckets,
                                                    beam.pvalue.AsDict(anchors))


class Executor(BaseExampleGenExecutor):
    """ExampleGen executor for images: splits by hash of the `path` feature, with every class
    kept in train (`_SplitKeepingEveryClassInTrain`)."""

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
        splits = dict(zip(names, examples | "Split" >> _SplitKeepingEveryClassInTrain(buckets)))
        report_dir = exec_properties[_REPORT_DIR_KEY]
        for name, examples in splits.items():
            _ = (examples
                 | f"Labels[{name}]" >> beam.Map(_label_of)
                 | f"CountPerClass[{name}]" >> beam.combiners.Count.PerElement()
                 | f"AsDict[{name}]" >> beam.combiners.ToDict()
                 | f"ToJson[{name}]" >> beam.Map(json.dumps)
                 | f"WriteCounts[{name}]" >> beam.io.WriteToText(
                     os.path.join(report_dir, f"counts-{name}.json"), shard_name_template=""))
        return splits

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        """BaseExampleGenExecutor.Do, with the examples written by `_WriteSplit`."""
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY])
        report_dir = os.path.join(examples.uri, REPORT_DIR)
        properties = dict(exec_properties, **{_REPORT_DIR_KEY: report_dir})
        input_config, output_config = example_gen_pb2.Input(), example_gen_pb2.Output()
        proto_utils.json_to_proto(properties[standard_component_specs.INPUT_CONFIG_KEY],
                                  input_config)
        proto_utils.json_to_proto(properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                                  output_config)
        examples.split_names = artifact_utils.encode_split_names(
            example_gen_utils.generate_output_split_names(input_config, output_config))
        with self._make_beam_pipeline() as pipeline:
            for name, split in self.GenerateExamplesByBeam(pipeline, properties).items():
                _ = split | f"WriteSplit[{name}]" >> _WriteSplit(
                    artifact_utils.get_split_uri([examples], name))
        examples_utils.set_payload_format(
            examples, properties[standard_component_specs.OUTPUT_DATA_FORMAT_KEY])
        examples_utils.set_file_format(examples, write_split.to_file_format_str(
            properties[standard_component_specs.OUTPUT_FILE_FORMAT_KEY]))
        summary = summarize_ingestion(report_dir, options_from_exec_properties(exec_properties))
        examples.set_int_custom_property("rejected_count", summary["rejected"])
        examples.set_int_custom_property("skipped_count", summary["skipped"])


def _read_json_lines(path: str) -> List[Any]:
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def summarize_ingestion(report_dir: str, options: IngestionOptions) -> Dict[str, Any]:
    """Logs counts per class and split, writes summary.json, enforces the limits.

    `report_dir` is under the output artifact, so it may be a URI (gs://… on Kubeflow).

    Raises:
      IngestionError: when a label has no name in `label_names` (when given), the reject
        fraction is above `max_reject_fraction` or a class has fewer than
        `min_images_per_class` images.
    """
    counts = {}
    for name in sorted(tf.io.gfile.listdir(report_dir)):
        if name.startswith("counts-") and name.endswith(".json"):
            rows = _read_json_lines(os.path.join(report_dir, name))
            counts[name[len("counts-"):-len(".json")]] = rows[0] if rows else {}
    rejects = _read_json_lines(os.path.join(report_dir, REJECTS_FILE))
    unnamed = sorted({r["label"] for r in rejects if r["kind"] == UNNAMED},
                     key=lambda label: (len(label), label))
    if unnamed:
        names = options.label_names
        raise IngestionError(
            f"label(s) {', '.join(unnamed[:20])}{' …' if len(unnamed) > 20 else ''} have no "
            f"name in label_names_file, which names {len(names)} labels (0 to "
            f"{len(names) - 1}, line i naming label i): add a line for each, or fix these "
            "labels in the input")
    rejects = [r for r in rejects if r["kind"] != UNNAMED]
    rejected = [r for r in rejects if r["kind"] == "rejected"]
    per_class: Dict[str, int] = {}
    for split_counts in counts.values():
        for label, n in split_counts.items():
            per_class[label] = per_class.get(label, 0) + n
    accepted = sum(per_class.values())
    fraction = len(rejected) / max(1, accepted + len(rejected))
    summary = {"accepted": accepted, "rejected": len(rejected),
               "skipped": len(rejects) - len(rejected), "reject_fraction": fraction,
               "per_class": per_class, "per_split": counts}
    with tf.io.gfile.GFile(os.path.join(report_dir, SUMMARY_FILE), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    logging.info("ingestion: %d images accepted, %d rejected, %d skipped", accepted,
                 len(rejected), summary["skipped"])
    for split, split_counts in sorted(counts.items()):
        logging.info("ingestion: %s split: %s", split,
                     ", ".join(f"{k}={v}" for k, v in sorted(split_counts.items())))
    for split in ("eval", "test"):
        absent = sorted(set(per_class) - set(counts.get(split, {})))
        if absent:
            logging.warning("ingestion: no %s images for class(es) %s: their %s figures will "
                            "be missing; add images to them", split, ", ".join(absent), split)
    for reject in rejects:
        logging.warning("ingestion: %s %s: %s", reject["kind"], reject["path"], reject["reason"])
    rejects_path = os.path.join(report_dir, REJECTS_FILE)
    if fraction > options.max_reject_fraction:
        reasons = "\n".join(f"  {r['path']}: {r['reason']}" for r in rejected[:10])
        raise IngestionError(
            f"{len(rejected)} of {accepted + len(rejected)} images rejected ({fraction:.1%}), "
            f"above max_reject_fraction={options.max_reject_fraction:.1%}. First rejects:\n"
            f"{reasons}\nAll rejects: {rejects_path}. Fix or remove these files, or raise "
            "max_reject_fraction.")
    small = {c: n for c, n in per_class.items() if n < options.min_images_per_class}
    if small:
        raise IngestionError(
            "classes with fewer than min_images_per_class="
            f"{options.min_images_per_class} usable images: "
            + ", ".join(f"{c!r} ({n})" for c, n in sorted(small.items()))
            + ". Add images to them, remove the folders, or lower min_images_per_class.")
    return summary
