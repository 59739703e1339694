"""TFLiteCheck: the Trainer's TFLite model run by the TFLite interpreter on the test split, judged
against the SavedModel on the same images, between the Evaluator and the pushers."""
import logging
import os

import tensorflow as tf
from tfx.components.util import model_utils
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from tfx_finetune.components import splits, tflite
from tfx_finetune.components.properties import BLESSED_KEY, REASON_KEY
from tfx_finetune.components.tflite_check import EVALUATION_FILE, EVALUATION_KEY


def _not_blessed(blessing: standard_artifacts.ModelBlessing, reason: str) -> None:
    blessing.set_int_custom_property(BLESSED_KEY, 0)
    blessing.set_string_custom_property(REASON_KEY, reason)


@component
def TFLiteCheck(
        model: InputArtifact[standard_artifacts.Model],
        model_blessing: InputArtifact[standard_artifacts.ModelBlessing],
        examples: InputArtifact[standard_artifacts.Examples],
        blessing: OutputArtifact[standard_artifacts.ModelBlessing],
        max_accuracy_drop: Parameter[float],
        split: Parameter[str] = splits.TEST):
    """Blesses the TFLite model for publishing only if its accuracy on `split` is at most
    `max_accuracy_drop` below the SavedModel's on the same images.

    The blessing gets `blessed` (0/1), a `reason`, and the evaluation (`tflite.evaluate`:
    accuracy of both models, top-1 agreement, size, latency per image) as `evaluation`. A
    model the Evaluator did not bless is not checked: it is published in no form.
    """
    if not model_utils.is_model_blessed(model_blessing):
        _not_blessed(blessing, "not blessed by the Evaluator")
        return
    path = os.path.join(tflite.tflite_dir(model.uri), tflite.MODEL_FILE)
    if not tf.io.gfile.exists(path):
        _not_blessed(blessing, f"the Trainer wrote no TFLite model ({path})")
        return
    records = (record.numpy()
               for record in splits.records(splits.split_files(examples.uri, split)))
    evaluation = tflite.evaluate(path, path_utils.serving_model_path(model.uri), records)
    text = evaluation.to_json()
    blessing.set_string_custom_property(EVALUATION_KEY, text)
    # Kubeflow's launcher creates no folder for an output artifact; local TFX does.
    tf.io.gfile.makedirs(blessing.uri)
    with tf.io.gfile.GFile(os.path.join(blessing.uri, EVALUATION_FILE), "w") as f:
        f.write(text)
    refusal = tflite.judge(evaluation, max_accuracy_drop)
    if refusal:
        logging.error("TFLite model %s is not published: %s", path, refusal)
        _not_blessed(blessing, refusal)
        return
    blessing.set_int_custom_property(BLESSED_KEY, 1)
    blessing.set_string_custom_property(
        REASON_KEY, f"TFLite accuracy {evaluation.accuracy:.4f}, SavedModel "
                    f"{evaluation.savedmodel_accuracy:.4f} (margin {max_accuracy_drop})")
