"""TFLite: conversion per mode, the interpreter against Keras, the test-split evaluation, the
accuracy-margin refusal (TFLiteCheck) and the atomic, deduplicated publication (TFLitePusher)."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

import tflite_models
from tfx_finetune.components import published, tflite
from tfx_finetune.components.tflite_check.component import TFLiteCheck
from tfx_finetune.components.tflite_pusher.component import TFLitePusher


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """{mode: model.tflite path} for the brightness classifier."""
    model = tflite_models.brightness_classifier()
    representative = tflite.pixels([tflite_models.png(level) for level in range(0, 256, 8)],
                                   tflite_models.SIZE)
    root = tmp_path_factory.mktemp("tflite")
    return {mode: tflite.convert(model, tflite_models.SIZE, mode, str(root / mode),
                                 tflite_models.CLASSES, representative)
            for mode in ("float32", "float16", "int8")}


@pytest.mark.parametrize("mode, tolerance", [("float32", 1e-5), ("float16", 1e-2),
                                             ("int8", 5e-2)])
def test_each_mode_answers_like_the_keras_model_on_the_transforms_pixels(converted, mode,
                                                                         tolerance):
    classifier = tflite.TFLiteClassifier(converted[mode])
    assert classifier.labels == tflite_models.CLASSES
    assert classifier.image_size == tflite_models.SIZE
    assert sorted(os.listdir(os.path.dirname(converted[mode]))) == ["labels.txt", "model.tflite"]
    images = tflite.pixels([tflite_models.png(level) for level in (0, 90, 170, 255)],
                           tflite_models.SIZE)
    expected = tflite_models.brightness_classifier()(images).numpy()
    got = np.stack([classifier.probabilities(image) for image in images])
    np.testing.assert_allclose(got, expected, atol=tolerance)
    assert got.argmax(1).tolist() == [0, 0, 1, 1]


def test_quantized_modes_are_smaller(converted):
    size = {mode: os.path.getsize(path) for mode, path in converted.items()}
    assert size["int8"] < size["float16"] < size["float32"]
    assert size["int8"] < size["float32"] / 3


def test_int8_quantizes_the_weights_and_activations(converted):
    """int8: integer kernels inside, float32 pixels in and probabilities out (every mode
    takes the same input)."""
    interpreter = tf.lite.Interpreter(model_path=converted["int8"])
    kinds = {detail["dtype"] for detail in interpreter.get_tensor_details()}
    assert np.int8 in kinds
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32


def test_int8_needs_representative_images(tmp_path):
    with pytest.raises(ValueError, match="representative train images"):
        tflite.convert(tflite_models.brightness_classifier(), tflite_models.SIZE, "int8",
                       str(tmp_path), tflite_models.CLASSES, np.zeros((0, 8, 8, 3), np.float32))


def test_evaluation_compares_with_the_savedmodel_on_the_same_images(tmp_path, converted):
    saved = tflite_models.save_serving_model(tflite_models.brightness_classifier(),
                                             str(tmp_path / "saved"))
    records = [tflite_models.example(level, label) for level, label in tflite_models.LABELLED]
    evaluation = tflite.evaluate(converted["float32"], saved, iter(records))
    assert evaluation.images == 10
    assert evaluation.accuracy == evaluation.savedmodel_accuracy == pytest.approx(0.8)
    assert evaluation.top1_agreement == 1.0
    assert evaluation.size_bytes == os.path.getsize(converted["float32"])
    assert evaluation.latency_ms > 0
    assert tflite.judge(evaluation, 0.0) == ""


def test_judge_refuses_a_drop_beyond_the_margin_and_allows_it_at_the_margin():
    evaluation = tflite.TFLiteEvaluation(images=100, accuracy=0.93, savedmodel_accuracy=0.95,
                                         top1_agreement=0.97, size_bytes=1, latency_ms=1.0)
    assert tflite.judge(evaluation, 0.02) == ""
    reason = tflite.judge(evaluation, 0.01)
    assert "TFLite accuracy 0.9300 is 0.0200 below the SavedModel's 0.9500" in reason
    assert "tflite_max_accuracy_drop=0.01" in reason


def _artifact(cls, uri, create=True, **properties):
    artifact = cls()
    artifact.uri = str(uri)
    if create:
        os.makedirs(artifact.uri, exist_ok=True)
    for key, value in properties.items():
        if isinstance(value, int):
            artifact.set_int_custom_property(key, value)
        else:
            artifact.set_string_custom_property(key, value)
    return artifact


def _check(tmp_path, tflite_model, evaluator_blessed=1, margin=0.01):
    model = _artifact(standard_artifacts.Model, tmp_path / "model")
    tflite_models.trained_model_dir(model.uri, tflite_model)
    examples = _artifact(standard_artifacts.Examples, tmp_path / "examples")
    tflite_models.write_examples(examples.uri)
    # Not created: Kubeflow's launcher creates no output folders.
    blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing", create=False)
    TFLiteCheck.EXECUTOR_SPEC.executor_class().Do(
        {"model": [model], "examples": [examples],
         "model_blessing": [_artifact(standard_artifacts.ModelBlessing, tmp_path / "evaluator",
                                      blessed=evaluator_blessed)]},
        {"blessing": [blessing]}, {"max_accuracy_drop": margin, "split": "test"})
    return model, blessing


def test_check_blesses_a_tflite_model_as_accurate_as_the_savedmodel(tmp_path):
    _, blessing = _check(tmp_path, tflite_models.brightness_classifier())
    assert blessing.get_int_custom_property("blessed") == 1
    evaluation = json.loads(blessing.get_string_custom_property("evaluation"))
    assert evaluation["accuracy"] == evaluation["savedmodel_accuracy"] == pytest.approx(0.8)
    with open(os.path.join(blessing.uri, "evaluation.json")) as f:
        assert json.load(f) == evaluation


def test_check_refuses_a_tflite_model_that_falls_below_the_margin(tmp_path):
    _, blessing = _check(tmp_path, tflite_models.brightness_classifier(invert=True))
    assert blessing.get_int_custom_property("blessed") == 0
    reason = blessing.get_string_custom_property("reason")
    assert "TFLite accuracy 0.2000 is 0.6000 below the SavedModel's 0.8000" in reason
    assert json.loads(blessing.get_string_custom_property("evaluation"))["top1_agreement"] == 0


def test_check_skips_a_model_the_evaluator_did_not_bless(tmp_path):
    _, blessing = _check(tmp_path, tflite_models.brightness_classifier(), evaluator_blessed=0)
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_string_custom_property("reason") == "not blessed by the Evaluator"
    assert not blessing.has_custom_property("evaluation")


def _push(tmp_path, model, base, blessed=1, saved_version=1_700_000_000, pushed=1):
    output = _artifact(standard_artifacts.PushedModel,
                       tmp_path / f"pushed-{len(os.listdir(tmp_path))}")
    TFLitePusher.EXECUTOR_SPEC.executor_class().Do(
        {"model": [model],
         "tflite_blessing": [_artifact(standard_artifacts.ModelBlessing, tmp_path / "tb",
                                       blessed=blessed, reason="refused for a reason")],
         "pushed_model": [_artifact(standard_artifacts.PushedModel, tmp_path / "pm",
                                    pushed=pushed,
                                    pushed_destination=f"/serving/m/{saved_version}")]},
        {"pushed_tflite": [output]}, {"base_directory": base, "keep_versions": 0})
    return output


def test_pusher_publishes_under_the_savedmodels_version_once(tmp_path):
    model = _artifact(standard_artifacts.Model, tmp_path / "model")
    tflite_models.trained_model_dir(model.uri, tflite_models.brightness_classifier())
    base = str(tmp_path / "tflite" / "m")
    first = _push(tmp_path, model, base)
    assert first.get_int_custom_property("new_version") == 1
    version_dir = os.path.join(base, "1700000000")
    assert first.get_string_custom_property("pushed_destination") == version_dir
    assert sorted(os.listdir(version_dir)) == ["labels.txt", "model.tflite"]
    assert os.listdir(base) == ["1700000000"]  # no staging directory left behind
    again = _push(tmp_path, model, base, saved_version=1_700_000_000)
    assert again.get_int_custom_property("pushed") == 1
    assert again.get_int_custom_property("new_version") == 0
    assert os.listdir(base) == ["1700000000"]


def test_pusher_publishes_nothing_when_refused_or_the_savedmodel_was_not_pushed(tmp_path):
    model = _artifact(standard_artifacts.Model, tmp_path / "model")
    tflite_models.trained_model_dir(model.uri, tflite_models.brightness_classifier())
    base = str(tmp_path / "tflite" / "m")
    refused = _push(tmp_path, model, base, blessed=0)
    assert refused.get_int_custom_property("pushed") == 0
    assert refused.get_string_custom_property("reason") == "refused for a reason"
    not_pushed = _push(tmp_path, model, base, pushed=0)
    assert not_pushed.get_int_custom_property("pushed") == 0
    assert not os.path.exists(base)


def test_a_tflite_file_that_does_not_load_is_not_published(tmp_path):
    model = _artifact(standard_artifacts.Model, tmp_path / "model")
    tflite_models.trained_model_dir(model.uri, tflite_models.brightness_classifier())
    with open(os.path.join(tflite.tflite_dir(model.uri), tflite.MODEL_FILE), "wb") as f:
        f.write(b"not a flatbuffer")
    base = str(tmp_path / "tflite" / "m")
    with pytest.raises(ValueError, match="does not load in the TFLite interpreter"):
        _push(tmp_path, model, base)
    assert published.versions(base) == [] and os.listdir(base) == []
