"""End-to-end: the real LocalDagRunner pipeline on a tiny real image folder.

One shared first run (and its unchanged re-run) is only read by the tests; a test that runs
the pipeline on changed data or a changed config works in its own copy of that workspace and
data (`_copy_of_workspace`), so the tests pass in any order.
"""
import dataclasses
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from imagefolders import write_folder
from tfx_finetune.commands import cli, demo, run
from tfx_finetune.components import history as history_lib
from tfx_finetune.components import published, serving_requests
from tfx_finetune.components.data_gate.executor import DataValidationError
from tfx_finetune.components.digest import directory_digest
from tfx_finetune.pipeline.config import PipelineConfig
from tfx_finetune.reports import model_card, run_summary
from tfx_finetune.reports import tuning as tuning_report

# A real pipeline run: the slow tier (`pytest -m 'not slow'` skips it).
pytestmark = pytest.mark.slow

CLASSES = ("0", "1", "2")
NODES = {"ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "DataGate",
         "Transform", "Tuner", "Trainer", "Evaluator", "ServingCheck", "AtomicPusher", "TFLiteCheck",
         "TFLitePusher"}


@pytest.fixture(scope="session")
def first_run(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("workspace")
    data = write_folder(workspace / "data", classes=tuple(map(int, CLASSES)), per_class=40)
    # The demo's own backbone pretraining, shortened; the saved file takes the same
    # weights=<path> code path as a user's ImageNet weights file.
    weights = str(workspace / "base.weights.h5")
    demo.pretrain_backbone(weights, image_size=32, epochs=2)
    config = PipelineConfig(
        data_dir=data, workspace=str(workspace), model_name="tiny", weights=weights,
        image_size=32, head_units=32, batch_size=16, phase1_epochs=3, phase2_epochs=1,
        unfreeze_layers=5, min_accuracy=0.34,
        # int8, the conversion with the most parts; a wide margin, because one test image
        # of this tiny split is 8 points (the refusal has its own tests).
        tflite="int8", tflite_max_accuracy_drop=0.5,
        # Two Tuner trials (phase 2's rate, depth and epochs) before the Trainer.
        tuner_trials=2)
    return config, run.run(config)


@pytest.fixture(scope="session")
def second_run(first_run):
    config, _ = first_run
    return run.run(config)


def _copy_of_workspace(config, root, data_dir=None):
    """`config` in a copy of its workspace under `root` (everything the shared runs left there:
    ML Metadata, the pipeline root, the served and TFLite versions, the accepted statistics),
    for a test that runs the pipeline again without changing what the other tests read.

    The copy's ML Metadata still names the shared run's artifacts, which the new run only
    reads (they are its cache hits); it writes into the copy.
    """
    workspace = os.path.join(str(root), "workspace")
    data = os.path.abspath(config.data_dir)
    shutil.copytree(config.workspace, workspace,
                    ignore=lambda folder, names: [n for n in names
                                                  if os.path.join(folder, n) == data])
    return dataclasses.replace(config, workspace=workspace, data_dir=data_dir or config.data_dir)


def _published(base_dir):
    """What a base directory holds: its entries (versions, and anything half-written) and
    the digest of all their content."""
    return sorted(os.listdir(base_dir)), directory_digest(base_dir)


@pytest.fixture(scope="session")
def worse_run(first_run, tmp_path_factory):
    """A clearly worse candidate judged against the first run's model, which is serving.

    Same data and the first run's workspace (a copy), so the Evaluator's baseline is the
    first run's published version. The candidate cannot be good: a randomly initialised
    backbone, one phase-1 epoch at a negligible rate, no phase 2. `min_accuracy` is lowered
    to 0.01, so the value threshold passes and only the change threshold (the first run's
    `max_accuracy_drop`, the default 0.02) can refuse it.

    Returns:
      The worse run's config, its summary, and `_published` of its serving and TFLite base
      directories before it ran.
    """
    config, _ = first_run
    worse = dataclasses.replace(
        _copy_of_workspace(config, tmp_path_factory.mktemp("worse_run")),
        weights="none", phase1_epochs=1, phase1_learning_rate=1e-7, phase2_epochs=0,
        tuner_trials=0, min_accuracy=0.01)
    before = {d: _published(d) for d in (worse.model_base_dir, worse.tflite_base_dir)}
    return worse, run.run(worse), before


def test_every_component_ran(first_run):
    _, summary = first_run
    states = {c.node_id: c.state for c in summary.components}
    assert set(states) == NODES
    assert set(states.values()) == {"complete"}, states


def test_summary_reports_both_phases_and_the_first_blessing(first_run):
    config, summary = first_run
    assert summary.ingestion["accepted"] == 120 and summary.ingestion["rejected"] == 0
    assert summary.ingestion["per_class"] == {c: 40 for c in CLASSES}
    assert summary.phase1_val_accuracy is not None and summary.phase2_val_accuracy is not None
    assert summary.test_accuracy >= config.min_accuracy
    assert summary.blessed and not summary.had_baseline
    with open(os.path.join(config.workspace, "run_summary.json")) as f:
        assert json.load(f)["pushed_to"] == summary.pushed_to


def test_a_version_was_pushed_to_the_serving_base_dir(first_run):
    config, summary = first_run
    versions = os.listdir(config.model_base_dir)
    assert len(versions) == 1 and versions[0].isdigit()
    assert summary.pushed_to == os.path.join(os.path.abspath(config.model_base_dir), versions[0])
    assert os.path.isfile(os.path.join(summary.pushed_to, "saved_model.pb"))


_SERVE = r"""
import json, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
images = [open(p, "rb").read() for p in sys.argv[2:]]
by_bytes = model.signatures["serving_default"](image_bytes=tf.constant(images))
examples = [tf.train.Example(features=tf.train.Features(feature={"image": tf.train.Feature(
    bytes_list=tf.train.BytesList(value=[b]))})).SerializeToString() for b in images]
by_example = model.signatures["serving_examples"](examples=tf.constant(examples))
print(json.dumps({
    "probabilities": by_bytes["probabilities"].numpy().tolist(),
    "class_id": by_bytes["class_id"].numpy().tolist(),
    "class_name": [n.decode() for n in by_bytes["class_name"].numpy()],
    "example_probabilities": by_example["probabilities"].numpy().tolist(),
}))
"""


def test_pushed_model_serves_raw_bytes_in_a_fresh_process(first_run):
    config, summary = first_run
    images = sorted(glob.glob(os.path.join(config.data_dir, "*", "*.png")))[::10]
    # A plain TensorFlow process, as a server would be: no project code, no Keras choice.
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run([sys.executable, "-c", _SERVE, summary.pushed_to, *images],
                         capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    probabilities = result["probabilities"]
    assert len(probabilities) == len(images)
    for row, class_id, name in zip(probabilities, result["class_id"], result["class_name"]):
        assert len(row) == len(CLASSES)
        assert sum(row) == pytest.approx(1.0, abs=1e-4)
        assert row.index(max(row)) == class_id
        assert name in CLASSES
    for a, b in zip(probabilities, result["example_probabilities"]):
        assert a == pytest.approx(b, abs=1e-5)


def test_pushed_model_carries_warm_up_requests_that_replay(first_run):
    """Eight eval images through each signature, read back as TF Serving reads the file."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    _, summary = first_run
    path = os.path.join(summary.pushed_to, "assets.extra", "tf_serving_warmup_requests")
    logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(path)]
    requests = {log.predict_log.request.model_spec.signature_name: log.predict_log.request
                for log in logs}
    assert len(logs) == 2 and set(requests) == {"serving_default", "serving_examples"}
    model = tf.saved_model.load(summary.pushed_to)
    for request in requests.values():
        probabilities = serving_requests.response_columns(
            serving_requests.grpc_predict(model, request))["probabilities"]
        assert probabilities.shape == (8, len(CLASSES))
        assert probabilities.sum(axis=1) == pytest.approx([1.0] * 8, abs=1e-4)
    assert summary.serving_check.endswith("; 2 TF Serving warm-up requests replayed")


def _labelled_images(config, every=4):
    paths = sorted(glob.glob(os.path.join(config.data_dir, "*", "*.png")))[::every]
    return [open(p, "rb").read() for p in paths], [os.path.basename(os.path.dirname(p))
                                                  for p in paths]


def test_rest_and_grpc_requests_return_the_right_classes(first_run):
    import tensorflow as tf

    config, summary = first_run
    assert summary.servable, summary.serving_check
    model = tf.saved_model.load(summary.pushed_to)
    images, labels = _labelled_images(config)
    rest = serving_requests.rest_predict(
        model, serving_requests.rest_body("serving_default", images))["predictions"]
    grpc = serving_requests.response_columns(serving_requests.grpc_predict(
        model, serving_requests.grpc_request("tiny", "serving_default", "image_bytes", images)))
    rest_names = [row["class_name"] for row in rest]
    assert rest_names == [n.decode() for n in grpc["class_name"]]
    correct = sum(name == label for name, label in zip(rest_names, labels))
    assert correct / len(labels) >= 0.8, (rest_names, labels)


def test_unchanged_rerun_reuses_components_and_publishes_nothing(first_run, second_run):
    config, first = first_run
    states = {c.node_id: c.state for c in second_run.components}
    # Every component, the data gate and the Evaluator included: they never compare the run
    # with its own accepted statistics or its own (now serving) model.
    for node in NODES:
        assert states[node] == "cached", states
    assert not second_run.had_baseline
    assert second_run.pushed_to == first.pushed_to and not second_run.new_version
    assert len(os.listdir(config.model_base_dir)) == 1
    assert second_run.tuning.cached and second_run.tuning.best == first.tuning.best
    assert second_run.tflite.pushed_to == first.tflite.pushed_to
    assert not second_run.tflite.new_version
    assert len(os.listdir(config.tflite_base_dir)) == 1


def test_worse_candidate_is_clearly_worse_than_the_served_model(first_run, worse_run):
    """The premise of the two tests below, from the run summaries' figures: the candidate was
    trained and evaluated (not taken from the cache) against the served model, passes the
    value threshold, and falls far more than `max_accuracy_drop` below the served model's
    test accuracy (the same test split: ingestion came from the cache)."""
    _, first = first_run
    config, worse, _ = worse_run
    states = {c.node_id: c.state for c in worse.components}
    assert states["ImageExampleGen"] == "cached", states
    assert states["Trainer"] == states["Evaluator"] == "complete", states
    assert worse.had_baseline
    assert worse.test_accuracy >= config.min_accuracy
    assert worse.test_accuracy < first.test_accuracy - config.max_accuracy_drop, (
        worse.test_accuracy, first.test_accuracy)
    assert first.test_accuracy - worse.test_accuracy >= 0.2, (worse.test_accuracy,
                                                              first.test_accuracy)


def test_worse_candidate_is_not_blessed_and_nothing_is_published(first_run, worse_run):
    """The core promise of blessing: a model worse than the one serving is not pushed. The
    serving directory keeps exactly the first run's version, byte for byte, and no TFLite
    version appears either."""
    _, first = first_run
    config, worse, before = worse_run
    assert worse.blessed is False
    assert worse.pushed_to is None and not worse.new_version
    assert published.versions(config.model_base_dir) == [int(os.path.basename(first.pushed_to))]
    assert _published(config.model_base_dir) == before[config.model_base_dir]
    assert worse.tflite.pushed_to is None
    assert _published(config.tflite_base_dir) == before[config.tflite_base_dir]


def test_run_report_says_the_worse_candidate_failed_the_baseline_comparison(worse_run):
    """The report's blessing section says it was not blessed, by the rule against the last
    blessed model with the configured drop, and that nothing was pushed."""
    config, worse, _ = worse_run
    text = open(worse.report_path).read()
    section = text.split("## Blessing and publishing\n")[1].split("\n## ")[0]
    assert "- NOT blessed: " in section, section
    assert f"at most {config.max_accuracy_drop} below the last blessed model" in section, section
    assert "- pushed: nothing" in section, section


def test_the_tuner_tunes_phase_2_then_the_trainer_trains_with_the_best(first_run):
    """The Tuner's trials are real fine-tunes judged on the eval split; the Trainer's phase 2
    runs the best trial's epochs; the summary and the report show the search (the command
    line's flag: `test_cli_rerun_…`; the cached re-run: `test_unchanged_rerun_…`)."""
    config, summary = first_run
    tuning = summary.tuning
    assert len(tuning.trials) == 2 and not tuning.cached
    assert tuning.trials[0]["score"] >= tuning.trials[1]["score"]
    assert tuning.best == {k: tuning.trials[0][k] for k in tuning.best}
    assert 0 <= tuning.trials[0]["score"] <= 1
    assert 1 <= tuning.best["phase2_epochs"] <= 2 * config.phase2_epochs
    history = history_lib.read(summary.history_path)
    # Early stopping's patience (3) is more than the epochs: phase 2 runs them all.
    assert len(history["phase2"]["loss"]) == tuning.best["phase2_epochs"]
    assert history["phase2"]["learning_rate"][0] <= tuning.best["phase2_learning_rate"] * 1.0001
    assert run_summary.format_summary(summary, config).splitlines()[2] == (
        f"  tuning: {tuning_report.text(tuning)}")
    section = open(summary.report_path).read().split("## Tuning\n")[1].split("\n## ")[0]
    assert len([line for line in section.splitlines() if line.startswith("| ")]) == 1 + 2


def test_tflite_model_was_evaluated_then_published_beside_the_serving_version(first_run):
    config, summary = first_run
    tflite, evaluation = summary.tflite, summary.tflite.evaluation
    assert tflite.mode == "int8" and tflite.blessed, tflite.reason
    assert evaluation.images == sum(summary.ingestion["per_split"]["test"].values())
    assert evaluation.savedmodel_accuracy == pytest.approx(summary.test_accuracy, abs=1e-6)
    assert 0 < evaluation.top1_agreement <= 1 and evaluation.latency_ms > 0
    version = os.path.basename(summary.pushed_to)
    assert tflite.pushed_to == os.path.join(os.path.abspath(config.tflite_base_dir), version)
    assert tflite.new_version
    assert sorted(os.listdir(tflite.pushed_to)) == ["labels.txt", "model.tflite"]
    assert evaluation.size_bytes == os.path.getsize(os.path.join(tflite.pushed_to,
                                                                 "model.tflite"))
    with open(os.path.join(tflite.pushed_to, "labels.txt")) as f:
        assert sorted(f.read().split()) == sorted(CLASSES)
    report = open(summary.report_path).read()
    assert "## TFLite (int8)" in report and f"published {tflite.pushed_to}" in report


def test_predict_command_on_the_published_tflite_model(first_run, capsys):
    config, summary = first_run
    assert cli.main(["predict", "--model", config.tflite_base_dir, config.data_dir,
                     "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == os.path.join(summary.tflite.pushed_to, "model.tflite")
    assert len(out["results"]) == 120 and out["summary"]["accuracy"] >= 0.5


def test_predict_command_on_the_labelled_folder(first_run, capsys):
    config, _ = first_run
    assert cli.main(["predict", "--model", config.model_base_dir, config.data_dir,
                     "--json", "--top-k", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["results"]) == 120
    assert all(len(r["predictions"]) == 2 for r in out["results"])
    assert out["summary"]["images"] == 120 and out["summary"]["accuracy"] >= 0.8


def test_bulk_predict_equals_single_image_predict(first_run, tmp_path, capsys):
    """`predict --bulk` (Beam RunInference) on nested folders with a text file and a corrupt
    JPEG: the same classes and probabilities as `finetune predict`, rejects listed."""
    config, _ = first_run
    folder = tmp_path / "to_score"
    for label in CLASSES:
        for path in sorted(glob.glob(os.path.join(config.data_dir, label, "*.png")))[:4]:
            os.makedirs(folder / label / "batch", exist_ok=True)
            shutil.copy(path, folder / label / "batch" / os.path.basename(path))
    (folder / "readme.txt").write_text("not an image")
    (folder / "0" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 30)
    output = str(tmp_path / "predictions.jsonl")
    assert cli.main(["predict", "--bulk", "--model", config.model_base_dir, str(folder),
                     "--output", output, "--top-k", "3"]) == 0
    assert "scored 12 images" in capsys.readouterr().out
    with open(output) as f:
        bulk = {row["path"]: row["predictions"] for row in map(json.loads, f)}
    with open(output.replace(".jsonl", ".rejects.jsonl")) as f:
        rejects = {os.path.basename(row["path"]): row["reason"] for row in map(json.loads, f)}
    assert set(rejects) == {"readme.txt", "corrupt.jpg"}
    assert rejects["corrupt.jpg"].startswith("cannot decode image")
    assert cli.main(["predict", "--model", config.model_base_dir, str(folder), "--json",
                     "--top-k", "3"]) == 0
    single = json.loads(capsys.readouterr().out)["results"]
    assert [os.path.basename(r["path"]) for r in single if "error" in r] == ["corrupt.jpg"]
    scored = {r["path"]: r["predictions"] for r in single if "error" not in r}
    assert set(bulk) == set(scored) and len(bulk) == 12
    for path, predictions in bulk.items():
        assert [p["class"] for p in predictions] == [p["class"] for p in scored[path]]
        assert sorted(p["class"] for p in predictions) == sorted(CLASSES)
        for a, b in zip(predictions, scored[path]):
            assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-5)
    correct = sum(p[0]["class"] == os.path.relpath(path, folder).split(os.sep)[0]
                  for path, p in bulk.items())
    assert correct >= 10, bulk


def test_serve_config_points_tf_serving_at_the_base_dir(first_run, capsys):
    config, _ = first_run
    assert cli.main(["serve-config", "--workspace", config.workspace]) == 0
    out = capsys.readouterr().out
    assert f'base_path: "{os.path.abspath(config.model_base_dir)}"' in out
    assert "tensorflow_model_server" in out and "/v1/models/tiny:predict" in out


def test_run_report_has_tables_and_plots(first_run):
    _, summary = first_run
    report_dir = os.path.dirname(summary.report_path)
    text = open(summary.report_path).read()
    assert "judged on the value threshold only" in text
    evaluation = text.split("## Evaluation (test split)\n")[1].split("\n## ")[0]
    rows = re.findall(r"^\| (\S+) \| (\d+) \| (?:[0-9.]+|n/a) \| (?:[0-9.]+|n/a) \|$",
                      evaluation, re.MULTILINE)
    assert [name for name, _ in rows] == sorted(CLASSES, key=int)  # by name, not vocabulary
    test_count = sum(summary.ingestion["per_split"]["test"].values())
    assert sum(int(support) for _, support in rows) == test_count
    assert text.count("| class |") == 1  # one per-class table
    analysis = text.split("## Prediction analysis (test split)\n")[1].split("\n## ")[0]
    accuracy = float(re.search(rf"over the {test_count} test examples: accuracy ([0-9.]+)\.",
                               analysis).group(1))
    assert accuracy == pytest.approx(summary.test_accuracy, abs=6e-4)
    errors = int(re.search(r"(\d+) of \d+ predictions are wrong", analysis).group(1))
    assert errors == round((1 - accuracy) * test_count)
    pngs = ["confusion_matrix.png", "training_curves.png", "confidence_histogram.png"]
    if errors:
        mistakes = re.findall(r"^\| (\S+) \| (\S+) \| (\S+) \| ([0-9.]+) \|$", analysis,
                              re.MULTILINE)
        assert len(mistakes) == min(errors, 10)
        assert all(true != predicted for _, true, predicted, _ in mistakes)
        confidences = [float(c) for *_, c in mistakes]
        assert confidences == sorted(confidences, reverse=True)
        pngs.append("mistakes.png")
    else:
        assert "No mistakes on the test split." in analysis
    for png in pngs:
        assert open(os.path.join(report_dir, png), "rb").read(4) == b"\x89PNG"


def test_model_card_follows_the_schema_and_holds_the_runs_figures(first_run):
    """Counts against ExampleGen's own (the card's come from StatisticsGen), per-class figures
    against the report's evaluation table."""
    import jsonschema

    _, summary = first_run
    assert os.path.dirname(summary.model_card_path) == os.path.dirname(summary.report_path)
    with open(summary.model_card_path) as f:
        card = json.load(f)
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "reports",
                           "model_card.schema.v0.0.2.json")) as f:
        schema = json.load(f)
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).validate(card)
    assert card["model_details"]["name"] == "tiny"
    assert card["model_details"]["version"]["name"] == os.path.basename(summary.pushed_to)
    assert summary.run_id in card["model_details"]["documentation"]
    per_split = summary.ingestion["per_split"]
    data = card["model_parameters"]["data"]
    assert [d["name"] for d in data] == [f"{split} split" for split in ("train", "eval", "test")]
    for dataset in data:
        counts = per_split[dataset["name"].split()[0]]
        assert dataset["description"].startswith(f"{sum(counts.values()):,} image(s) of ")
        assert dataset["description"].endswith(
            "Images per class: " + model_card.counts_text(counts))
    metrics = {(m["type"], m.get("slice")): m["value"]
               for m in card["quantitative_analysis"]["performance_metrics"]}
    assert float(metrics["accuracy", None]) == pytest.approx(summary.test_accuracy, abs=5e-5)
    evaluation = open(summary.report_path).read().split("## Evaluation (test split)\n")[1]
    rows = re.findall(r"^\| (\S+) \| \d+ \| ([0-9.]+|n/a) \| ([0-9.]+|n/a) \|$",
                      evaluation.split("\n## ")[0], re.MULTILINE)
    assert len(rows) == len(CLASSES) and len(metrics) == 1 + 2 * len(CLASSES)
    for name, *figures in rows:
        for metric, shown in zip(("precision", "recall"), figures):
            value = metrics[metric, model_card.class_slice(name)]
            assert (value == shown == "n/a"
                    or float(value) == pytest.approx(float(shown), abs=6e-4)), (name, metric)


def test_cli_rerun_with_nothing_changed_does_not_start_the_pipeline(first_run, second_run,
                                                                     tmp_path, capsys):
    """The first run's config as a YAML file, with the Tuner asked for by `--tuner-trials`:
    the same pipeline, every component from the cache, the first time; the second time the
    pipeline does not start."""
    config, first = first_run
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(
        {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
         if k != "tuner_trials"}))
    command = ["run", "--config", str(config_file), "--tuner-trials", str(config.tuner_trials)]
    assert cli.main(command) == 0  # cached run, recorded
    out = capsys.readouterr().out
    assert "nothing changed since the last run" not in out
    assert "(from the cache: not tuned again)" in out
    assert re.search(r"^    Tuner +cached ", out, re.M), out
    assert cli.main(command) == 0
    out = capsys.readouterr().out
    assert "nothing changed since the last run" in out and first.pushed_to in out
    assert len(os.listdir(config.model_base_dir)) == 1


def test_new_class_stops_the_run_before_transform_and_trainer(first_run, tmp_path):
    """A class folder the accepted data never had stops the run at the DataGate; run on a copy
    of the data (with the class added) in a copy of the shared workspace."""
    config, _ = first_run
    data = shutil.copytree(config.data_dir, tmp_path / "data")
    write_folder(data, classes=(9,), per_class=10)
    changed = _copy_of_workspace(config, tmp_path, data_dir=str(data))
    with pytest.raises(DataValidationError, match="new class.*: 9"):
        run.run(changed)
    states = {c.node_id: c.state for c in run_summary.summarize(changed).components}
    assert states["ImageExampleGen"] == "complete"
    assert states["DataGate"] == "failed"
    assert "Transform" not in states and "Trainer" not in states
