"""Compiles the one `create_pipeline` DAG into a Kubeflow Pipelines v2 job spec, Trainer on GPU."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Optional, Sequence

from tfx import v1 as tfx
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base.base_component import BaseComponent
from tfx.orchestration import pipeline as tfx_pipeline

from tfx_finetune.kubeflow.resources import (DEFAULT_BEAM_ARGS, DEFAULT_COMPONENT_RESOURCES, DEFAULT_IMAGE,
                                DEFAULT_TRAINER_RESOURCES, CompileError, Resources)
from tfx_finetune.components import backbones
from tfx_finetune.components.uri import is_uri
from tfx_finetune.pipeline import config as config_lib
from tfx_finetune.pipeline.pipeline import create_pipeline

# Where kubeflow/Dockerfile puts the project (WORKDIR) and so the curated schema.
IMAGE_PROJECT_DIR = "/pipeline"
IMAGE_SCHEMA_PATH = f"{IMAGE_PROJECT_DIR}/schemas/{os.path.basename(config_lib.DEFAULT_SCHEMA)}"
TRAINER_ID = "Trainer"
# Every task runs its TFX executor through our entrypoint (see kubeflow/entrypoint.py).
ENTRYPOINT_COMMAND = ["python", "-m", "tfx_finetune.kubeflow.entrypoint"]
# Artifacts (under the pipeline root) travel through the KFP launcher, which knows these.
PIPELINE_ROOT_SCHEMES = ("gs://", "s3://", "minio://")
# Data, workspace, weights and schema are opened by TensorFlow in the pod: TF 2.16 reads
# gs:// itself; it has no s3:// without tensorflow-io and no minio:// at all.
POD_READABLE_SCHEMES = ("gs://",)
# Tasks that must run on every Kubeflow run, whatever the KFP cache holds. The backend keys
# its cache on the executor input (kubeflow/pipelines `backend/src/v2/driver/cache.go`), which
# holds neither the folder's content (the ExampleGen's fingerprint driver runs only on Vertex
# AI) nor what the workspace serves and accepted since (read by the Evaluator and the
# DataGate at run time).
UNCACHED_TASKS = ("ImageExampleGen", "DataGate", "Evaluator")


def _require_pod_path(field: str, value: str, mounted: Sequence[str]) -> None:
    """Refuses a path a pod cannot open, naming the field."""
    if is_uri(value):
        if not value.startswith(POD_READABLE_SCHEMES):
            raise CompileError(
                f"{field} {value!r}: TensorFlow in the pods cannot open {value.split('://')[0]}"
                ":// (only the pipeline root may be on MinIO or S3, the KFP launcher moves its "
                "artifacts): copy it to gs://…, or mount the bucket in every pod and pass the "
                "mount path with --mounted")
        return
    inside = [IMAGE_PROJECT_DIR, *mounted]
    if not os.path.isabs(value) or not any(
            os.path.commonpath([os.path.abspath(value), m]) == m for m in inside):
        raise CompileError(
            f"{field} {value!r} is a local path the pods do not have: pass gs://…, a path "
            f"inside the image (under {IMAGE_PROJECT_DIR}), or a path under a volume mounted "
            "in every pod, declared with --mounted DIR")


def cluster_config(config: config_lib.PipelineConfig, data: Optional[str] = None,
                   mounted: Sequence[str] = ()) -> config_lib.PipelineConfig:
    """Returns `config` with the paths a pod needs, after checking every one.

    The project's curated schema is read from where the image holds it (`IMAGE_SCHEMA_PATH`);
    a schema path the user set explicitly is kept.

    Args:
      config: the run's configuration.
      data: the image folder as the pods see it (replaces `config.data_dir`).
      mounted: absolute directories mounted in every pod (e.g. a shared volume).

    Raises:
      CompileError: naming the field, when the data, workspace, weights file or schema is a
        local path outside the image and the mounted directories, or a URI TensorFlow cannot
        open in the pod.
    """
    replaced = {}
    if data:
        replaced["data_dir"] = data
    if config.schema_path == config_lib.DEFAULT_SCHEMA:
        replaced["schema_path"] = IMAGE_SCHEMA_PATH
    config = dataclasses.replace(config, **replaced)
    for bad in [m for m in mounted if not os.path.isabs(m)]:
        raise CompileError(f"--mounted {bad!r}: give the absolute path the pods mount it at")
    mounted = [os.path.abspath(m) for m in mounted]
    _require_pod_path("--data", config.data_dir, mounted)
    _require_pod_path("--workspace", config.workspace, mounted)
    _require_pod_path("schema_path", config.schema_path, mounted)
    if config.backbone_weights not in (backbones.IMAGENET_WEIGHTS, backbones.NO_WEIGHTS):
        _require_pod_path("weights", config.backbone_weights, mounted)
    return config


def build_pipeline(config: config_lib.PipelineConfig, pipeline_root: str,
                   beam_args: Sequence[str] = DEFAULT_BEAM_ARGS,
                   trainer_resources: Resources = DEFAULT_TRAINER_RESOURCES,
                   component_resources: Resources = DEFAULT_COMPONENT_RESOURCES,
                   ) -> tfx_pipeline.Pipeline:
    """The `create_pipeline` DAG with Kubeflow platform configs attached to its components.

    The Trainer gets `trainer_resources` (GPU request and limits); every other container
    component gets `component_resources`, except file-based ExampleGens, for which TFX ignores
    platform configs (tensorflow/tfx#6146) so none is set. The Resolver runs no container.

    Args:
      config: the run's configuration, with cluster paths (see `cluster_config`).
      pipeline_root: bucket URI under which the pods write artifacts.
      beam_args: Beam pipeline arguments of the data components.
      trainer_resources, component_resources: container limits.

    Raises:
      CompileError: when `pipeline_root` is not a URI or a limit is invalid.
    """
    if not pipeline_root.startswith(PIPELINE_ROOT_SCHEMES):
        raise CompileError(f"--pipeline-root {pipeline_root!r} is not a bucket URI: pass the "
                           "bucket the pods write artifacts to, e.g. minio://mlpipeline/tfx-root "
                           "(Kubeflow's default store), gs://bucket/tfx-root or s3://bucket/root")
    pipeline = create_pipeline(config, metadata_connection_config=None,
                               beam_pipeline_args=list(beam_args), pipeline_root=pipeline_root)
    trainer_spec = trainer_resources.to_proto()
    component_spec = component_resources.to_proto()
    trainers = [node for node in pipeline.components if node.id == TRAINER_ID]
    if len(trainers) != 1:
        raise CompileError(f"create_pipeline has {len(trainers)} nodes with id {TRAINER_ID!r}; "
                           "the Kubeflow compiler needs exactly one to place it on GPU nodes")
    for node in pipeline.components:
        if node.id == TRAINER_ID:
            node.with_platform_config(trainer_spec)
        elif isinstance(node, BaseComponent) and not isinstance(node, FileBasedExampleGen):
            node.with_platform_config(component_spec)
    return pipeline


def compile_pipeline(config: config_lib.PipelineConfig, output: str, pipeline_root: str,
                     image: str = DEFAULT_IMAGE, gpu_image: Optional[str] = None,
                     beam_args: Sequence[str] = DEFAULT_BEAM_ARGS,
                     trainer_resources: Resources = DEFAULT_TRAINER_RESOURCES,
                     component_resources: Resources = DEFAULT_COMPONENT_RESOURCES) -> Dict:
    """Writes the Kubeflow v2 PipelineJob JSON (its `pipelineSpec` is the KFP pipeline spec).

    Args:
      config: the run's configuration, with cluster paths (see `cluster_config`).
      output: the JSON file to write; its directory is created.
      pipeline_root: bucket URI under which the pods write artifacts.
      image: image of every component but the Trainer (see kubeflow/Dockerfile).
      gpu_image: image of the Trainer; defaults to `image`.
      beam_args, trainer_resources, component_resources: see `build_pipeline`.

    Returns:
      The PipelineJob as a dict, as written.

    Raises:
      CompileError: see `build_pipeline`; also when `output` does not end in .json.
    """
    if not output.endswith(".json"):
        raise CompileError(f"--output {output!r}: name a .json file (TFX writes a PipelineJob "
                           "JSON; `finetune submit` converts it for the KFP API)")
    pipeline = build_pipeline(config, pipeline_root, beam_args, trainer_resources,
                              component_resources)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image={TRAINER_ID: gpu_image or image, "default_image_path": image},
            default_commands=ENTRYPOINT_COMMAND,
            # Schema 2.1: parameters as `constant` values (the open-source driver refuses the
            # 2.0 `constantValue`, `driver/resolve.go`), and each command gets its component's
            # input definitions, from which the entrypoint restores artifact types.
            use_pipeline_spec_2_1=True),
        output_dir=os.path.dirname(os.path.abspath(output)),
        output_filename=os.path.basename(output))
    job = runner.run(pipeline)
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    for task in UNCACHED_TASKS:
        tasks[task]["cachingOptions"] = {"enableCache": False}
    with open(output, "w", encoding="utf-8") as f:
        json.dump(job, f, indent=2, sort_keys=True)
    return job
