"""TFLitePusher: publishes a blessed TFLite model under the SavedModel's version number."""
import logging
import os

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from tfx_finetune.components import published, tflite
from tfx_finetune.components.properties import (BLESSED_KEY, DESTINATION_KEY, NEW_VERSION_KEY,
                                                PUSHED_KEY, REASON_KEY)


def _verify_loads(copy: str) -> None:
    """Raises ValueError unless the copied model.tflite loads in the interpreter."""
    path = os.path.join(copy, tflite.MODEL_FILE)
    try:
        tflite.TFLiteClassifier(path)
    except (OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path} does not load in the TFLite interpreter ({e}); nothing was "
                         "published: re-run the Trainer to convert it again") from e


def _property(artifact, key: str):
    """A custom property as set, whatever its type (Kubeflow's driver turns ints into
    doubles); None when unset."""
    return artifact.get_custom_property(key) if artifact.has_custom_property(key) else None


@component
def TFLitePusher(
        model: InputArtifact[standard_artifacts.Model],
        tflite_blessing: InputArtifact[standard_artifacts.ModelBlessing],
        pushed_model: InputArtifact[standard_artifacts.PushedModel],
        pushed_tflite: OutputArtifact[standard_artifacts.PushedModel],
        base_directory: Parameter[str],
        keep_versions: Parameter[int] = 0):
    """Publishes the Trainer's `model.tflite` + `labels.txt` to `<base_directory>/<version>/`
    when the SavedModel was pushed and the TFLiteCheck blessed the TFLite model.

    `<version>` is the SavedModel's, so a TFLite version names the served model it was
    converted from (a higher one only if that number is taken). Publishing is
    `published.publish_once`, as for the SavedModel: the copy loads in the interpreter before
    it is renamed into place, and an identical newest version means nothing new.
    `pushed_tflite` gets `pushed` (0/1), `pushed_destination`, `new_version` and a `reason`.
    """
    if not _property(pushed_model, PUSHED_KEY):
        pushed_tflite.set_int_custom_property(PUSHED_KEY, 0)
        pushed_tflite.set_string_custom_property(REASON_KEY, "the SavedModel was not pushed")
        return
    if not _property(tflite_blessing, BLESSED_KEY):
        pushed_tflite.set_int_custom_property(PUSHED_KEY, 0)
        pushed_tflite.set_string_custom_property(
            REASON_KEY, str(_property(tflite_blessing, REASON_KEY)))
        return
    saved_model_version = int(os.path.basename(
        str(_property(pushed_model, DESTINATION_KEY)).rstrip("/")))
    publication = published.publish_once(
        tflite.tflite_dir(model.uri), base_directory, tflite.MODEL_FILE,
        prepare=_verify_loads, version=saved_model_version)
    if publication.new and keep_versions:
        published.retire(base_directory, keep_versions)
    logging.info("TFLite model %s at %s", "published" if publication.new else
                 "identical to the newest version: nothing new", publication.path)
    pushed_tflite.set_int_custom_property(PUSHED_KEY, 1)
    pushed_tflite.set_string_custom_property(DESTINATION_KEY, publication.path)
    pushed_tflite.set_int_custom_property(NEW_VERSION_KEY, int(publication.new))
    pushed_tflite.set_string_custom_property(
        REASON_KEY, f"SavedModel version {saved_model_version}")
