"""The data gate on real TFDV statistics of small label distributions."""
import os
import shutil
import tempfile

import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2

from tfx_finetune.components.data_gate import executor
from tfx_finetune.pipeline.config import DEFAULT_SCHEMA
from tfx_finetune.pipeline.pipeline import statistics_options


def _stats_dir(root, name, counts):
    """A StatisticsGen-like artifact dir whose train split has `counts` examples per class."""
    labels = [label for label, n in counts.items() for _ in range(n)]
    frame = pd.DataFrame({"image": [b"\x89PNG"] * len(labels), "label": labels,
                          "path": [f"{i}.png" for i in range(len(labels))]})
    stats = tfdv.generate_statistics_from_dataframe(frame)
    uri = tempfile.mkdtemp(prefix=name, dir=root)
    os.makedirs(os.path.join(uri, "Split-train"))
    with open(os.path.join(uri, "Split-train", executor.STATS_FILE), "wb") as f:
        f.write(stats.SerializeToString())
    return uri


@pytest.fixture
def dirs(tmp_path):
    schema_uri = tmp_path / "schema"
    schema_uri.mkdir()
    shutil.copy(DEFAULT_SCHEMA, schema_uri / "schema.pbtxt")
    anomalies_uri = tmp_path / "anomalies"
    (anomalies_uri / "Split-train").mkdir(parents=True)
    (anomalies_uri / "Split-train" / executor.ANOMALIES_FILE).write_bytes(
        anomalies_pb2.Anomalies().SerializeToString())
    return tmp_path, str(schema_uri), str(anomalies_uri)


def _gate(dirs, previous, current, accept=False):
    root, schema_uri, anomalies_uri = dirs
    previous_uri = _stats_dir(root, "previous", previous) if previous else None
    return executor.gate(_stats_dir(root, "current", current), schema_uri,
                         anomalies_uri,
                         previous_uri, max_label_drift=0.1, min_example_count_ratio=0.5,
                         accept_changes=accept)


BASE = {"cat": 50, "dog": 50}


def test_first_run_and_unchanged_data_pass(dirs):
    assert _gate(dirs, None, BASE) == []
    assert _gate(dirs, BASE, BASE) == []


def test_new_class_stops_the_run_naming_it(dirs):
    with pytest.raises(executor.DataValidationError, match="new class.*: bird") as error:
        _gate(dirs, BASE, {"cat": 50, "dog": 50, "bird": 5})
    assert "--accept-data-changes" in str(error.value)


def test_vanished_class_stops_the_run(dirs):
    with pytest.raises(executor.DataValidationError, match="now missing: dog"):
        _gate(dirs, BASE, {"cat": 100})


def test_label_drift_beyond_the_threshold_stops_the_run(dirs):
    _gate(dirs, BASE, {"cat": 55, "dog": 45})  # 0.05 L-infinity: within 0.1
    with pytest.raises(executor.DataValidationError, match="Linfty distance .* above the threshold 0.1"):
        _gate(dirs, BASE, {"cat": 80, "dog": 20})


def test_large_drop_in_examples_stops_the_run(dirs):
    with pytest.raises(executor.DataValidationError, match="(?i)num.*examples"):
        _gate(dirs, BASE, {"cat": 20, "dog": 20})


def test_accepting_changes_records_them(dirs):
    accepted = _gate(dirs, BASE, {"cat": 50, "dog": 50, "bird": 5}, accept=True)
    assert any("bird" in f.message for f in accepted)
    assert all(f.kind == "change" for f in accepted)


def test_schema_anomalies_block_even_when_changes_are_accepted(dirs):
    _, _, anomalies_uri = dirs
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["image"]
    info.short_description = "Column dropped"
    info.description = "The feature was present in fewer examples than expected."
    (open(os.path.join(anomalies_uri, "Split-train", executor.ANOMALIES_FILE), "wb")
     .write(anomalies.SerializeToString()))
    with pytest.raises(executor.DataValidationError,
                       match="feature 'image': Column dropped.*\n.*fix the data"):
        _gate(dirs, BASE, BASE, accept=True)


def test_class_counts_of_the_pipelines_beam_statistics_are_exact_for_1000_classes(tmp_path):
    """StatisticsGen uses TFDV's sketches (pipeline.statistics_options), which estimate the
    counts of features with more distinct values than the sketch holds (here: image, path);
    the class counts the gate compares must not be estimates."""
    counts = {f"class{i:04d}": 1 + i % 7 for i in range(1000)}
    path = str(tmp_path / "examples.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for index, (label, n) in enumerate((c, n) for c, n in counts.items() for _ in range(n)):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
                for key, value in (("image", f"{index}".encode() * 40), ("label", label.encode()),
                                   ("path", f"{label}/{index}.png".encode()))})).SerializeToString())
    options = statistics_options()
    assert options.use_sketch_based_topk_uniques
    stats = tfdv.generate_statistics_from_tfrecord(path, stats_options=options)
    assert executor.class_counts(stats) == counts
