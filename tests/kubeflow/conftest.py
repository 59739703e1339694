"""The Kubeflow spec compiled once per session through the `finetune compile` handler."""
import argparse
import contextlib
import io
import os
import types

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from imagefolders import write_folder
from tfx_finetune.kubeflow import cli as kubeflow_cli
from tfx_finetune.kubeflow import compile as compile_lib
from tfx_finetune.kubeflow import platform
from tfx_finetune.pipeline import config as config_lib

# What the session's compile was asked for; tests compare the spec against these.
SETTINGS = types.SimpleNamespace(
    cpu_image="registry.example.com/ml/tfx-finetune:1.0",
    gpu_image="registry.example.com/ml/tfx-finetune-gpu:1.0",
    pipeline_root="gs://bucket/tfx-root",
    workspace="/mnt/finetune",
    volume="finetune-data:/mnt",
    model_name="digits",
    tflite="int8",
    beam_arg="--direct_num_workers=2",
    gpu_type="nvidia.com/gpu", gpu_count=2, trainer_cpu=6, trainer_memory=24,
    gpu_node_selector="nvidia.com/gpu.product=Tesla-T4")


def make_parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="finetune")
    kubeflow_cli.add_commands(top.add_subparsers(dest="command", required=True))
    return top


@pytest.fixture
def finetune_parser():
    """A `finetune` parser holding only the Kubeflow subcommands."""
    return make_parser()


@pytest.fixture(scope="session")
def compiled(tmp_path_factory):
    """Compiles through the `finetune compile` handler, then parses the output strictly.

    Returns a dict: path, text, job (PipelineJob), spec (PipelineSpec), deployment
    (PipelineDeploymentConfig), data (the image folder the spec reads), settings (SETTINGS).
    """
    s = SETTINGS
    tmp = tmp_path_factory.mktemp("compile")
    data = write_folder(tmp / "images", classes=(0, 1), per_class=6)
    config_file = tmp / "config.yaml"
    # tflite: its TFLiteCheck and TFLitePusher are in the DAG too.
    config_file.write_text(f"model_name: {s.model_name}\nimage_size: 32\nweights: none\n"
                           f"tflite: {s.tflite}\n")
    output = str(tmp / "out" / "pipeline.json")
    args = make_parser().parse_args([
        "compile", "--output", output, "--pipeline-root", s.pipeline_root, "--data", data,
        "--workspace", s.workspace, "--config", str(config_file),
        "--volume", s.volume, "--volume", f"test-images:{tmp}",
        "--image", s.cpu_image, "--gpu-image", s.gpu_image,
        "--gpu-type", s.gpu_type, "--gpu-count", str(s.gpu_count),
        "--trainer-cpu", str(s.trainer_cpu), "--trainer-memory", str(s.trainer_memory),
        "--gpu-node-selector", s.gpu_node_selector, f"--beam-arg={s.beam_arg}"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert args.func(args) == 0
    return dict(parse(output), data=data, settings=s, printed=printed.getvalue())


@pytest.fixture(scope="session")
def default_compiled(compiled, tmp_path_factory):
    """The same image folder compiled with every default (images, limits, Beam args)."""
    output = str(tmp_path_factory.mktemp("default") / "pipeline.json")
    cluster = compile_lib.Cluster(volumes=(
        platform.Volume.parse(SETTINGS.volume),
        platform.Volume("test-images", os.path.dirname(compiled["data"]))))
    config = compile_lib.cluster_config(
        config_lib.PipelineConfig(workspace=SETTINGS.workspace, image_size=32, weights="none"),
        data=compiled["data"], cluster=cluster)
    compile_lib.compile_pipeline(config, output, SETTINGS.pipeline_root, cluster=cluster)
    return dict(parse(output), data=compiled["data"])


def parse(output):
    """Parses a compiled PipelineJob JSON strictly: unknown fields fail."""
    with open(output, encoding="utf-8") as f:
        text = f.read()
    job = pipeline_spec_pb2.PipelineJob()
    json_format.Parse(text, job, ignore_unknown_fields=False)
    # pipelineSpec and its deploymentSpec are Structs in the outer messages: parse each strictly.
    spec = pipeline_spec_pb2.PipelineSpec()
    json_format.ParseDict(json_format.MessageToDict(job.pipeline_spec), spec,
                          ignore_unknown_fields=False)
    deployment = pipeline_spec_pb2.PipelineDeploymentConfig()
    json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec), deployment,
                          ignore_unknown_fields=False)
    with open(os.path.splitext(output)[0] + ".yaml", encoding="utf-8") as f:
        package = list(yaml.safe_load_all(f))
    return {"path": output, "text": text, "job": job, "spec": spec, "deployment": deployment,
            "package": package}
