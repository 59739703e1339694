"""Compiles the one `create_pipeline` DAG into a Kubeflow Pipelines v2 job spec, Trainer on GPU."""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, Optional, Sequence

from tfx import v1 as tfx
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base.base_component import BaseComponent
from tfx.orchestration import pipeline as tfx_pipeline

from kubeflow.resources import (DEFAULT_BEAM_ARGS, DEFAULT_COMPONENT_RESOURCES, DEFAULT_IMAGE,
                                DEFAULT_TRAINER_RESOURCES, CompileError, Resources)
from pipeline import config as config_lib
from pipeline.pipeline import create_pipeline

# Where kubeflow/Dockerfile puts the project (WORKDIR) and so the curated schema.
IMAGE_PROJECT_DIR = "/pipeline"
IMAGE_SCHEMA_PATH = f"{IMAGE_PROJECT_DIR}/schemas/{os.path.basename(config_lib.DEFAULT_SCHEMA)}"
TRAINER_ID = "Trainer"


def _require_cluster_path(flag: str, value: str) -> None:
    """A pod resolves a relative path against its own working directory: refuse it."""
    if "://" not in value and not os.path.isabs(value):
        raise CompileError(f"{flag} {value!r} is a local relative path, which does not exist in "
                           "the pods: pass a bucket URI (gs://…, s3://…) or an absolute path "
                           "that is mounted in every pod")


def cluster_config(config: config_lib.PipelineConfig, data: Optional[str] = None
                   ) -> config_lib.PipelineConfig:
    """Returns `config` with the paths a pod needs.

    The project's curated schema is read from where the image holds it (`IMAGE_SCHEMA_PATH`);
    a schema path the user set explicitly is kept.

    Raises:
      CompileError: when the data or workspace is a relative local path.
    """
    replaced = {}
    if data:
        replaced["data_dir"] = data
    if config.schema_path == config_lib.DEFAULT_SCHEMA:
        replaced["schema_path"] = IMAGE_SCHEMA_PATH
    config = dataclasses.replace(config, **replaced)
    _require_cluster_path("--data", config.data_dir)
    _require_cluster_path("--workspace", config.workspace)
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
    if "://" not in pipeline_root:
        raise CompileError(f"--pipeline-root {pipeline_root!r} is not a URI: pass the bucket the "
                           "pods write artifacts to, e.g. gs://bucket/tfx-root or s3://bucket/root")
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
            default_image={TRAINER_ID: gpu_image or image, "default_image_path": image}),
        output_dir=os.path.dirname(os.path.abspath(output)),
        output_filename=os.path.basename(output))
    return runner.run(pipeline)
