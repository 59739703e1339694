"""Listing what to ingest: an image folder, a CSV manifest or a folder of TFRecord files.

Inputs are read through tf.io.gfile, so a local folder and a bucket (gs://, s3://) work alike;
symbolic-link checks apply to local folders (object stores have none). Listing opens no image:
what is not ingested is returned with its reason (`skipped` for expected noise such as OS junk,
hidden files and unknown extensions; `rejected` for what counts towards `max_reject_fraction`).

The images to read are written in shards (`write_listing`) that Beam spreads over its workers,
in a fixed order that mixes the classes (`mixed_order`): a folder arrives class by class, and
the Trainer's shuffle buffer is smaller than many datasets.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from typing import Dict, List, Optional, Tuple

import tensorflow as tf

from tfx_finetune.components.image_example_gen.errors import IngestionError
from tfx_finetune.components.image_example_gen.image_check import IMAGE_EXTENSIONS
from tfx_finetune.components.labels import check_class_name
from tfx_finetune.components.uri import is_uri

OS_JUNK = frozenset({"thumbs.db", "desktop.ini", "icon\r"})
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrecord.gz", ".tfrecords.gz", ".gz")
LISTING_DIR = "listing"
LISTING_SHARD_SIZE = 1000


@dataclasses.dataclass(frozen=True)
class Entry:
    """One image to ingest: `key` is stable (relative path) and decides the split."""

    key: str
    label: str
    path: str


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
    if is_uri(path):
        is_dir = tf.io.gfile.isdir(path)
        return _Kind(is_dir, not is_dir and tf.io.gfile.exists(path))
    return _Kind(os.path.isdir(path), os.path.isfile(path), os.path.islink(path))


def _scan(path: str) -> List[Tuple[str, _Kind]]:
    """A folder's sorted (name, kind) pairs; one `os.scandir` for a local folder, whose entries
    carry their type, instead of several calls per file."""
    if is_uri(path):
        return [(name, _kind(os.path.join(path, name))) for name in _listdir(path)]
    with os.scandir(path) as scan:
        return sorted(((e.name, _Kind(e.is_dir(), e.is_file(), e.is_symlink())) for e in scan),
                      key=lambda pair: pair[0])


def _resolves_inside(root_real: str, path: str) -> bool:
    if is_uri(path):  # object stores have no links; ".." in a manifest is refused earlier
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
    root_real = root if is_uri(root) else os.path.realpath(root)
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
    root = os.path.dirname(manifest if is_uri(manifest) else os.path.abspath(manifest))
    root_real = root if is_uri(root) else os.path.realpath(root)
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
            elif is_uri(root) and ".." in rel.split("/"):
                verdict = ("rejected", "resolves outside the input root (not opened)")
            if verdict:
                others.append({"path": rel, "kind": verdict[0], "reason": verdict[1]})
            else:
                entries.append(Entry(os.path.normpath(rel), label.strip(), full))
    if not entries:
        raise IngestionError(f"no usable rows in {manifest}")
    return sorted(entries, key=lambda e: e.key), others


def mixed_order(entries: List[Entry]) -> List[Entry]:
    """`entries` in a fixed pseudo-random order: by a hash of each key, so it does not depend
    on the runner, the worker count or the other files."""
    return sorted(entries, key=lambda e: hashlib.sha256(e.key.encode("utf-8")).digest())


def write_listing(entries: List[Entry], listing_dir: str) -> List[str]:
    """Writes `entries` as shards of at most LISTING_SHARD_SIZE (JSON arrays of
    [key, label, path]); returns their paths.

    The pipeline starts from these few paths rather than from every entry: Beam serializes a
    `Create`'s values into the pipeline in this process, in time that grows with the entries
    (bench/README.md), and a `Create` without a reshuffle runs everything it feeds on a single
    worker.
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


def tfrecord_files(root: str) -> List[str]:
    """The TFRecord files in `root` (not hidden, with a TFRecord suffix), sorted."""
    if not tf.io.gfile.isdir(root):
        raise IngestionError(f"TFRecord folder {root} does not exist")
    files = [os.path.join(root, n) for n in _listdir(root)
             if n.endswith(TFRECORD_SUFFIXES) and not n.startswith(".")]
    if not files:
        raise IngestionError(f"no TFRecord files ({', '.join(TFRECORD_SUFFIXES)}) in {root}")
    return files
