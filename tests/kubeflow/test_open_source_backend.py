"""The compiled pipeline submitted with `finetune submit` to a multi-user Kubeflow Pipelines API
server (`kfp_apiserver`) and run the way the open-source backend runs it (`kfp_backend`,
written from its source): every task's command from the package, in a pod of its own with no
network, only the volumes the platform spec mounts, the release's launcher layout and, from
2.16, no capabilities. Also once with Vertex AI's executor input."""
import glob
import os
import shutil

import pytest
import tensorflow as tf
import yaml

import kfp_backend
from imagefolders import write_folder
from kfp_apiserver import FakeKfpApi
from kfp_backend import Backend, PodPending, RefusedSpec, TaskFailed
from tfx_finetune.components import model as model_lib, serving_requests
from tfx_finetune.kubeflow import cli as kubeflow_cli
from tfx_finetune.pipeline import config as config_lib

# Real pipeline runs: the slow tier (`pytest -m 'not slow'` skips them).
pytestmark = pytest.mark.slow

CLASSES = (0, 1, 2)
PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"  # the open-source install's default store
NAMESPACE = kfp_backend.DEFAULT_NAMESPACE
USER = "user@example.com"
CLAIM = "finetune-data"
MOUNT = "/mnt/finetune"  # where every pod mounts the claim
IMAGE = "registry.example.com/ml/tfx-finetune:0.1.0"
TASKS = {"ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "DataGate",
         "Transform", "Trainer", "Evaluator", "ServingCheck", "AtomicPusher"}
TRAINING = dict(model_name="tiny", image_size=32, weights=f"{MOUNT}/backbone.h5",
                schema_path=f"{MOUNT}/schema.pbtxt", head_units=16, batch_size=16,
                phase1_epochs=2, phase2_epochs=0, min_accuracy=0.05, max_accuracy_drop=0.99)
STOCK_COMMAND = ["python", "-m",
                 "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]


def _fill(volume, per_class=15):
    """What a user copies onto the volume: images, the curated schema, backbone weights."""
    write_folder(os.path.join(volume, "images"), classes=CLASSES, per_class=per_class)
    shutil.copy(config_lib.DEFAULT_SCHEMA, os.path.join(volume, "schema.pbtxt"))
    model_lib.build_base("mobilenet_v3_small", 32, "none").save_weights(
        os.path.join(volume, "backbone.h5"))
    tf.keras.backend.clear_session()


def _compile(tmp, name, *flags, **overrides):
    """`finetune compile` of data, workspace, schema and weights on the volume; returns the
    package path and what the command printed."""
    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump(dict(TRAINING, **overrides)))
    parser = kubeflow_cli_parser()
    args = parser.parse_args([
        "compile", "--output", str(tmp / f"{name}.json"), "--pipeline-root", PIPELINE_ROOT,
        "--data", f"{MOUNT}/images", "--workspace", f"{MOUNT}/workspace",
        "--volume", f"{CLAIM}:{MOUNT}", "--config", str(config), "--image", IMAGE,
        "--gpu-count", "0", *flags])
    assert args.func(args) == 0
    return str(tmp / f"{name}.yaml")


def kubeflow_cli_parser():
    import argparse

    top = argparse.ArgumentParser(prog="finetune")
    kubeflow_cli.add_commands(top.add_subparsers(dest="command", required=True))
    return top


def _submit(api, package):
    """`finetune submit` as the user, to the multi-user API server; returns the run."""
    args = kubeflow_cli_parser().parse_args([
        "submit", "--host", api.url, "--package", package, "--namespace", NAMESPACE,
        "--user-id", USER])
    assert args.func(args) == 0
    return api.runs[f"run-{len(api.runs)}"]


def _run_submitted(backend, api, run, tmp, **kwargs):
    """What the backend does with a created run: the stored pipeline version, in the
    experiment's namespace, with the run's pipeline root."""
    package = tmp / f"{run['run_id']}.yaml"
    package.write_text(api.versions[run["pipeline_version_reference"]["pipeline_version_id"]])
    return backend.run(str(package), pipeline_root=run["runtime_config"]["pipeline_root"],
                       namespace=run["namespace"], **kwargs)


def _example_count(backend, examples):
    files = glob.glob(os.path.join(backend.read(examples.uri), "Split-*", "*.gz"))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def _prop(artifact, key):
    return artifact.custom_properties[key].string_value


def _patched(source, target, change):
    """The package with `change(spec_dict, platform_dict)` applied."""
    with open(source, encoding="utf-8") as f:
        spec, *platform = list(yaml.safe_load_all(f))
    change(spec, platform)
    with open(target, "w", encoding="utf-8") as f:
        yaml.safe_dump_all([spec] + platform, f)
    return str(target)


def _cache_everything(spec, _):
    for task in spec["root"]["dag"]["tasks"].values():
        task["cachingOptions"] = {"enableCache": True}


@pytest.fixture(scope="module")
def api():
    server = FakeKfpApi(multi_user=True, users={USER: {NAMESPACE}}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def open_source(api, tmp_path_factory):
    """Two submitted runs on a 2.17 backend: the first, then one after images were added, the
    schema file on the volume changed and a Trainer setting changed (a new compile)."""
    tmp = tmp_path_factory.mktemp("open-source")
    backend = Backend(str(tmp / "backend"), release="2.17")
    volume = backend.volume(CLAIM, NAMESPACE)
    _fill(volume)
    first = _run_submitted(backend, api, _submit(api, _compile(tmp, "first")), tmp)
    extra = write_folder(str(tmp / "extra"), classes=CLASSES, per_class=20)
    for label in map(str, CLASSES):
        for path in sorted(glob.glob(os.path.join(extra, label, "*.png")))[15:]:
            shutil.copy(path, os.path.join(volume, "images", label, "new-" + os.path.basename(path)))
    schema = os.path.join(volume, "schema.pbtxt")
    with open(schema, encoding="utf-8") as f:
        text = f.read()
    with open(schema, "w", encoding="utf-8") as f:
        f.write(text.replace('  name: "path"\n',
                             '  name: "path"\n  annotation { tag: "relative-path" }\n'))
    second = _run_submitted(backend, api,
                            _submit(api, _compile(tmp, "second", phase1_epochs=3)), tmp)
    return backend, volume, first, second


def test_every_task_ran_and_published_a_model_that_serves(open_source):
    backend, volume, first, _ = open_source
    assert set(first) == TASKS
    assert {r.state for r in first.values()} == {"COMPLETE"}
    assert {r.node for r in first.values()} == {"cpu-1"}
    pushed = _prop(first["AtomicPusher"].outputs["pushed_model"], "pushed_destination")
    assert os.path.dirname(pushed) == f"{MOUNT}/workspace/serving/tiny"
    model = tf.saved_model.load(os.path.join(volume, os.path.relpath(pushed, MOUNT)))
    images = [open(p, "rb").read()
              for p in sorted(glob.glob(os.path.join(volume, "images", "*", "0*.png")))[:6]]
    rows = serving_requests.rest_predict(
        model, serving_requests.rest_body("serving_default", images))["predictions"]
    assert len(rows) == 6
    assert all(row["class_name"] in {str(c) for c in CLASSES} for row in rows)
    assert first["Evaluator"].outputs["blessing"].custom_properties["blessed"].double_value == 1


def test_every_task_has_the_launchers_executor_logs(open_source):
    """PUBLISH_LOGS (on by default since 2.5): an executor-logs output on every task, which
    TFX would fail to import; the launcher fills and records it."""
    backend, _, first, _ = open_source
    for name, run in first.items():
        (logs,) = run.executor_input.outputs.artifacts["executor-logs"].artifacts
        assert logs.type.schema_title == "system.Artifact"
        recorded = run.outputs["executor-logs"]
        assert recorded.uri.endswith("/executor-logs-0"), name
        [artifact_type] = backend.store.get_artifact_types_by_id([recorded.type_id])
        assert artifact_type.name == "system.Artifact"
        with open(backend.read(recorded.uri), encoding="utf-8") as f:
            assert "Executor tfx" in f.read(), name  # our entrypoint's log line


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


def test_a_scheduled_run_ingests_the_new_images_and_the_changed_schema(open_source):
    backend, _, first, second = open_source
    assert {n: r.state for n, r in second.items()} == {t: "COMPLETE" for t in TASKS}
    before = _example_count(backend, first["ImageExampleGen"].outputs["examples"])
    after = _example_count(backend, second["ImageExampleGen"].outputs["examples"])
    assert (before, after) == (45, 60)
    (schema,) = second["DataGate"].executor_input.inputs.artifacts["schema"].artifacts
    with open(os.path.join(backend.read(schema.uri), "schema.pbtxt"), encoding="utf-8") as f:
        assert 'tag: "relative-path"' in f.read()


def test_the_second_run_compares_with_the_first(open_source):
    _, _, first, second = open_source
    first_statistics = _prop(first["DataGate"].outputs["accepted_statistics"], "published_to")
    assert first_statistics.startswith(f"{MOUNT}/workspace/accepted_statistics/")
    assert _prop(second["DataGate"].outputs["accepted_statistics"],
                 "compared_with") == first_statistics
    first_version = _prop(first["AtomicPusher"].outputs["pushed_model"], "pushed_destination")
    blessing = second["Evaluator"].outputs["blessing"]
    assert _prop(blessing, "baseline_model_path") == first_version
    second_version = _prop(second["AtomicPusher"].outputs["pushed_model"],
                           "pushed_destination")
    assert int(os.path.basename(second_version)) > int(os.path.basename(first_version))


def test_outputs_were_uploaded_to_the_object_store(open_source):
    """The launcher uploads what the pod wrote at the local path of each output."""
    backend, _, first, _ = open_source
    model = first["Trainer"].outputs["model"]
    assert os.path.isfile(os.path.join(backend.read(model.uri), "Format-Serving",
                                       "saved_model.pb"))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small volume and its package, for runs that stop early."""
    tmp = tmp_path_factory.mktemp("small")
    return tmp, _compile(tmp, "small")


def _small_backend(tmp, name, **kwargs):
    backend = Backend(str(tmp / name), **kwargs)
    volume = backend.volume(CLAIM, NAMESPACE)
    write_folder(os.path.join(volume, "images"), classes=CLASSES, per_class=6)
    shutil.copy(config_lib.DEFAULT_SCHEMA, os.path.join(volume, "schema.pbtxt"))
    return backend, volume


@pytest.mark.parametrize("release, uuid_segment, output_file", [
    ("2.3", False, kfp_backend.LEGACY_OUTPUT_FILE),
    ("2.5", True, kfp_backend.LEGACY_OUTPUT_FILE),
    ("2.14", True, kfp_backend.LEGACY_OUTPUT_FILE),
    ("2.16", True, "task root"),
])
def test_each_launcher_layout(small, release, uuid_segment, output_file):
    """Output URIs without (<= 2.3) and with the uuid segment, the executor output file at
    /tmp/kfp_outputs (<= 2.14) or under the task root, executor-logs from 2.5: the ingestion
    and the statistics of its examples run on each."""
    tmp, package = small
    backend, _ = _small_backend(tmp, f"backend-{release}", release=release)
    run = backend.run(package, namespace=NAMESPACE, stop_after="StatisticsGen")
    assert {r.state for r in run.values()} == {"COMPLETE"}
    examples = run["ImageExampleGen"].outputs["examples"]
    task_root = examples.uri[:-len("/examples")]
    assert (task_root.split("/")[-1] != "ImageExampleGen") == uuid_segment
    written = run["ImageExampleGen"].executor_input.outputs.output_file
    assert written == (output_file if output_file != "task root" else
                       kfp_backend.local_path_for_uri(task_root) + "/output_metadata.json")
    assert ("executor-logs" in run["StatisticsGen"].outputs) == (release != "2.3")
    assert _example_count(backend, examples) == 18
    statistics = run["StatisticsGen"].outputs["statistics"]
    assert glob.glob(os.path.join(backend.read(statistics.uri), "Split-*", "FeatureStats.pb"))


def test_a_pod_without_the_volume_cannot_see_the_data(small):
    tmp, package = small
    backend, volume = _small_backend(tmp, "backend-unmounted")
    assert os.path.isdir(os.path.join(volume, "images"))
    unmounted = _patched(package, tmp / "unmounted.yaml", lambda spec, platform: platform.clear())
    with pytest.raises(TaskFailed) as failed:
        backend.run(unmounted, namespace=NAMESPACE, stop_after="ImageExampleGen")
    assert failed.value.task == "ImageExampleGen"
    assert f"{MOUNT}/images" in failed.value.output
    # A claim that does not exist in the run's namespace keeps the pod Pending.
    with pytest.raises(PodPending, match=f'persistentvolumeclaim "{CLAIM}" not found'):
        backend.run(package, namespace="team-b", stop_after="ImageExampleGen")


def test_the_cache_across_runs_with_and_without_published_logs(small):
    """`driver/cache.go`: the executor-logs output is in the cache key, so a run with
    PUBLISH_LOGS off and one with it on share no entry (a miss, not a failed reuse); runs with
    the same setting do; another namespace does not see the entries."""
    tmp, package = small
    cached = _patched(package, tmp / "cached.yaml", _cache_everything)
    backend, _ = _small_backend(tmp, "backend-cache")
    backend.publish_logs = False
    off = backend.run(cached, namespace=NAMESPACE, stop_after="ImageExampleGen")
    backend.publish_logs = True
    on = backend.run(cached, namespace=NAMESPACE, stop_after="ImageExampleGen")
    again = backend.run(cached, namespace=NAMESPACE, stop_after="ImageExampleGen")
    assert [r["ImageExampleGen"].state for r in (off, on, again)] == [
        "COMPLETE", "COMPLETE", "CACHED"]
    assert again["ImageExampleGen"].outputs["examples"].id == \
        on["ImageExampleGen"].outputs["examples"].id
    backend.volume(CLAIM, "team-b")
    shutil.copytree(os.path.join(backend.volume(CLAIM, NAMESPACE), "images"),
                    os.path.join(backend.volume(CLAIM, "team-b"), "images"))
    other = backend.run(cached, namespace="team-b", stop_after="ImageExampleGen")
    assert other["ImageExampleGen"].state == "COMPLETE"


def test_a_cached_example_gen_misses_new_images_which_is_why_it_is_not_cached(small):
    """The case our spec fixes, reproduced: TFX compiles every task cacheable, and the backend
    keys the cache on the executor input, which is the same on every scheduled run."""
    tmp, package = small
    stock = _patched(package, tmp / "stock-cache.yaml", _cache_everything)
    backend, volume = _small_backend(tmp, "backend-stale")
    first = backend.run(stock, namespace=NAMESPACE, stop_after="ImageExampleGen")
    for label in map(str, CLASSES):
        shutil.copy(os.path.join(volume, "images", label, "000.png"),
                    os.path.join(volume, "images", label, "copy.png"))
    stale = backend.run(stock, namespace=NAMESPACE, stop_after="ImageExampleGen")
    assert stale["ImageExampleGen"].state == "CACHED"
    assert _example_count(backend, stale["ImageExampleGen"].outputs["examples"]) == 18
    fresh = backend.run(package, namespace=NAMESPACE, stop_after="ImageExampleGen")
    assert fresh["ImageExampleGen"].state == "COMPLETE"
    assert _example_count(backend, fresh["ImageExampleGen"].outputs["examples"]) == 21
    assert first["ImageExampleGen"].state == "COMPLETE"


def test_the_trainer_reaches_tainted_gpu_nodes_only_with_its_toleration(small):
    tmp, _ = small
    gpu = _compile(tmp, "gpu", "--gpu-count", "1",
                   "--gpu-node-selector", "nvidia.com/gpu.product=Tesla-T4")
    backend, _ = _small_backend(tmp, "backend-placement")
    assert backend.place(gpu, "Trainer").name == "gpu-1"
    assert backend.place(gpu, "Transform").name == "cpu-1"

    def drop(key):
        def change(spec, platform):
            label = spec["components"]["Trainer"]["executorLabel"]
            del platform[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"][label][key]
        return change

    untolerated = _patched(gpu, tmp / "untolerated.yaml", drop("tolerations"))
    with pytest.raises(PodPending, match="gpu-1: untolerated taint nvidia.com/gpu=present"):
        backend.place(untolerated, "Trainer")
    other_gpus = _compile(tmp, "a100", "--gpu-count", "1",
                          "--gpu-node-selector", "nvidia.com/gpu.product=A100")
    with pytest.raises(PodPending, match="node selector nvidia.com/gpu.product=A100 not "
                                         "matched"):
        backend.place(other_gpus, "Trainer")
    cpu_only = Backend(str(tmp / "cpu-only"), nodes=kfp_backend.DEFAULT_NODES[:1])
    cpu_only.volume(CLAIM, NAMESPACE)
    with pytest.raises(PodPending, match="cpu-1: .*insufficient nvidia.com/gpu"):
        cpu_only.place(gpu, "Trainer")


def test_a_trainer_without_egress_or_without_its_gpu_stops_with_a_message(small):
    """On the GPU node the Trainer that sees no GPU stops (this machine has none); on a CPU
    node the Trainer told to download ImageNet weights fails for want of egress, after the
    tasks before it came from the cache."""
    tmp, _ = small
    backend, _ = _small_backend(tmp, "backend-trainer")
    gpu = _patched(_compile(tmp, "trainer-gpu", "--gpu-count", "1"), tmp / "trainer-gpu-c.yaml",
                   _cache_everything)
    with pytest.raises(TaskFailed) as failed:
        backend.run(gpu, namespace=NAMESPACE)
    assert failed.value.task == "Trainer"
    assert "MissingGpuError: the Trainer asked for 1 GPU(s) and TensorFlow sees 0" in \
        failed.value.output
    download = _patched(_compile(tmp, "trainer-download", "--weights-source", "download",
                                 weights="imagenet"), tmp / "trainer-download-c.yaml",
                        _cache_everything)
    with pytest.raises(TaskFailed) as failed:
        backend.run(download, namespace=NAMESPACE)
    assert failed.value.task == "Trainer"
    assert "could not get ImageNet weights" in failed.value.output


@pytest.mark.parametrize("release, capabilities", [("2.14", "full"), ("2.17", "none")])
def test_a_pod_sees_only_its_image_and_mounts_and_has_no_network(tmp_path, release,
                                                                capabilities):
    backend = Backend(str(tmp_path / "backend"), release=release)
    volume = backend.volume(CLAIM)
    (tmp_path / "host-only").write_text("x")
    probe = ("import os, socket\n"
             "print('host', os.path.exists(%r))\n"
             "print('volume', os.listdir('/mnt/v'))\n"
             "caps = open('/proc/self/status').read().split('CapEff:')[1].split()[0]\n"
             "print('caps', 'none' if int(caps, 16) == 0 else 'full')\n"
             "try:\n    socket.create_connection(('pypi.org', 443), timeout=5)\n"
             "    print('net yes')\n"
             "except OSError:\n    print('net no')\n") % str(tmp_path / "host-only")
    open(os.path.join(volume, "data.txt"), "w", encoding="utf-8").close()
    done = backend.run_in_pod(str(tmp_path / "pod"), ["python", "-c", probe],
                              [(volume, "/mnt/v", False)])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:4] == [
        "host False", "volume ['data.txt']", f"caps {capabilities}", "net no"]


@pytest.mark.parametrize("tasks, failing, message", [
    # TensorFlow cannot write the first task's outputs to MinIO.
    (None, "ImageExampleGen", "File system scheme 'minio' not implemented"),
    # An input artifact with an empty instance_schema (kubeflow_v2_entrypoint_utils.py:259).
    ({"StatisticsGen"}, "StatisticsGen", "'NoneType' object has no attribute 'get'"),
])
def test_tfx_own_entrypoint_fails_on_the_open_source_backend(small, tasks, failing, message):
    """What happened before our entrypoint, reproduced: TFX's stock command fails there."""
    tmp, package = small

    def stock_command(spec, _):
        components = spec["components"]
        for task, task_spec in spec["root"]["dag"]["tasks"].items():
            if tasks is None or task in tasks:
                label = components[task_spec["componentRef"]["name"]]["executorLabel"]
                spec["deploymentSpec"]["executors"][label]["container"]["command"] = \
                    STOCK_COMMAND

    stock = _patched(package, tmp / f"stock-{failing}.yaml", stock_command)
    backend, _ = _small_backend(tmp, f"backend-stock-{failing}", release="2.3")
    with pytest.raises(TaskFailed) as failed:
        backend.run(stock, namespace=NAMESPACE, stop_after=failing)
    assert failed.value.task == failing
    assert message in failed.value.output


def _add_resolver(spec, _):
    """A resolver executor, as TFX compiles a Resolver node (LatestBlessedModelStrategy)."""
    spec["deploymentSpec"]["executors"]["resolver-executor"] = {
        "resolver": {"outputArtifactQueries": {}}}
    spec["components"][spec["root"]["dag"]["tasks"]["Evaluator"]["componentRef"]["name"]][
        "executorLabel"] = "resolver-executor"


def _as_schema_2_0(spec, _):
    """A parameter as pipeline spec 2.0 writes it, TFX's default."""
    value = spec["root"]["dag"]["tasks"]["ImageExampleGen"]["inputs"]["parameters"][
        "input_base"]["runtimeValue"]
    value["constantValue"] = {"stringValue": value.pop("constant")}


def _unknown_platform_field(spec, platform):
    label = spec["components"]["Trainer"]["executorLabel"]
    platform[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"][label][
        "tolerations"][0]["tolerates"] = "all"


@pytest.mark.parametrize("change, message", [
    (_add_resolver, "task Evaluator: resolver executors not implemented"),
    (_as_schema_2_0, "input_base is runtime_value/constant_value: not implemented"),
    (_unknown_platform_field, "failed to unmarshal kubernetes config: unknown field"),
])
def test_the_emulator_refuses_what_the_backend_refuses(small, change, message):
    """Unknown fields of an executor's Kubernetes config fail the run's compile from 2.14."""
    tmp, _ = small
    package = _compile(tmp, "refused", "--gpu-count", "1")
    refused = _patched(package, tmp / f"refused-{change.__name__}.yaml", change)
    with pytest.raises(RefusedSpec, match=message):
        Backend(str(tmp / f"backend-{change.__name__}")).run(refused, namespace=NAMESPACE)


def test_a_vertex_ai_run_of_the_same_spec(small):
    tmp, _ = small
    host_data = tmp / "vertex-data"
    write_folder(str(host_data / "images"), classes=CLASSES, per_class=15)
    shutil.copy(config_lib.DEFAULT_SCHEMA, host_data / "schema.pbtxt")
    parser = kubeflow_cli_parser()
    config = tmp / "vertex.yaml"
    config.write_text(yaml.safe_dump(dict(TRAINING, weights="none",
                                          schema_path=str(host_data / "schema.pbtxt"))))
    args = parser.parse_args([
        "compile", "--output", str(tmp / "vertex.json"), "--pipeline-root", "gs://b/root",
        "--data", str(host_data / "images"), "--workspace", str(host_data / "workspace"),
        "--volume", f"data:{host_data}", "--config", str(config), "--gpu-count", "0"])
    assert args.func(args) == 0
    backend = Backend(str(tmp / "backend-vertex"), form="vertex", vertex_paths=[str(host_data)])
    run = backend.run(str(tmp / "vertex.json"))
    assert {r.state for r in run.values()} == {"COMPLETE"}
    (examples,) = run["StatisticsGen"].executor_input.inputs.artifacts["examples"].artifacts
    assert examples.name.startswith("projects/") and "tfx.Examples" in \
        examples.type.instance_schema
    assert "executor-logs" not in run["StatisticsGen"].outputs
    path = _prop(run["AtomicPusher"].outputs["pushed_model"], "pushed_destination")
    assert os.path.dirname(path) == str(host_data / "workspace" / "serving" / "tiny")
    assert "serving_default" in tf.saved_model.load(path).signatures

