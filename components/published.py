"""What one run leaves in the workspace for the next: numbered versions published atomically.

Two kinds live under the workspace, each as `<base>/<integer version>/`:
- served models (`<workspace>/serving/<model_name>/`, the TF Serving base directory), which the
  Evaluator reads back as the baseline to bless the next model against;
- accepted statistics (`<workspace>/accepted_statistics/<pipeline_name>/`), which the DataGate
  compares the next run's data with.

They are read from the workspace, not resolved from ML Metadata, so every orchestrator can
run the pipeline: a Kubeflow Pipelines v2 backend has no resolver executors and gives the
pods no access to its metadata store. A run never gets its own output back as the thing to
compare with: versions with the candidate's content are skipped, so an unchanged re-run
compares with exactly what the first run compared with (and is served from the cache).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import uuid
from typing import Any, Callable, Dict, List, Optional

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_driver
from tfx.orchestration.portable import base_driver as portable_base_driver
from tfx.orchestration.portable import data_types
from tfx.proto.orchestration import driver_output_pb2
from tfx.utils import io_utils

from tfx_finetune.components.digest import directory_digest
from tfx_finetune.components.uri import is_uri

TEMP_PREFIX = ".publishing-"
RETIRED_PREFIX = ".retired-"
# Exec property value of a driver that looked and found nothing earlier (first run); an empty
# value means nobody looked yet (an orchestrator that runs no drivers): the executor looks.
NOTHING_EARLIER = "none"
# Logged (INFO) when there is nothing earlier to compare with; the local runner shows it.
NOTHING_EARLIER_LOG = "%s: nothing earlier to compare with (first run)"
# Written last into every accepted-statistics version: what was accepted, and its digest.
ACCEPTED_FILE = "ACCEPTED.json"
SAVED_MODEL_FILE = "saved_model.pb"


@dataclasses.dataclass(frozen=True)
class Publication:
    version: int
    path: str
    new: bool


def versions(base_dir: str, complete_file: Optional[str] = None) -> List[int]:
    """Integer versions in `base_dir`, oldest first; with `complete_file`, only the versions
    holding it."""
    if not tf.io.gfile.isdir(base_dir):
        return []
    names = (n.rstrip("/") for n in tf.io.gfile.listdir(base_dir))
    found = sorted(int(n) for n in names
                   if n.isdigit() and tf.io.gfile.isdir(os.path.join(base_dir, n)))
    if complete_file:
        found = [v for v in found
                 if tf.io.gfile.exists(os.path.join(base_dir, str(v), complete_file))]
    return found


def _move_into_place(staging: str, target: str, last_file: str) -> bool:
    """Publishes `staging` as `target`; False when `target` already exists (taken)."""
    if tf.io.gfile.exists(target):
        return False
    if is_uri(target):
        last = re.escape(os.path.join(staging, last_file))
        io_utils.copy_dir(staging, target, deny_regex_patterns=[f"^{last}$"])
        tf.io.gfile.copy(os.path.join(staging, last_file), os.path.join(target, last_file))
        return True
    try:
        os.rename(staging, target)  # atomic; fails if a concurrent publish created target
    except OSError:
        if not os.path.exists(target):
            raise
        return False
    return True


def publish_directory(source_dir: str, base_dir: str, last_file: str,
                      prepare: Optional[Callable[[str], None]] = None,
                      version: int = 0) -> int:
    """Publishes a copy of `source_dir` as the next integer version under `base_dir`.

    The copy is written under a non-numeric name, `prepare(copy)` runs on it (to check it or
    add files), then it becomes `<base_dir>/<version>/`: by an atomic rename locally, and on
    an object store by copying with `last_file` (a path relative to the copy) written last, so
    a reader that waits for that file never sees a partial version. Versions strictly
    increase: max(`version` or else unix time, newest + 1), bumped again if a concurrent
    publish took the number.

    Returns:
      The new version.
    """
    tf.io.gfile.makedirs(base_dir)
    existing = versions(base_dir)
    staging = os.path.join(base_dir, f"{TEMP_PREFIX}{uuid.uuid4().hex}")
    try:
        io_utils.copy_dir(source_dir, staging)
        if prepare:
            prepare(staging)
        version = max(version or int(time.time()), (existing[-1] + 1) if existing else 0)
        while not _move_into_place(staging, os.path.join(base_dir, str(version)), last_file):
            version += 1
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
    return version


def publish_once(source_dir: str, base_dir: str, last_file: str,
                 prepare: Optional[Callable[[str], None]] = None,
                 version: int = 0) -> Publication:
    """`publish_directory`, unless the newest version under `base_dir` has the same content:
    then nothing new is published and that version is returned (`new=False`)."""
    existing = versions(base_dir)
    if existing:
        newest = os.path.join(base_dir, str(existing[-1]))
        if directory_digest(newest) == directory_digest(source_dir):
            return Publication(existing[-1], newest, new=False)
    version = publish_directory(source_dir, base_dir, last_file, prepare, version)
    return Publication(version, os.path.join(base_dir, str(version)), new=True)


def retire(base_dir: str, keep: int) -> None:
    """Removes all but the newest `keep` versions. Locally each is renamed away first, so a
    reader polling the base directory (TF Serving) never sees a half-deleted version."""
    for version in versions(base_dir)[:-keep]:
        path = os.path.join(base_dir, str(version))
        if not is_uri(base_dir):
            retired = os.path.join(base_dir, f"{RETIRED_PREFIX}{version}-{uuid.uuid4().hex}")
            os.rename(path, retired)
            path = retired
        tf.io.gfile.rmtree(path)
        logging.info("retired version %d from %s", version, base_dir)


def baseline_model(base_dir: str, candidate_model_dir: str) -> Optional[str]:
    """The newest served version whose content differs from the candidate's, or None.

    Args:
      base_dir: the TF Serving base directory (`<workspace>/serving/<model_name>`).
      candidate_model_dir: the candidate's serving SavedModel directory.
    """
    candidate = None
    for version in reversed(versions(base_dir, SAVED_MODEL_FILE)):
        path = os.path.join(base_dir, str(version))
        candidate = candidate or directory_digest(candidate_model_dir)
        if directory_digest(path) != candidate:
            return path
    logging.info(NOTHING_EARLIER_LOG, "baseline model")
    return None


def previous_statistics(store_dir: str, candidate_statistics_dir: str) -> Optional[str]:
    """The newest accepted statistics whose content differs from the candidate's, or None."""
    candidate = None
    for version in reversed(versions(store_dir, ACCEPTED_FILE)):
        path = os.path.join(store_dir, str(version))
        candidate = candidate or directory_digest(candidate_statistics_dir)
        if _accepted_record(path)["digest"] != candidate:
            return path
    logging.info(NOTHING_EARLIER_LOG, "previous accepted statistics")
    return None


def _accepted_record(version_dir: str) -> dict:
    with tf.io.gfile.GFile(os.path.join(version_dir, ACCEPTED_FILE)) as f:
        return json.load(f)


def accept_statistics(statistics_dir: str, store_dir: str, details: dict) -> Publication:
    """Publishes accepted statistics for the runs that follow; nothing new when the newest
    accepted version has the same content.

    Args:
      statistics_dir: the StatisticsGen artifact the DataGate accepted.
      store_dir: `<workspace>/accepted_statistics/<pipeline_name>`.
      details: recorded in the version's `ACCEPTED.json` beside the content digest.
    """
    digest = directory_digest(statistics_dir)
    existing = versions(store_dir, ACCEPTED_FILE)
    if existing:
        newest = os.path.join(store_dir, str(existing[-1]))
        if _accepted_record(newest)["digest"] == digest:
            return Publication(existing[-1], newest, new=False)

    def record(copy: str) -> None:
        io_utils.write_string_file(os.path.join(copy, ACCEPTED_FILE),
                                   json.dumps(dict(details, digest=digest), indent=2))

    version = publish_directory(statistics_dir, store_dir, ACCEPTED_FILE, prepare=record)
    return Publication(version, os.path.join(store_dir, str(version)), new=True)


class WorkspaceDriver(base_driver.BaseDriver, portable_base_driver.BaseDriver):
    """Base of the drivers that look up workspace state before TFX looks up its cache.

    The answer (a path, or `NOTHING_EARLIER`) becomes the exec property `EXEC_PROPERTY`, and
    so part of the cache key: newly published state invalidates the cached component, while
    an unchanged re-run, which finds what the first run found, reuses it. Orchestrators that
    run no custom drivers (Kubeflow Pipelines v2) leave the property empty; the executor then
    looks itself, with the same function.
    """

    EXEC_PROPERTY = ""

    def __init__(self, metadata_handle):
        base_driver.BaseDriver.__init__(self, metadata_handle)
        portable_base_driver.BaseDriver.__init__(self, metadata_handle)

    def lookup(self, input_dict: Dict[str, List[types.Artifact]],
               exec_properties: Dict[str, Any]) -> Optional[str]:
        """The state to compare with, or None when there is nothing earlier."""
        raise NotImplementedError

    def run(self, execution_info: data_types.ExecutionInfo) -> driver_output_pb2.DriverOutput:
        output = driver_output_pb2.DriverOutput()
        found = self.lookup(execution_info.input_dict, execution_info.exec_properties)
        output.exec_properties[self.EXEC_PROPERTY].string_value = found or NOTHING_EARLIER
        return output
