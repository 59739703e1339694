"""Compiles the one `create_pipeline` DAG into a Kubeflow Pipelines v2 job spec, Trainer on GPU."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import yaml
from tfx import v1 as tfx
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base.base_component import BaseComponent
from tfx.orchestration import pipeline as tfx_pipeline

from tfx_finetune.kubeflow import platform
from tfx_finetune.kubeflow import weights as weights_lib
from tfx_finetune.kubeflow.resources import (DEFAULT_BEAM_ARGS, DEFAULT_COMPONENT_RESOURCES, DEFAULT_IMAGE,
                                DEFAULT_TRAINER_RESOURCES, IMAGE_PROJECT_DIR, CompileError,
                                Resources)
from tfx_finetune.components import backbones
from tfx_finetune.components.uri import is_uri
from tfx_finetune.pipeline import config as config_lib
from tfx_finetune.pipeline import nodes
from tfx_finetune.pipeline.pipeline import create_pipeline

# Where kubeflow/Dockerfile puts the curated schema.
IMAGE_SCHEMA_PATH = f"{IMAGE_PROJECT_DIR}/schemas/{os.path.basename(config_lib.DEFAULT_SCHEMA)}"
TRAINER_ID = nodes.TRAINER
# Every task runs its TFX executor through our entrypoint (see kubeflow/entrypoint.py).
ENTRYPOINT_COMMAND = ["python", "-m", "tfx_finetune.kubeflow.entrypoint"]
# Artifacts (under the pipeline root) travel through the KFP launcher, which knows these.
PIPELINE_ROOT_SCHEMES = ("gs://", "s3://", "minio://")
# Data, workspace, weights and schema are opened by TensorFlow in the pod: TF 2.16 reads
# gs:// itself; it has no s3:// without tensorflow-io and no minio:// at all.
POD_READABLE_SCHEMES = ("gs://",)
# Tasks that must run on every Kubeflow run, whatever the KFP cache holds. The backend keys
# its cache on the executor input (kubeflow/pipelines `backend/src/v2/driver/cache.go`), which
# holds no file's content: not the folder's (the ExampleGen's fingerprint driver runs only on
# Vertex AI), not the schema file's (ImportSchemaGen would keep importing the old schema after
# the file changed), nor what the workspace serves and accepted since (read by the Evaluator
# and the DataGate at run time).
UNCACHED_TASKS = (nodes.EXAMPLE_GEN, nodes.SCHEMA_GEN, nodes.DATA_GATE, nodes.EVALUATOR)
# Beam runners that run inside the pod; any other runs its workers elsewhere.
LOCAL_BEAM_RUNNERS = ("direct", "directrunner", "bundlebaseddirectrunner",
                      "switchingdirectrunner")
# The tag that names whatever was built last (also what no tag means): the KFP cache keys on
# the image string, not the image's digest.
MUTABLE_TAG = "latest"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """What the pods get from the cluster beyond their image: volumes, the Trainer's way to
    the GPU nodes, and where the ImageNet weights come from.

    Attributes:
      volumes: PersistentVolumeClaims mounted in every pod (`platform.Volume`).
      gpu_tolerations: taints of the GPU nodes the Trainer tolerates.
      gpu_node_selector: node labels the Trainer's node must have.
      weights_source: for `weights: imagenet`, `weights.FROM_IMAGE` (the file
        kubeflow/Dockerfile baked in) or `weights.DOWNLOAD` (Keras downloads it in the pod:
        needs egress).
    """

    volumes: Tuple[platform.Volume, ...] = ()
    gpu_tolerations: Tuple[platform.Toleration, ...] = platform.DEFAULT_GPU_TOLERATIONS
    gpu_node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    weights_source: str = weights_lib.FROM_IMAGE


@dataclasses.dataclass(frozen=True)
class Compiled:
    """What `compile_pipeline` wrote: the PipelineJob (Vertex AI), the KFP package (open-source
    Kubeflow: pipeline spec and platform spec), and one line per choice made for the pods."""

    job: Dict
    job_path: str
    package_path: str
    notes: Tuple[str, ...]


def _require_pod_path(field: str, value: str, mounted: Sequence[str]) -> str:
    """Refuses a path a pod cannot open, naming the field; returns where the pods find it."""
    if is_uri(value):
        if not value.startswith(POD_READABLE_SCHEMES):
            raise CompileError(
                f"{field} {value!r}: TensorFlow in the pods cannot open {value.split('://')[0]}"
                ":// (only the pipeline root may be on MinIO or S3, the KFP launcher moves its "
                "artifacts): copy it to gs://…, or to a PersistentVolumeClaim mounted with "
                "--volume CLAIM:/mount/path")
        return "Cloud Storage, read by TensorFlow"
    inside = {IMAGE_PROJECT_DIR: "the image", **{m: f"the volume at {m}" for m in mounted}}
    for directory, where in inside.items():
        if os.path.isabs(value) and os.path.commonpath(
                [os.path.abspath(value), directory]) == directory:
            return where
    raise CompileError(
        f"{field} {value!r} is a local path the pods do not have: pass gs://…, a path inside "
        f"the image (under {IMAGE_PROJECT_DIR}), or a path on a PersistentVolumeClaim that "
        "every pod mounts, given with --volume CLAIM:/mount/path")


def _pod_weights(config: config_lib.PipelineConfig, weights_source: str) -> Dict[str, str]:
    """The `weights` field the Trainer's pod loads, when it differs from the config's."""
    if weights_source not in weights_lib.SOURCES:
        raise CompileError(f"--weights-source {weights_source!r}: one of "
                           f"{', '.join(weights_lib.SOURCES)}")
    if (config.backbone_weights != backbones.IMAGENET_WEIGHTS
            or weights_source == weights_lib.DOWNLOAD):
        return {}
    return {"weights": weights_lib.baked_path(config.backbone, config.alpha)}


def cluster_config(config: config_lib.PipelineConfig, data: Optional[str] = None,
                   cluster: Cluster = Cluster()) -> config_lib.PipelineConfig:
    """Returns `config` with the paths a pod needs, after checking every one.

    The project's curated schema is read from where the image holds it (`IMAGE_SCHEMA_PATH`);
    a schema path the user set explicitly is kept. `weights: imagenet` becomes the image's
    baked file (`weights.baked_path`) unless `cluster.weights_source` is `weights.DOWNLOAD`.

    Args:
      config: the run's configuration.
      data: the image folder as the pods see it (replaces `config.data_dir`).
      cluster: the volumes every pod mounts, and the weights source.

    Raises:
      CompileError: naming the field, when the data, workspace, weights file or schema is a
        local path outside the image and the volumes, or a URI TensorFlow cannot open in the
        pod; or on volumes given twice.
    """
    replaced = dict(_pod_weights(config, cluster.weights_source))
    if data:
        replaced["data_dir"] = data
    if config.schema_path == config_lib.DEFAULT_SCHEMA:
        replaced["schema_path"] = IMAGE_SCHEMA_PATH
    config = dataclasses.replace(config, **replaced)
    pod_paths(config, cluster)
    return config


def pod_paths(config: config_lib.PipelineConfig, cluster: Cluster) -> Tuple[str, ...]:
    """One line per path the pods open (data, workspace, schema, weights): where they find it.

    Raises:
      CompileError: see `cluster_config`.
    """
    mounted = platform.mounted_paths(cluster.volumes)
    lines = [f"{field}: {value} ({_require_pod_path(flag, value, mounted)})"
             for field, flag, value in (("data", "--data", config.data_dir),
                                        ("workspace", "--workspace", config.workspace),
                                        ("schema", "schema_path", config.schema_path))]
    weights = config.backbone_weights
    if weights == backbones.NO_WEIGHTS:
        lines.append("weights: none (random initialisation)")
    elif weights == backbones.IMAGENET_WEIGHTS:
        lines.append("weights: ImageNet, downloaded by Keras in the Trainer's pod: it needs "
                     "egress to storage.googleapis.com (without it, leave --weights-source "
                     "at image and build the image with --build-arg PRETRAINED)")
    else:
        where = _require_pod_path("weights", weights, mounted)
        if os.path.dirname(weights) == weights_lib.IMAGE_WEIGHTS_DIR:
            where += (f"; ImageNet weights the image must bake: build it with --build-arg "
                      f"PRETRAINED=\"{config.backbone}:{config.alpha:g}\", or pass "
                      "--weights-source download if the pods reach the internet")
        lines.append(f"weights: {weights} ({where})")
    return tuple(lines)


def _check_beam_args(beam_args: Sequence[str]) -> None:
    """Refuses a Beam runner whose workers run outside the pod.

    The launcher downloads each input to a local path of the pod and uploads the outputs
    from there (kubeflow/pipelines `backend/src/v2/component/launcher_v2.go`): Dataflow, Flink
    or Spark workers elsewhere can neither read those copies nor write into them. Writing the
    remote URIs directly instead leaves the directory markers that break the next task's
    download from GCS (kubeflow/pipelines#13476), and TensorFlow cannot open minio:// at all.
    """
    runners = [a.split("=", 1)[1] for a in beam_args if a.startswith("--runner=")]
    runners += [beam_args[i + 1] for i, a in enumerate(beam_args[:-1]) if a == "--runner"]
    for runner in runners:
        if runner.lower() not in LOCAL_BEAM_RUNNERS:
            raise CompileError(
                f"--beam-arg=--runner={runner}: a Beam runner whose workers run outside the "
                "pod cannot run a Kubeflow task: the KFP launcher gives the executor local "
                "copies of its inputs and uploads its outputs from local paths, which workers "
                "on other machines cannot reach. Use Beam's DirectRunner in the pod (the "
                "default), e.g. --beam-arg=--direct_running_mode=multi_processing "
                "--beam-arg=--direct_num_workers=8 with --cpu 8")


def _has_fixed_tag(image: str) -> bool:
    """Whether `image` is pinned by digest or by a tag other than `latest`."""
    if "@" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    return ":" in name and name.split(":", 1)[1] != MUTABLE_TAG


def _image_notes(images: Sequence[str]) -> List[str]:
    """A warning per image without a fixed tag: the KFP cache keys on the image string."""
    return [f"warning: image {image!r} has no fixed tag: Kubeflow's cache keys on the image "
            "name, not its content, so a rebuilt image under this name reuses the results of "
            "the old code; tag each build (e.g. with the git commit) or pin it by digest "
            "(IMAGE@sha256:...)"
            for image in dict.fromkeys(images) if not _has_fixed_tag(image)]


def build_pipeline(config: config_lib.PipelineConfig, pipeline_root: str,
                   beam_args: Sequence[str] = DEFAULT_BEAM_ARGS,
                   trainer_resources: Resources = DEFAULT_TRAINER_RESOURCES,
                   component_resources: Resources = DEFAULT_COMPONENT_RESOURCES,
                   ) -> tfx_pipeline.Pipeline:
    """The `create_pipeline` DAG with Kubeflow platform configs attached to its components.

    The Trainer gets `trainer_resources` (GPU request and limits) and refuses to train with
    fewer GPUs than it asked for; every other container component gets
    `component_resources`, except file-based ExampleGens, for which TFX ignores platform
    configs (tensorflow/tfx#6146) so none is set.

    Args:
      config: the run's configuration, with cluster paths (see `cluster_config`).
      pipeline_root: bucket URI under which the pods write artifacts.
      beam_args: Beam pipeline arguments of the data components (DirectRunner only).
      trainer_resources, component_resources: container limits.

    Raises:
      CompileError: when `pipeline_root` is not a URI, a limit is invalid, a Beam runner
        would run its workers outside the pods, or the config asks for the Tuner.
    """
    if not pipeline_root.startswith(PIPELINE_ROOT_SCHEMES):
        raise CompileError(f"--pipeline-root {pipeline_root!r} is not a bucket URI: pass the "
                           "bucket the pods write artifacts to, e.g. minio://mlpipeline/tfx-root "
                           "(Kubeflow's default store), gs://bucket/tfx-root or s3://bucket/root")
    _check_beam_args(beam_args)
    if config.tuner_trials:
        raise CompileError(
            f"tuner_trials: {config.tuner_trials}: the Tuner is not compiled for Kubeflow (its "
            "trials would train on the CPU image, without the Trainer's GPUs). Tune locally "
            "(`finetune run --tuner-trials N`; the run report lists the best values) and put "
            "the values in the config, with tuner_trials: 0")
    # The Trainer refuses to train on CPU when the GPUs it was given are not visible.
    config = dataclasses.replace(config, required_gpus=trainer_resources.gpu_count)
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


def write_package(job: Dict, platform_spec: Dict, path: str) -> None:
    """Writes what the open-source KFP API takes on upload: the pipeline spec, with the
    compile's pipeline root as its default, then the platform spec as a second YAML document
    when there is one (`apiserver/template/v2_template.go`)."""
    spec = dict(job["pipelineSpec"])
    pipeline_root = job.get("runtimeConfig", {}).get("gcsOutputDirectory", "")
    if pipeline_root:
        spec["defaultPipelineRoot"] = pipeline_root
    documents = [spec] + ([platform_spec] if platform_spec else [])
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(documents, f, sort_keys=True)


def compile_pipeline(config: config_lib.PipelineConfig, output: str, pipeline_root: str,
                     image: str = DEFAULT_IMAGE, gpu_image: Optional[str] = None,
                     beam_args: Sequence[str] = DEFAULT_BEAM_ARGS,
                     trainer_resources: Resources = DEFAULT_TRAINER_RESOURCES,
                     component_resources: Resources = DEFAULT_COMPONENT_RESOURCES,
                     cluster: Cluster = Cluster()) -> Compiled:
    """Writes the Kubeflow v2 PipelineJob JSON (its `pipelineSpec` is the KFP pipeline spec;
    Vertex AI runs it as is) and, beside it with the suffix .yaml, the package open-source
    Kubeflow Pipelines takes: that spec and its Kubernetes platform spec (volumes in every
    pod, the Trainer's GPU tolerations and node selector).

    Args:
      config: the run's configuration, with cluster paths (see `cluster_config`).
      output: the JSON file to write; its directory is created.
      pipeline_root: bucket URI under which the pods write artifacts.
      image: image of every component but the Trainer (see kubeflow/Dockerfile).
      gpu_image: image of the Trainer; defaults to `image`.
      beam_args, trainer_resources, component_resources: see `build_pipeline`.
      cluster: volumes and GPU scheduling for the platform spec (see `Cluster`).

    Returns:
      What was written, with a line per choice made for the pods (images, volumes, GPUs).

    Raises:
      CompileError: see `build_pipeline` and `platform`; also when `output` does not end in
        .json.
    """
    if not output.endswith(".json"):
        raise CompileError(f"--output {output!r}: name a .json file (TFX writes a PipelineJob "
                           "JSON; the package for the KFP API is written beside it)")
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
    spec = job["pipelineSpec"]
    for task in UNCACHED_TASKS:
        spec["root"]["dag"]["tasks"][task]["cachingOptions"] = {"enableCache": False}
    with open(output, "w", encoding="utf-8") as f:
        json.dump(job, f, indent=2, sort_keys=True)
    labels = sorted(spec["deploymentSpec"]["executors"])
    trainer_label = spec["components"][spec["root"]["dag"]["tasks"][TRAINER_ID][
        "componentRef"]["name"]]["executorLabel"]
    package = os.path.splitext(output)[0] + ".yaml"
    write_package(job, platform.platform_spec(
        labels, trainer_label, cluster.volumes, trainer_resources.gpu_count,
        cluster.gpu_tolerations, cluster.gpu_node_selector), package)
    notes = pod_paths(config, cluster) + platform.describe(
        cluster.volumes, trainer_resources.gpu_count, cluster.gpu_tolerations,
        cluster.gpu_node_selector)
    return Compiled(job, output, package,
                    notes + tuple(_image_notes([image, gpu_image or image])))
