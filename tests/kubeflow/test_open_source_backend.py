"""The compiled pipeline run end to end the way the open-source Kubeflow Pipelines v2 backend
runs it (`kfp_backend.Backend`, written from its source), and once with Vertex AI's executor
input: every task's command from the spec, as a subprocess with a file system of its own."""
import glob
import json
import os
import shutil

import pytest
import tensorflow as tf

from imagefolders import write_folder
from tfx_finetune.components import serving_requests
from tfx_finetune.kubeflow import compile as compile_lib
from kfp_backend import Backend, RefusedSpec, TaskFailed
from tfx_finetune.pipeline import config as config_lib

# A real pipeline run: the slow tier (`pytest -m 'not slow'` skips it).
pytestmark = pytest.mark.slow

CLASSES = (0, 1, 2)
PIPELINE_ROOT = "minio://mlpipeline/tfx-root"  # the open-source install's default store
TASKS = {"ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "DataGate",
         "Transform", "Trainer", "Evaluator", "ServingCheck", "AtomicPusher"}
TRAINING = dict(model_name="tiny", image_size=32, weights="none", head_units=16,
                batch_size=16, phase1_epochs=2, phase2_epochs=0, min_accuracy=0.05,
                max_accuracy_drop=0.99)


def _compile(mount, output, workspace, **overrides):
    """`finetune compile` with data, workspace and schema on a volume every pod mounts."""
    config = compile_lib.cluster_config(
        config_lib.PipelineConfig(workspace=str(workspace), data_dir=str(mount / "images"),
                                  schema_path=str(mount / "schema.pbtxt"),
                                  **dict(TRAINING, **overrides)),
        mounted=[str(mount)])
    compile_lib.compile_pipeline(config, str(output), PIPELINE_ROOT)
    return config


def _add_images(data, per_class, first):
    """Adds `per_class` new images (other digits) to every class folder."""
    extra = write_folder(str(data) + "-extra", classes=CLASSES, per_class=first + per_class)
    for label in map(str, CLASSES):
        for path in sorted(glob.glob(os.path.join(extra, label, "*.png")))[first:]:
            shutil.copy(path, os.path.join(data, label, "new-" + os.path.basename(path)))
    shutil.rmtree(extra)


def _example_count(backend, examples):
    files = glob.glob(os.path.join(backend.read(examples.uri), "Split-*", "*.gz"))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def _prop(artifact, key):
    return artifact.custom_properties[key].string_value


@pytest.fixture(scope="module")
def mount(tmp_path_factory):
    """The volume mounted in every pod: the images and the curated schema."""
    mount = tmp_path_factory.mktemp("kfp") / "mnt"
    write_folder(str(mount / "images"), classes=CLASSES, per_class=15)
    shutil.copy(config_lib.DEFAULT_SCHEMA, mount / "schema.pbtxt")
    return mount


@pytest.fixture(scope="module")
def open_source(mount, tmp_path_factory):
    """Two runs on one backend: the first, then one with images added and a Trainer setting
    changed (a new compile)."""
    tmp = tmp_path_factory.mktemp("open-source")
    backend = Backend(str(tmp / "backend"))
    workspace = mount / "workspace"
    _compile(mount, tmp / "first.json", workspace)
    first = backend.run(str(tmp / "first.json"))
    _add_images(mount / "images", per_class=5, first=15)
    config = _compile(mount, tmp / "second.json", workspace, phase1_epochs=3)
    second = backend.run(str(tmp / "second.json"))
    return backend, config, first, second


def test_every_task_ran_and_published_a_model_that_serves(open_source):
    backend, config, first, _ = open_source
    assert set(first) == TASKS
    assert {r.state for r in first.values()} == {"COMPLETE"}
    pushed = first["AtomicPusher"].outputs["pushed_model"]
    path = _prop(pushed, "pushed_destination")
    assert os.path.dirname(path) == config.model_base_dir
    model = tf.saved_model.load(path)
    images = [open(p, "rb").read()
              for p in sorted(glob.glob(os.path.join(config.data_dir, "*", "0*.png")))[:6]]
    rows = serving_requests.rest_predict(
        model, serving_requests.rest_body("serving_default", images))["predictions"]
    assert len(rows) == 6
    assert all(row["class_name"] in {str(c) for c in CLASSES} for row in rows)
    assert first["Evaluator"].outputs["blessing"].custom_properties["blessed"].double_value == 1


def test_the_inputs_arrived_in_the_open_source_form(open_source):
    _, _, first, _ = open_source
    statistics_input = first["StatisticsGen"].executor_input.inputs.artifacts["examples"]
    (examples,) = statistics_input.artifacts
    assert examples.name.isdigit() and examples.type.instance_schema == ""
    assert examples.uri.startswith(PIPELINE_ROOT + "/")
    # The executor output named remote URIs, so the launcher recorded and uploaded those.
    for run in first.values():
        for artifact in run.outputs.values():
            assert artifact.uri.startswith(PIPELINE_ROOT + "/"), (run.name, artifact.uri)


def test_a_scheduled_run_ingests_the_new_images(open_source):
    backend, _, first, second = open_source
    assert second["ImageExampleGen"].state == "COMPLETE"
    before = _example_count(backend, first["ImageExampleGen"].outputs["examples"])
    after = _example_count(backend, second["ImageExampleGen"].outputs["examples"])
    assert (before, after) == (45, 60)
    # The curated schema is the same file: that task alone is a cache hit.
    assert {n: r.state for n, r in second.items()} == dict(
        {t: "COMPLETE" for t in TASKS}, ImportSchemaGen="CACHED")


def test_the_second_run_compares_with_the_first(open_source):
    _, config, first, second = open_source
    first_statistics = _prop(first["DataGate"].outputs["accepted_statistics"], "published_to")
    assert first_statistics.startswith(config.accepted_statistics_dir)
    assert _prop(second["DataGate"].outputs["accepted_statistics"],
                 "compared_with") == first_statistics
    first_version = _prop(first["AtomicPusher"].outputs["pushed_model"], "pushed_destination")
    blessing = second["Evaluator"].outputs["blessing"]
    assert _prop(blessing, "baseline_model_path") == first_version
    second_version = _prop(second["AtomicPusher"].outputs["pushed_model"],
                           "pushed_destination")
    assert int(os.path.basename(second_version)) > int(os.path.basename(first_version))


def test_a_vertex_ai_run_of_the_same_spec(mount, tmp_path):
    backend = Backend(str(tmp_path / "backend"), form="vertex")
    config = _compile(mount, tmp_path / "vertex.json", mount / "vertex-workspace")
    run = backend.run(str(tmp_path / "vertex.json"))
    assert {r.state for r in run.values()} == {"COMPLETE"}
    (examples,) = run["StatisticsGen"].executor_input.inputs.artifacts["examples"].artifacts
    assert examples.name.startswith("projects/") and "tfx.Examples" in \
        examples.type.instance_schema
    path = _prop(run["AtomicPusher"].outputs["pushed_model"], "pushed_destination")
    assert os.path.dirname(path) == config.model_base_dir
    assert "serving_default" in tf.saved_model.load(path).signatures


def _patched(source, target, change):
    with open(source, encoding="utf-8") as f:
        job = json.load(f)
    change(job)
    with open(target, "w", encoding="utf-8") as f:
        json.dump(job, f)
    return str(target)


def test_a_cached_example_gen_misses_new_images_which_is_why_it_is_not_cached(tmp_path):
    """The case our spec fixes, reproduced: TFX compiles every task cacheable, and the backend
    keys the cache on the executor input, which is the same on every scheduled run."""
    mount = tmp_path / "mnt"
    write_folder(str(mount / "images"), classes=CLASSES, per_class=6)
    shutil.copy(config_lib.DEFAULT_SCHEMA, mount / "schema.pbtxt")
    _compile(mount, tmp_path / "spec.json", mount / "workspace")

    def cache_everything(job):
        for task in job["pipelineSpec"]["root"]["dag"]["tasks"].values():
            task["cachingOptions"] = {"enableCache": True}

    stock = _patched(tmp_path / "spec.json", tmp_path / "stock.json", cache_everything)
    backend = Backend(str(tmp_path / "backend"))
    first = backend.run(stock, stop_after="ImageExampleGen")["ImageExampleGen"]
    _add_images(mount / "images", per_class=2, first=6)
    stale = backend.run(stock, stop_after="ImageExampleGen")["ImageExampleGen"]
    assert stale.state == "CACHED"
    assert stale.outputs["examples"].id == first.outputs["examples"].id
    assert _example_count(backend, stale.outputs["examples"]) == 18  # the 6 new are missing
    fresh = backend.run(str(tmp_path / "spec.json"), stop_after="ImageExampleGen")
    assert fresh["ImageExampleGen"].state == "COMPLETE"
    assert _example_count(backend, fresh["ImageExampleGen"].outputs["examples"]) == 24


STOCK_COMMAND = ["python", "-m",
                 "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]


@pytest.mark.parametrize("tasks, failing, message", [
    # TensorFlow cannot write the first task's outputs to MinIO.
    (None, "ImageExampleGen", "File system scheme 'minio' not implemented"),
    # An input artifact with an empty instance_schema (kubeflow_v2_entrypoint_utils.py:259).
    ({"StatisticsGen"}, "StatisticsGen", "'NoneType' object has no attribute 'get'"),
])
def test_tfx_own_entrypoint_fails_on_the_open_source_backend(mount, tmp_path, tasks, failing,
                                                            message):
    """What happened before our entrypoint, reproduced: TFX's stock command fails there."""
    _compile(mount, tmp_path / "spec.json", mount / "stock-workspace")

    def stock_command(job):
        components = job["pipelineSpec"]["components"]
        for task, spec in job["pipelineSpec"]["root"]["dag"]["tasks"].items():
            if tasks is None or task in tasks:
                label = components[spec["componentRef"]["name"]]["executorLabel"]
                job["pipelineSpec"]["deploymentSpec"]["executors"][label]["container"][
                    "command"] = STOCK_COMMAND

    stock = _patched(tmp_path / "spec.json", tmp_path / "stock.json", stock_command)
    with pytest.raises(TaskFailed) as failed:
        Backend(str(tmp_path / "backend")).run(stock, stop_after=failing)
    assert failed.value.task == failing
    assert message in failed.value.output


def _add_resolver(job):
    """A resolver executor, as TFX compiles a Resolver node (LatestBlessedModelStrategy)."""
    spec = job["pipelineSpec"]
    spec["deploymentSpec"]["executors"]["resolver-executor"] = {
        "resolver": {"outputArtifactQueries": {}}}
    spec["components"][spec["root"]["dag"]["tasks"]["Evaluator"]["componentRef"]["name"]][
        "executorLabel"] = "resolver-executor"


def _as_schema_2_0(job):
    """A parameter as pipeline spec 2.0 writes it, TFX's default."""
    value = job["pipelineSpec"]["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"][
        "run_fn"]["runtimeValue"]
    value["constantValue"] = {"stringValue": value.pop("constant")}


@pytest.mark.parametrize("change, message", [
    (_add_resolver, "task Evaluator: resolver executors not implemented"),
    (_as_schema_2_0, "run_fn is runtime_value/constant_value: not implemented"),
])
def test_the_emulator_refuses_what_the_backend_refuses(mount, tmp_path, change, message):
    _compile(mount, tmp_path / "spec.json", mount / "refused-workspace")
    refused = _patched(tmp_path / "spec.json", tmp_path / "refused.json", change)
    with pytest.raises(RefusedSpec, match=message):
        Backend(str(tmp_path / "backend")).run(refused)


def test_outputs_were_uploaded_to_the_object_store(open_source):
    """The launcher uploads what the pod wrote at the local path of each output."""
    backend, _, first, _ = open_source
    model = first["Trainer"].outputs["model"]
    assert os.path.isfile(os.path.join(backend.read(model.uri), "Format-Serving",
                                       "saved_model.pb"))
