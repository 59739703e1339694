"""Executor of the atomic Pusher: TF Serving sees a version directory only once it is complete.

Stock TFX Pusher copies files into `<base>/<timestamp>/` in place, so TF Serving, which polls
the base directory, can load a half-copied model; two pushes in one second collide; and every
re-run publishes a duplicate. Here a version is written under a non-numeric temporary name,
loaded once to prove it is a SavedModel, then renamed into place (atomic on a local or
mounted filesystem). Object stores (gs://, s3://) have no atomic rename: there the checked copy
is copied into the version directory with `saved_model.pb` last, the file TF Serving waits for.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Optional

import tensorflow as tf
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from tfx_finetune.components import published
from tfx_finetune.components.properties import NEW_VERSION_KEY


def _verify_loads(copy: str, model_dir: str) -> None:
    """Raises ValueError, naming `model_dir`, unless its `copy` loads as a SavedModel with a
    `serving_default` signature."""
    try:
        loaded = tf.saved_model.load(copy)
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise ValueError(f"{model_dir} does not load as a SavedModel ({e}); nothing was "
                         "published: re-run the Trainer to export it again") from e
    if "serving_default" not in loaded.signatures:
        raise ValueError(f"{model_dir} has no serving_default signature; TF Serving needs one")


def publish(model_dir: str, base_dir: str,
            keep_versions: Optional[int] = None) -> published.Publication:
    """Publishes `model_dir` as the next integer version under `base_dir` (local or URI).

    Publishes nothing when the newest version has identical content. The copy must load as a
    SavedModel before it gets a version number (`published.publish_directory`), with
    `saved_model.pb`, the file TF Serving waits for, written last on an object store.

    Raises:
      ValueError: if the copy does not load as a SavedModel with `serving_default` (nothing
        is published then).
    """
    publication = published.publish_once(
        model_dir, base_dir, published.SAVED_MODEL_FILE,
        prepare=lambda copy: _verify_loads(copy, model_dir))
    if publication.new and keep_versions:
        published.retire(base_dir, keep_versions)
    return publication


class Executor(pusher_executor.Executor):
    """Pusher executor publishing with `publish`."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
            pusher_pb2.PushDestination())
        if destination.WhichOneof("destination") != "filesystem":
            raise ValueError("the atomic Pusher publishes to a base directory (local or URI) only")
        custom_config = json.loads(exec_properties.get("custom_config") or "null") or {}
        publication = publish(self.GetModelPath(input_dict),
                              destination.filesystem.base_directory,
                              custom_config.get("keep_versions"))
        if publication.new:
            logging.info("published version %d at %s", publication.version, publication.path)
        else:
            logging.info("model identical to the serving version %d: nothing new published",
                         publication.version)
        self._MarkPushed(model_push, pushed_destination=publication.path,
                         pushed_version=str(publication.version))
        model_push.set_int_custom_property(NEW_VERSION_KEY, int(publication.new))
