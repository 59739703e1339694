import io
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfx_finetune.commands import predict
from tfx_finetune.components import signatures
from tfx_finetune.components.tflite_check import TFLiteEvaluation
from tfx_finetune.reports import prediction_analysis, run_report
from tfx_finetune.reports.run_summary import ComponentRun, RunSummary, TFLiteResult
from tfx_finetune.reports.tuning import Tuning


def test_per_class_precision_and_recall_from_the_confusion_matrix():
    matrix = np.array([[8, 2, 0],   # actual a: 8 right, 2 called b
                       [1, 9, 0],   # actual b
                       [0, 0, 0]])  # c never occurs and is never predicted
    rows = run_report.per_class_table(matrix, ["a", "b", "c"])
    assert rows[0] == ("a", 10, 8 / 9, 0.8)
    assert rows[1] == ("b", 10, 9 / 11, 0.9)
    assert rows[2][:2] == ("c", 0) and math.isnan(rows[2][2]) and math.isnan(rows[2][3])


def _png(level):
    out = io.BytesIO()
    Image.new("L", (6, 6), level).save(out, format="PNG")
    return out.getvalue()


def _analysis(mistakes=10):
    """Hand-written probabilities over classes (a, b, c) in two batches."""
    analysis = prediction_analysis.PredictionAnalysis(["a", "b", "c"], mistakes=mistakes)
    analysis.add(np.array([[0.97, 0.02, 0.01],   # a, right
                           [0.30, 0.62, 0.08],   # a, called b
                           [0.05, 0.93, 0.02]]),  # b, right
                 ["a", "a", "b"], ["a/1.png", "a/2.png", "b/1.png"], [_png(10), _png(20), _png(30)])
    analysis.add(np.array([[0.93, 0.04, 0.03],   # b, called a with confidence 0.93
                           [0.41, 0.40, 0.19],   # z (not in the vocabulary), called a
                           [0.10, 0.85, 0.05]]),  # b, right
                 ["b", "z", "b"], ["b/2.png", "z/1.png", "b/3.png"], [_png(40), _png(50), _png(60)])
    return analysis


def test_accuracy_over_batches():
    analysis = _analysis()
    assert analysis.count == 6 and analysis.errors == 3
    assert analysis.accuracy == pytest.approx(0.5)


def test_most_confident_mistakes_are_ranked_across_batches_and_keep_their_images():
    mistakes = _analysis(mistakes=2).mistakes
    assert [(m.path, m.label, m.predicted) for m in mistakes] == [
        ("b/2.png", "b", "a"), ("a/2.png", "a", "b")]
    assert [m.confidence for m in mistakes] == [0.93, 0.62]
    assert [m.image for m in mistakes] == [_png(40), _png(20)]


def test_confidence_histogram_separates_right_and_wrong():
    edges, right, wrong = _analysis().histogram(bins=10)
    assert edges[0] == 0.0 and edges[-1] == 1.0 and len(edges) == 11
    # right: 0.97, 0.93, 0.85; wrong: 0.62, 0.93, 0.41
    assert right.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 2]
    assert wrong.tolist() == [0, 0, 0, 0, 1, 0, 1, 0, 0, 1]
    assert _analysis().confidence_line(0.9) == (
        "3 of 6 predictions are wrong, 1 of them with confidence >= 0.9; 2 of the 3 "
        "predictions with confidence >= 0.9 are right.")


def test_predict_command_ranks_mistakes_with_the_shared_rule():
    results = [
        {"path": "x", "label": "a", "predictions": [{"class": "b", "confidence": 0.6}]},
        {"path": "y", "label": "a", "predictions": [{"class": "a", "confidence": 0.99}]},
        {"path": "z", "label": "b", "predictions": [{"class": "a", "confidence": 0.8}]},
        {"path": "u", "label": None, "predictions": [{"class": "a", "confidence": 0.9}]},
        {"path": "v", "label": "b", "error": "not an image"},
    ]
    assert predict.labelled_summary(results, mistakes=5) == {
        "images": 3, "accuracy": pytest.approx(1 / 3), "most_confident_mistakes": [
            {"path": "z", "label": "b", "class": "a", "confidence": 0.8},
            {"path": "x", "label": "a", "class": "b", "confidence": 0.6}]}


def _write(summary_dir, analysis):
    path = run_report.write_report(run_report.RunSummary(run_id="r", components=[]),
                                   str(summary_dir), None, None, ["a", "b", "c"], {}, "x",
                                   analysis)
    return open(path).read(), sorted(os.listdir(summary_dir))


def _section(text):
    return text.split("## Prediction analysis (test split)\n")[1].split("\n## ")[0]


def test_report_section_tables_and_pngs(tmp_path):
    text, files = _write(tmp_path, _analysis())
    section = _section(text)
    assert "over the 6 test examples: accuracy 0.500." in section
    assert "| class |" not in section  # per-class figures are the evaluation table's alone
    assert "3 of 6 predictions are wrong, 1 of them with confidence >= 0.9" in section
    assert ("| b/2.png | b | a | 0.930 |\n| a/2.png | a | b | 0.620 |\n"
            "| z/1.png | z | a | 0.410 |") in section
    assert files == ["confidence_histogram.png", "mistakes.png", "report.md"]
    for png in ("confidence_histogram.png", "mistakes.png"):
        assert open(os.path.join(tmp_path, png), "rb").read(4) == b"\x89PNG"


def test_report_says_when_there_are_no_mistakes(tmp_path):
    analysis = prediction_analysis.PredictionAnalysis(["a", "b"])
    analysis.add(np.array([[0.8, 0.2], [0.1, 0.9]]), ["a", "b"], ["1", "2"], [_png(1), _png(2)])
    text, files = _write(tmp_path, analysis)
    assert "No mistakes on the test split." in _section(text)
    assert "| image | true |" not in text
    assert files == ["confidence_histogram.png", "report.md"]


def test_report_says_when_the_test_split_is_empty_or_there_is_no_model(tmp_path):
    text, files = _write(tmp_path / "empty", prediction_analysis.PredictionAnalysis(["a", "b"]))
    assert _section(text).strip() == "The test split is empty: nothing to analyse."
    assert files == ["report.md"]
    text, _ = _write(tmp_path / "none", None)
    assert _section(text).strip() == "Not analysed: no trained model."


@pytest.fixture(scope="module")
def brightness_model(tmp_path_factory):
    """A SavedModel whose `serving_examples` calls an image 'bright' with p = mean pixel / 255."""
    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(examples):
        images = tf.io.parse_example(
            examples, {"image": tf.io.FixedLenFeature([], tf.string)})["image"]
        bright = tf.map_fn(lambda b: tf.reduce_mean(tf.cast(tf.io.decode_png(b, 1), tf.float32)),
                           images, fn_output_signature=tf.float32) / 255.0
        return {"probabilities": tf.stack([1.0 - bright, bright], axis=1)}

    module.serve = serve
    path = str(tmp_path_factory.mktemp("model"))
    tf.saved_model.save(module, path, signatures={signatures.SERVING_EXAMPLES: serve})
    return path


def _examples_dir(root, rows):
    split = root / "Split-test"
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / "data_tfrecord-00000-of-00001.gz"), "GZIP") as writer:
        for path, label, level in rows:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
                for key, value in (("image", _png(level)), ("label", label.encode()),
                                   ("path", path.encode()))})).SerializeToString())
    return str(root)


def test_test_split_through_a_real_serving_examples_signature(tmp_path, brightness_model):
    examples = _examples_dir(tmp_path, [("d/0.png", "dark", 0), ("b/0.png", "bright", 255),
                                        ("d/1.png", "dark", 230), ("b/1.png", "bright", 64),
                                        ("d/2.png", "dark", 153)])
    analysis = prediction_analysis.analyse_test_split(
        brightness_model, examples, ["dark", "bright"], mistakes=2, batch_size=2)
    assert analysis.count == 5 and analysis.errors == 3
    assert analysis.accuracy == pytest.approx(2 / 5)
    assert [(m.path, m.predicted) for m in analysis.mistakes] == [("d/1.png", "bright"),
                                                                  ("b/1.png", "dark")]
    assert [m.confidence for m in analysis.mistakes] == [pytest.approx(230 / 255),
                                                         pytest.approx(1 - 64 / 255)]
    assert analysis.mistakes[0].image == _png(230)


def test_empty_test_split(tmp_path, brightness_model):
    analysis = prediction_analysis.analyse_test_split(
        brightness_model, _examples_dir(tmp_path, []), ["dark", "bright"])
    assert analysis.count == 0 and analysis.mistakes == []
    no_split = prediction_analysis.analyse_test_split(
        brightness_model, str(tmp_path / "no-split"), ["a"])
    assert no_split.count == 0


def test_classes_are_listed_by_name_with_numbers_in_numeric_order():
    assert run_report.class_order(["7", "10", "b", "2", "A", "img10", "img9"]) == [
        "2", "7", "10", "A", "b", "img9", "img10"]


def test_confusion_matrix_is_reordered_by_class_name_rows_and_columns_alike():
    names = ["6", "0", "3"]  # vocabulary (frequency) order
    matrix = np.array([[5, 1, 0],    # actual 6
                       [0, 7, 2],    # actual 0
                       [3, 0, 4]])   # actual 3
    reordered, order = run_report.sorted_matrix(matrix, names)
    assert order == ["0", "3", "6"]
    assert reordered.tolist() == [[7, 2, 0],   # actual 0: predicted 0, 3, 6
                                  [0, 4, 3],   # actual 3
                                  [1, 0, 5]]   # actual 6


def _full_report(tmp_path, test_accuracy, matrix, unknown=0, split_counts=None,
                 names=("6", "0", "3")):
    summary = run_report.RunSummary(run_id="r", components=[], test_accuracy=test_accuracy)
    path = run_report.write_report(summary, str(tmp_path), None, (np.array(matrix), unknown),
                                   list(names), split_counts or {}, "x", _analysis())
    return open(path).read()


def _evaluation(text):
    return text.split("## Evaluation (test split)\n")[1].split("\n## ")[0]


def test_evaluation_shows_a_real_zero_accuracy_and_one_sorted_per_class_table(tmp_path):
    text = _full_report(tmp_path, 0.0, [[0, 2, 0], [1, 0, 0], [0, 3, 0]])
    section = _evaluation(text)
    assert "Accuracy: 0.000" in section
    assert section.count("| class |") == 1 and text.count("| class |") == 1
    assert ("| 0 | 1 | 0.000 | 0.000 |\n| 3 | 3 | n/a | 0.000 |\n| 6 | 2 | 0.000 | 0.000 |"
            in section)
    assert "not trained on" not in section
    assert "Accuracy: n/a" in _evaluation(_full_report(tmp_path, None, np.eye(3)))


def test_examples_with_an_unknown_label_are_counted_not_folded_into_a_class(tmp_path):
    section = _evaluation(_full_report(tmp_path, 0.5, np.eye(3, dtype=int), unknown=4))
    assert "4 test examples have a label the model was not trained on" in section
    assert "| 6 | 1 | 1.000 | 1.000 |" in section


def test_data_section_is_sorted_and_names_classes_without_eval_or_test_images(tmp_path):
    counts = {"train": {"6": 9, "0": 8, "3": 7, "10": 1}, "eval": {"6": 1, "0": 1},
              "test": {"6": 1, "3": 1, "0": 1}}
    text = _full_report(tmp_path, 1.0, np.eye(4, dtype=int), split_counts=counts,
                        names=("6", "0", "3", "10"))
    data = text.split("## Data\n")[1].split("\n## ")[0]
    assert "| split | 0 | 3 | 6 | 10 | total |" in data
    assert "| eval | 1 | 0 | 1 | 0 | 2 |" in data
    assert "No eval images for class(es) 3, 10:" in data
    assert "No test images for class(es) 10:" in data
    assert run_report.classes_missing_from_splits(
        {"train": {"a": 1}, "eval": {"a": 1}, "test": {"a": 2}}, ["a"]) == {}


def _tflite(**fields):
    evaluation = TFLiteEvaluation(images=40, accuracy=0.85, savedmodel_accuracy=0.9,
                                  top1_agreement=0.95, size_bytes=3 * 2**20, latency_ms=1.5)
    return TFLiteResult(**{"mode": "int8", "blessed": True, "reason": "",
                           "evaluation": evaluation, **fields})


@pytest.mark.parametrize("fields, section, decision", [
    ({"blessed": False, "reason": "not blessed by the Evaluator", "evaluation": None},
     False, "NOT published: not blessed by the Evaluator"),
    ({"blessed": False, "reason": "TFLite accuracy 0.8500 is 0.0500 below"},
     True, "NOT published: TFLite accuracy 0.8500 is 0.0500 below"),
    ({}, True, "nothing published (the SavedModel was not pushed)"),
    ({"pushed_to": "/tflite/tiny/7", "new_version": True}, True, "published /tflite/tiny/7"),
    ({"pushed_to": "/tflite/tiny/7"}, True, "nothing new: identical to /tflite/tiny/7"),
])
def test_tflite_section_shows_the_evaluation_and_the_decision(fields, section, decision):
    """The TFLiteCheck's figures as a table when it evaluated (not when the Evaluator's refusal
    stopped it first), and one line on what was published."""
    lines = run_report._tflite_lines(_tflite(**fields))
    text = "\n".join(lines)
    assert lines[1] == "## TFLite (int8)"
    assert ("| 0.8500 | 0.9000 | 0.9500 | 3.00 MiB | 1.50 ms/image |" in text) == section, text
    assert lines[-1].startswith("- int8: ") and lines[-1].endswith(decision), lines[-1]


def test_no_tflite_section_without_a_tflite_model():
    assert run_report._tflite_lines(None) == []


@pytest.mark.parametrize("tflite, tuned", [
    (None, None), (_tflite(), None), (_tflite(blessed=False, evaluation=None), None),
    (None, Tuning([{"trial_id": "0", "score": 0.5, "unfreeze_layers": 20}],
                  {"unfreeze_layers": 20}, False)),
])
def test_a_recorded_summary_reads_back_as_it_was_written(tflite, tuned):
    """run_summary.json, as `finetune run` writes it and reads it when nothing changed."""
    summary = RunSummary(run_id="r", components=[ComponentRun("Trainer", "complete", 3.5)],
                         test_accuracy=0.9, tflite=tflite, tuning=tuned)
    assert RunSummary.from_dict(json.loads(summary.to_json())) == summary
