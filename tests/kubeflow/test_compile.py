"""Kubeflow compile: the spec parses strictly, holds the whole local DAG, the Trainer's GPU
request and images, and refers to executor code that is importable from the image."""
import ast
import dataclasses
import fnmatch
import importlib
import json
import os
import re

import pytest
import yaml

from tfx_finetune.kubeflow import compile as compile_lib
from tfx_finetune.kubeflow import platform, resources
from tfx_finetune.pipeline import config as config_lib
from tfx_finetune.pipeline.pipeline import PREPROCESSING_FN, RUN_FN, create_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIPELINE_ROOT = "gs://bucket/tfx-root"
WORKSPACE = "/mnt/finetune"


def example_gen_task(compiled):
    """The file-based ExampleGen: the one task TFX gives a driver (pre-cache-check) hook."""
    (task,) = [t for t in compiled["spec"].root.dag.tasks
               if t in compiled["spec"].components
               and container(compiled, t).lifecycle.HasField("pre_cache_check")]
    return task


def container(compiled, task):
    label = compiled["spec"].components[task].executor_label
    return compiled["deployment"].executors[label].container


def test_every_node_of_the_local_dag_is_a_task(compiled):
    local = create_pipeline(config_lib.PipelineConfig(tflite=compiled["settings"].tflite))
    tasks = set(compiled["spec"].root.dag.tasks)
    assert {"TFLiteCheck", "TFLitePusher"} <= tasks
    for node in local.components:
        # A Resolver compiles into one resolver task per output channel: "<id>-<...>-resolver".
        assert node.id in tasks or any(t.startswith(node.id + "-") for t in tasks), node.id
    assert (compiled["job"].runtime_config.gcs_output_directory
            == compiled["settings"].pipeline_root)


def test_trainer_requests_gpus_and_limits_on_the_gpu_image(compiled):
    s = compiled["settings"]
    trainer = container(compiled, "Trainer")
    assert trainer.image == s.gpu_image
    assert trainer.resources.accelerator.type == s.gpu_type
    assert trainer.resources.accelerator.count == s.gpu_count
    assert trainer.resources.cpu_limit == s.trainer_cpu
    assert trainer.resources.memory_limit == s.trainer_memory


def test_other_components_run_on_the_cpu_image_with_default_limits(compiled):
    defaults = resources.DEFAULT_COMPONENT_RESOURCES
    executors = [t for t in compiled["spec"].root.dag.tasks
                 if compiled["deployment"].executors[compiled["spec"].components[t].executor_label]
                 .WhichOneof("spec") == "container"]
    assert len(executors) >= 8
    for task in executors:
        if task == "Trainer":
            continue
        spec = container(compiled, task)
        assert spec.image == compiled["settings"].cpu_image, task
        assert not spec.resources.accelerator.type, task
        if task == example_gen_task(compiled):
            # TFX drops platform configs of file-based ExampleGens (tensorflow/tfx#6146).
            assert not spec.HasField("resources")
        else:
            assert spec.resources.cpu_limit == defaults.cpu, task
            assert spec.resources.memory_limit == defaults.memory_gb, task


def _parameter(compiled, task, name):
    value = compiled["spec"].root.dag.tasks[task].inputs.parameters[name].runtime_value
    return value.constant.string_value


def test_executor_code_is_referenced_by_importable_dotted_paths(compiled):
    assert _parameter(compiled, "Transform", "preprocessing_fn") == PREPROCESSING_FN
    assert _parameter(compiled, "Trainer", "run_fn") == RUN_FN
    for dotted in (PREPROCESSING_FN, RUN_FN):
        module, name = dotted.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name))
        # The image installs the repository's folders as `tfx_finetune.<folder>`.
        package, *path = module.split(".")
        assert package == "tfx_finetune"
        assert os.path.isfile(os.path.join(REPO, *path) + ".py")
    for task in compiled["spec"].root.dag.tasks:
        args = list(container(compiled, task).args) if task in compiled["spec"].components else []
        if "--executor_class_path" in args:
            module, name = args[args.index("--executor_class_path") + 1].rsplit(".", 1)
            assert isinstance(getattr(importlib.import_module(module), name), type), task


def test_no_local_wheel_or_repository_path_in_the_spec(compiled):
    text = compiled["text"]
    for task in ("Transform", "Trainer"):
        for name in ("module_file", "module_path"):
            assert not _parameter(compiled, task, name), (task, name)
    assert ".whl" not in text
    assert "_wheels" not in text
    assert REPO not in text
    assert _parameter(compiled, "ImportSchemaGen", "schema_file") == compile_lib.IMAGE_SCHEMA_PATH


def test_the_image_holds_the_schema_where_the_spec_reads_it():
    relative = os.path.relpath(compile_lib.IMAGE_SCHEMA_PATH, compile_lib.IMAGE_PROJECT_DIR)
    assert os.path.isfile(os.path.join(REPO, relative))
    with open(os.path.join(REPO, "kubeflow", "Dockerfile"), encoding="utf-8") as f:
        dockerfile = f.read()
    assert re.search(rf"^WORKDIR {compile_lib.IMAGE_PROJECT_DIR}$", dockerfile, re.M)
    assert re.search(r"^COPY .*\bschemas/? .*", dockerfile, re.M)


def _sent_to_the_build(path, ignore_lines):
    """Whether the build context holds the top-level `path`: Docker's .dockerignore rules, the
    last matching line deciding, a `!` line re-including (docs.docker.com, "Build context",
    .dockerignore files)."""
    sent = True
    for line in ignore_lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern = line.lstrip("!").rstrip("/")
        if fnmatch.fnmatchcase(path, pattern):
            sent = line.startswith("!")
    return sent


def test_the_build_context_holds_everything_the_image_copies_and_installs():
    """Every COPY source of the Dockerfile passes its .dockerignore (else the build stops on
    a missing file), and the folders setup.py installs are all copied."""
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        (folders,) = [ast.literal_eval(node.value) for node in ast.parse(f.read()).body
                      if isinstance(node, ast.Assign) and node.targets[0].id == "FOLDERS"]
    with open(os.path.join(REPO, "kubeflow", "Dockerfile"), encoding="utf-8") as f:
        sources = [s.rstrip("/") for line in f if line.startswith("COPY ")
                   for s in line.split()[1:-1] if not s.startswith("--")]
    with open(os.path.join(REPO, "kubeflow", "Dockerfile.dockerignore"), encoding="utf-8") as f:
        ignore_lines = f.read().splitlines()
    assert set(folders) <= set(sources), sources
    refused = [s for s in sources if not _sent_to_the_build(s, ignore_lines)]
    assert not refused, f"kubeflow/Dockerfile.dockerignore keeps {refused} out of the build"
    assert not _sent_to_the_build("workspace", ignore_lines)


def test_beam_args_reach_the_data_components(compiled):
    beam_arg = compiled["settings"].beam_arg
    example_gen_id = example_gen_task(compiled)
    for task in ("StatisticsGen", "Transform", "Evaluator", example_gen_id):
        assert beam_arg in container(compiled, task).args, task
    example_gen = container(compiled, example_gen_id)
    assert beam_arg in example_gen.lifecycle.pre_cache_check.args


def test_paths_the_pods_read_and_write(compiled):
    assert _parameter(compiled, example_gen_task(compiled), "input_base") == compiled["data"]
    push = [t for t in compiled["spec"].root.dag.tasks if "push_destination" in
            compiled["spec"].root.dag.tasks[t].inputs.parameters]
    assert len(push) == 1
    destination = json.loads(_parameter(compiled, push[0], "push_destination"))
    s = compiled["settings"]
    assert destination["filesystem"]["base_directory"] == f"{s.workspace}/serving/{s.model_name}"
    assert (_parameter(compiled, "TFLitePusher", "base_directory")
            == f"{s.workspace}/tflite/{s.model_name}")


def test_by_default_no_beam_args_so_the_pods_use_beams_directrunner(default_compiled):
    for task in ("StatisticsGen", "Transform", "Evaluator", example_gen_task(default_compiled)):
        # Nothing follows TFX's own arguments (the inputs spec is the last).
        assert container(default_compiled, task).args[-2] == "--json_serialized_inputs_spec_args"


@pytest.mark.parametrize("kwargs, message", [
    ({"data": "images"}, "--data 'images' is a local path the pods do not have"),
    ({"data": "/home/me/images"}, "--data '/home/me/images' is a local path the pods do not"),
    ({"data": "minio://mlpipeline/images"}, "--data .*cannot open minio://"),
    ({"workspace": "s3://bucket/finetune"}, "--workspace .*cannot open s3://"),
    ({"weights": "/home/me/base.h5"}, "weights '/home/me/base.h5' is a local path"),
    ({"schema_path": "/home/me/schema.pbtxt"}, "schema_path '/home/me/schema.pbtxt' is a"),
    ({"volumes": ["pvc:mnt"]}, "--volume 'pvc:mnt': give CLAIM:/mount/path"),
    ({"volumes": ["Bad_Claim:/mnt"]}, "--volume 'Bad_Claim:/mnt': give CLAIM"),
    ({"volumes": ["a:/mnt", "b:/mnt"]}, "the mount path '/mnt' is given twice"),
    ({"beam_args": ["--runner=DataflowRunner"]}, "a Beam runner whose workers run outside"),
    ({"beam_args": ["--runner", "FlinkRunner"]}, "--runner=FlinkRunner: a Beam runner"),
    ({"pipeline_root": "/tmp/root"}, "not a bucket URI"),
    ({"pipeline_root": "hdfs://root"}, "not a bucket URI"),
    ({"trainer": resources.Resources(cpu=4, memory_gb=16, gpu_count=1)}, "GPU type"),
    ({"trainer": resources.Resources(cpu=0, memory_gb=16)}, "greater than 0"),
    ({"tuner_trials": 4}, "tuner_trials: 4: the Tuner is not compiled for Kubeflow"),
])
def test_refuses_what_cannot_run_on_a_cluster(kwargs, message):
    fields = {k: kwargs[k] for k in ("workspace", "weights", "schema_path", "tuner_trials")
              if k in kwargs}
    with pytest.raises(resources.CompileError, match=message):
        config = compile_lib.cluster_config(
            config_lib.PipelineConfig(**dict({"workspace": WORKSPACE}, **fields)),
            data=kwargs.get("data", "/mnt/images"), cluster=compile_lib.Cluster(volumes=tuple(
                platform.Volume.parse(v) for v in kwargs.get("volumes", ["data:/mnt"]))))
        compile_lib.build_pipeline(
            config, kwargs.get("pipeline_root", PIPELINE_ROOT), kwargs.get("beam_args", ()),
            trainer_resources=kwargs.get("trainer", resources.DEFAULT_TRAINER_RESOURCES))


@pytest.mark.parametrize("path", ["/mnt/finetune/base.h5", "gs://bucket/base.h5",
                                  f"{compile_lib.IMAGE_PROJECT_DIR}/weights/base.h5"])
def test_weights_the_pods_can_read_are_accepted(path):
    config = compile_lib.cluster_config(
        config_lib.PipelineConfig(workspace=WORKSPACE, weights=path), data="gs://b/images",
        cluster=compile_lib.Cluster(volumes=(platform.Volume("finetune", "/mnt/finetune"),)))
    assert config.backbone_weights == path


def test_cli_reports_errors_without_a_traceback(finetune_parser, tmp_path, capsys):
    args = finetune_parser.parse_args(["compile", "--output", str(tmp_path / "p.json"),
                                "--pipeline-root", "relative/root", "--data", "/mnt/images",
                                "--workspace", WORKSPACE, "--volume", "data:/mnt"])
    assert args.func(args) == 2
    assert "--pipeline-root 'relative/root' is not a bucket URI" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_an_explicit_schema_path_is_kept():
    config = dataclasses.replace(config_lib.PipelineConfig(workspace=WORKSPACE),
                                 schema_path="gs://bucket/schema.pbtxt")
    kept = compile_lib.cluster_config(config, data="/mnt/images", cluster=compile_lib.Cluster(
        volumes=(platform.Volume("data", "/mnt"),)))
    assert kept.schema_path == "gs://bucket/schema.pbtxt"


def test_every_task_runs_our_entrypoint_with_its_input_definitions(compiled):
    """Schema 2.1 (parameters as `constant`, which the open-source driver requires) and the
    input definitions from which the entrypoint restores artifact types."""
    assert compiled["spec"].schema_version == "2.1.0"
    for task in compiled["spec"].root.dag.tasks:
        spec = container(compiled, task)
        assert list(spec.command) == compile_lib.ENTRYPOINT_COMMAND, task
        args = list(spec.args)
        inputs = json.loads(args[args.index("--json_serialized_inputs_spec_args") + 1])
        declared = compiled["spec"].components[task].input_definitions
        assert set(inputs.get("artifacts", {})) == set(declared.artifacts), task


def test_only_container_executors_and_the_workspace_readers_are_never_cached(compiled):
    executors = compiled["deployment"].executors
    assert {e.WhichOneof("spec") for e in executors.values()} == {"container"}
    uncached = {name for name, task in compiled["spec"].root.dag.tasks.items()
                if not task.caching_options.enable_cache}
    assert uncached == set(compile_lib.UNCACHED_TASKS)


def test_bucket_uris_reach_the_spec_unchanged():
    config = compile_lib.cluster_config(
        config_lib.PipelineConfig(workspace="gs://bucket/finetune"), data="gs://bucket/images")
    pipeline = compile_lib.build_pipeline(config, PIPELINE_ROOT)
    input_bases = [node.exec_properties["input_base"] for node in pipeline.components
                   if "input_base" in node.exec_properties]
    assert input_bases == ["gs://bucket/images"]


def _platform(compiled):
    """The package's second YAML document, the Kubernetes platform spec, per executor."""
    spec, *rest = compiled["package"]
    assert spec["pipelineInfo"] == json.loads(compiled["text"])["pipelineSpec"]["pipelineInfo"]
    assert len(rest) == 1
    return rest[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_the_package_mounts_every_volume_in_every_pod(compiled):
    executors = _platform(compiled)
    assert set(executors) == set(compiled["deployment"].executors)
    tmp = os.path.dirname(compiled["data"])
    for label, config in executors.items():
        assert config["pvcMount"] == [{"constant": "finetune-data", "mountPath": "/mnt"},
                                      {"constant": "test-images", "mountPath": tmp}], label
    spec = compiled["package"][0]
    assert spec["defaultPipelineRoot"] == compiled["settings"].pipeline_root


def test_only_the_trainer_tolerates_the_gpu_taint_and_selects_gpu_nodes(compiled):
    executors = _platform(compiled)
    trainer = compiled["spec"].components["Trainer"].executor_label
    assert executors[trainer]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert executors[trainer]["nodeSelector"] == {"labels": {"nvidia.com/gpu.product": "Tesla-T4"}}
    for label, config in executors.items():
        if label != trainer:
            assert set(config) == {"pvcMount"}, label


def test_a_cpu_trainer_gets_no_gpu_scheduling_and_no_volume_means_no_platform_spec(tmp_path):
    config = compile_lib.cluster_config(
        config_lib.PipelineConfig(workspace="gs://b/ws", weights="none"), data="gs://b/images")
    output = str(tmp_path / "p.json")
    compiled = compile_lib.compile_pipeline(
        config, output, PIPELINE_ROOT, image="registry/x:1",
        trainer_resources=resources.Resources(cpu=4, memory_gb=16))
    with open(compiled.package_path, encoding="utf-8") as f:
        assert len(list(yaml.safe_load_all(f))) == 1
    custom = json.loads(compiled.job["pipelineSpec"]["root"]["dag"]["tasks"]["Trainer"][
        "inputs"]["parameters"]["custom_config"]["runtimeValue"]["constant"])
    assert custom["required_gpus"] == 0


def test_the_trainer_is_told_how_many_gpus_it_asked_for(compiled):
    custom = json.loads(_parameter(compiled, "Trainer", "custom_config"))
    assert custom["required_gpus"] == compiled["settings"].gpu_count


@pytest.mark.parametrize("text, expected", [
    ("nvidia.com/gpu:NoSchedule", {"key": "nvidia.com/gpu", "operator": "Exists",
                                   "effect": "NoSchedule"}),
    ("gpu=true:NoExecute", {"key": "gpu", "operator": "Equal", "value": "true",
                            "effect": "NoExecute"}),
])
def test_gpu_tolerations_in_kubectl_taint_syntax(text, expected):
    assert platform.Toleration.parse(text).to_dict() == expected


@pytest.mark.parametrize("text", ["nvidia.com/gpu", "gpu:Sometimes", "bad key:NoSchedule"])
def test_malformed_tolerations_are_refused(text):
    with pytest.raises(resources.CompileError, match="KEY\\[=VALUE\\]:EFFECT"):
        platform.Toleration.parse(text)


def test_imagenet_weights_come_from_the_image_by_default_and_compile_says_so(
        finetune_parser, tmp_path, capsys):
    args = finetune_parser.parse_args([
        "compile", "--output", str(tmp_path / "p.json"), "--pipeline-root", PIPELINE_ROOT,
        "--data", "/mnt/images", "--workspace", WORKSPACE, "--volume", "data:/mnt",
        "--image", "registry/x:1"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    baked = f"{compile_lib.IMAGE_PROJECT_DIR}/weights/mobilenet_v3_small_1_imagenet_notop.h5"
    assert f"weights: {baked} (the image; ImageNet weights the image must bake: build it " \
           'with --build-arg PRETRAINED="mobilenet_v3_small:1"' in printed
    job = json.loads((tmp_path / "p.json").read_text())
    custom = json.loads(job["pipelineSpec"]["root"]["dag"]["tasks"]["Trainer"]["inputs"][
        "parameters"]["custom_config"]["runtimeValue"]["constant"])
    assert custom["weights"] == baked
    assert "data: /mnt/images (the volume at /mnt)" in printed
    assert "volume data at /mnt in every pod" in printed


def test_the_dockerfile_bakes_where_compile_points(tmp_path, monkeypatch):
    """`weights.bake` (run by the Dockerfile) writes the file `cluster_config` names."""
    from tfx_finetune.components import model as model_lib
    from tfx_finetune.kubeflow import weights

    with open(os.path.join(REPO, "kubeflow", "Dockerfile"), encoding="utf-8") as f:
        dockerfile = f.read()
    assert re.search(r'^RUN .*python -m tfx_finetune.kubeflow.weights "\$PRETRAINED"',
                     dockerfile, re.M)
    built = []
    real_build_base = model_lib.build_base

    def offline_build_base(backbone, image_size, weights_value, alpha):
        # No internet here: record the ImageNet request, build the same base untrained.
        built.append((backbone, weights_value, alpha))
        return real_build_base(backbone, 32, "none", alpha)

    monkeypatch.setattr(model_lib, "build_base", offline_build_base)
    (path,) = weights.bake("mobilenet_v2:0.35", str(tmp_path))
    assert built == [("mobilenet_v2", "imagenet", 0.35)]
    config = compile_lib.cluster_config(
        config_lib.PipelineConfig(workspace="gs://b/ws", backbone="mobilenet_v2", alpha=0.35),
        data="gs://b/images")
    assert os.path.basename(config.weights) == os.path.basename(path)
    assert os.path.dirname(config.weights) == weights.IMAGE_WEIGHTS_DIR
    # The baked file loads through the weights-file path the Trainer takes.
    assert model_lib.build_base("mobilenet_v2", 32, path, 0.35).count_params() > 0


@pytest.mark.parametrize("pretrained, message", [
    ("resnet:1", "unknown backbone 'resnet'"), ("mobilenet_v2:0.6", "widths 0.35, 0.5")])
def test_the_dockerfile_build_refuses_unknown_weights(pretrained, message):
    from tfx_finetune.kubeflow import weights

    with pytest.raises(ValueError, match=message):
        weights.parse_pretrained(pretrained)


def test_downloaded_imagenet_weights_are_kept_and_compile_warns_about_egress(tmp_path):
    cluster = compile_lib.Cluster(weights_source="download")
    config = compile_lib.cluster_config(config_lib.PipelineConfig(workspace="gs://b/ws"),
                                        data="gs://b/images", cluster=cluster)
    assert config.weights == "imagenet"
    compiled = compile_lib.compile_pipeline(config, str(tmp_path / "p.json"), PIPELINE_ROOT,
                                            image="registry/x@sha256:abc", cluster=cluster)
    (note,) = [n for n in compiled.notes if n.startswith("weights:")]
    assert "needs egress" in note
    assert not [n for n in compiled.notes if n.startswith("warning: image")]


@pytest.mark.parametrize("image, mutable", [
    ("tfx-finetune", True), ("registry:5000/ml/tfx-finetune:latest", True),
    ("registry:5000/ml/tfx-finetune", True), ("registry:5000/ml/tfx-finetune:1.2", False),
    ("registry/ml/tfx-finetune@sha256:0123", False)])
def test_images_without_a_fixed_tag_get_a_cache_warning(image, mutable):
    notes = compile_lib._image_notes([image])
    assert bool(notes) == mutable
    if mutable:
        assert "reuses the results of the old code" in notes[0]
