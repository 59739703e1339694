"""The no-op check of `finetune run`: anything a run depends on changes the fingerprint."""
import dataclasses
import json
import os

import pytest

from tfx_finetune.pipeline import up_to_date
from tfx_finetune.pipeline.config import PipelineConfig


@pytest.fixture
def config(tmp_path):
    data = tmp_path / "data"
    for label in ("a", "b"):
        (data / label).mkdir(parents=True)
        (data / label / "1.png").write_bytes(b"image " + label.encode())
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "metadata.sqlite").write_bytes(b"store")
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"weights")
    names = tmp_path / "labels.txt"
    names.write_text("a\nb\n")
    return PipelineConfig(data_dir=str(data), workspace=str(workspace), weights=str(weights),
                          label_names_file=str(names))


def _recorded(config):
    up_to_date.record(config, json.dumps({"run_id": "r1"}))
    return up_to_date.recorded_summary(config)


def test_an_unchanged_workspace_returns_the_recorded_summary(config):
    assert up_to_date.recorded_summary(config) is None  # nothing recorded yet
    assert _recorded(config) == {"run_id": "r1"}


@pytest.mark.parametrize("change", ["image byte", "new image", "config", "weights", "metadata",
                                    "serving version", "tflite version", "label names"])
def test_any_change_means_the_pipeline_runs(config, change):
    assert _recorded(config)
    if change == "image byte":
        path = os.path.join(config.data_dir, "a", "1.png")
        stat = os.stat(path)
        with open(path, "r+b") as f:
            f.write(b"I")  # same size, mtime restored: only the content differs
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    elif change == "new image":
        with open(os.path.join(config.data_dir, "b", "2.png"), "wb") as f:
            f.write(b"x")
    elif change == "config":
        config = dataclasses.replace(config, phase2_learning_rate=1e-5)
    elif change == "weights":
        with open(config.weights, "ab") as f:
            f.write(b"!")
    elif change == "label names":  # same path, other names
        with open(config.label_names_file, "w") as f:
            f.write("cat\ndog\n")
    elif change == "metadata":  # e.g. a compare or a failed run in the same workspace
        with open(config.metadata_path, "ab") as f:
            f.write(b"!")
    elif change == "tflite version":  # e.g. a removed TFLite version
        os.makedirs(os.path.join(config.tflite_base_dir, "7"))
    else:
        os.makedirs(os.path.join(config.model_base_dir, "7"))
    assert up_to_date.recorded_summary(config) is None


def test_bucket_and_csv_inputs_are_never_fingerprinted(config, tmp_path):
    assert up_to_date.fingerprint(dataclasses.replace(config, data_dir="gs://b/images")) is None
    manifest = tmp_path / "images.csv"
    manifest.write_text("path,label\n")
    csv_config = dataclasses.replace(config, data_dir=str(manifest), input_format="csv")
    up_to_date.record(csv_config, json.dumps({"run_id": "r1"}))
    assert up_to_date.recorded_summary(csv_config) is None
