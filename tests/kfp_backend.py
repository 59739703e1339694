"""A test-only emulator of the open-source Kubeflow Pipelines v2 backend, written from its source
(github.com/kubeflow/pipelines, `backend/src/v2/` and `backend/src/apiserver/`, tags 2.3.0 to
2.17.0 and master, read 2026-12-07). Each behaviour cites the file it comes from. It is as
strict as the backend where our pipeline meets it, and refuses what it does not emulate rather
than guess.

What runs: the uploaded package (pipeline spec and Kubernetes platform spec, parsed as
`apiserver/template/v2_template.go` parses an upload), its root DAG task by task in dependency
order (Argo may run independent tasks at once; one topological order is one schedule it may
pick). For each task the driver's work (inputs from ML Metadata, output URIs and the
`executor-logs` output, the cache key and cache reuse, the pod spec from the platform spec),
Kubernetes scheduling of the pod onto the cluster's nodes (resources, node selector, taints),
then the launcher's (downloads, the command, the log, the executor output, uploads, recording
in ML Metadata). ML Metadata is a real store (SQLite). MinIO is a directory of objects: one
file per object key, never a directory marker. A PersistentVolumeClaim is a directory of the
backend's, per namespace.

Each pod is a real isolated container (`kfp_pod.py`: mount and network namespaces, a root file
system of its own): it sees the image, its own /tmp and launcher directories, and only the
volumes its platform config mounts; it has no network; from 2.16 it runs without capabilities.

`Release` models what changed between backend releases where it touches our pipeline. The
Vertex AI form (`form="vertex"`) builds the executor input as Vertex AI does instead: typed
input artifacts named by resource name, and /gcs/ as a file system shared by all pods (Cloud
Storage FUSE), so nothing is downloaded or uploaded; its driver hook (the ExampleGen's
`lifecycle.pre_cache_check`) runs before the command.

Not emulated (refused if the spec needs it): importer and sub-DAG tasks, conditions, loops,
output parameters, placeholders other than `{{$}}`, platform-spec fields other than volumes,
node selectors and tolerations, retries.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import yaml
from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POD_STARTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kfp_pod.py")
# Where kubeflow/Dockerfile puts the project (its WORKDIR); this checkout stands in for it.
IMAGE_WORKDIR = "/pipeline"
# `component/launcher_v2.go` `LocalPathForURI`.
LOCAL_PREFIXES = {"gs://": "gcs", "minio://": "minio", "s3://": "s3"}
EXECUTION_TYPE = "system.ContainerExecution"  # `metadata/client.go` ContainerExecutionTypeName
# `component/launcher_v2.go` OutputMetadataFilepath: the executor output file up to 2.14.
LEGACY_OUTPUT_FILE = "/tmp/kfp_outputs/output_metadata.json"
EXECUTOR_LOGS = "executor-logs"
# The namespace of the default profile of a Kubeflow install (manifests' user@example.com).
DEFAULT_NAMESPACE = "kubeflow-user-example-com"
POD_TIMEOUT_S = 900


class RefusedSpec(Exception):
    """The backend (or this emulator) cannot run the spec; the message says why."""


class TaskFailed(Exception):
    """A task's command failed; the run stops there, as the Argo workflow does."""

    def __init__(self, task: str, output: str):
        super().__init__(f"task {task} failed:\n{output[-6000:]}")
        self.task = task
        self.output = output


class PodPending(Exception):
    """No node can take the task's pod: on a cluster it stays Pending and the run never ends
    (the emulator stops the run instead)."""

    def __init__(self, task: str, reasons: Sequence[str]):
        super().__init__(f"task {task}: pod Pending: " + "; ".join(reasons))
        self.task = task
        self.reasons = list(reasons)


@dataclasses.dataclass(frozen=True)
class Release:
    """A backend release, as far as it differs where our pipeline meets it."""

    name: str
    # 2.4.0+: `<root>/<pipeline>/<run>/<task>/<uuid>/<output>` (`driver/driver.go`
    # provisionOutputs, kubeflow/pipelines#11243); before: no uuid segment.
    output_uri_uuid: bool
    # 2.5.0+: with PUBLISH_LOGS "true" (the apiserver manifest's default, the driver flag's
    # default) the `executor-logs` output on every container task (`driver/driver.go`).
    executor_logs: bool
    # 2.15.0+: the executor output file under the task root's local path; before
    # LEGACY_OUTPUT_FILE (`driver/driver.go` provisionOutputs, #12256).
    output_file_in_task_root: bool
    # 2.15.0+: output RuntimeArtifacts carry their key as `name`, which enters the cache key,
    # as do the pod's PVC claim names (`cacheutils/cache.go` GenerateCacheKey).
    named_outputs: bool
    # 2.17.0+: the executor-logs URI gets the retry index ("-0") and the executor output's
    # entry for it is ignored (`component/launcher_v2.go` qualifyExecutorLogsURI).
    logs_retry_suffix: bool
    # 2.14.0+: run creation parses each executor's Kubernetes config strictly
    # (`compiler/argocompiler/container.go`); 2.5.0 ignored parse errors.
    strict_kubernetes_config: bool
    # 2.16.0+: the user container drops every capability and may not escalate
    # (`compiler/argocompiler/security_context.go`).
    drops_capabilities: bool


RELEASES = {r.name: r for r in (
    Release("2.3", output_uri_uuid=False, executor_logs=False, output_file_in_task_root=False,
            named_outputs=False, logs_retry_suffix=False, strict_kubernetes_config=False,
            drops_capabilities=False),
    Release("2.5", output_uri_uuid=True, executor_logs=True, output_file_in_task_root=False,
            named_outputs=False, logs_retry_suffix=False, strict_kubernetes_config=False,
            drops_capabilities=False),
    Release("2.14", output_uri_uuid=True, executor_logs=True, output_file_in_task_root=False,
            named_outputs=False, logs_retry_suffix=False, strict_kubernetes_config=True,
            drops_capabilities=False),
    Release("2.16", output_uri_uuid=True, executor_logs=True, output_file_in_task_root=True,
            named_outputs=True, logs_retry_suffix=False, strict_kubernetes_config=True,
            drops_capabilities=True),
    Release("2.17", output_uri_uuid=True, executor_logs=True, output_file_in_task_root=True,
            named_outputs=True, logs_retry_suffix=True, strict_kubernetes_config=True,
            drops_capabilities=True),
)}


@dataclasses.dataclass(frozen=True)
class Node:
    """A Kubernetes node: labels, taints (key, value, effect) and allocatable resources (cpu
    in cores, memory in GB, extended resources such as nvidia.com/gpu by count)."""

    name: str
    labels: Mapping[str, str]
    taints: Tuple[Tuple[str, str, str], ...]
    allocatable: Mapping[str, float]


# A cluster as GPU clusters outside GKE are commonly set up: CPU nodes, and GPU nodes that
# carry the NVIDIA device plugin's resource and a NoSchedule taint so that only pods that ask
# for GPUs land there.
DEFAULT_NODES = (
    Node("cpu-1", {"kubernetes.io/hostname": "cpu-1"}, (), {"cpu": 16, "memory": 64}),
    Node("gpu-1", {"kubernetes.io/hostname": "gpu-1", "nvidia.com/gpu.product": "Tesla-T4"},
         (("nvidia.com/gpu", "present", "NoSchedule"),),
         {"cpu": 16, "memory": 64, "nvidia.com/gpu": 4}),
)

# `kubernetes_platform/proto/kubernetes_executor_config.proto` (2.17.0): the fields of
# KubernetesExecutorConfig, PvcMount, NodeSelector and Toleration, by their JSON names
# (protojson also takes the proto names). Known fields this emulator does not apply are
# refused as not emulated.
K8S_CONFIG_FIELDS = {
    "secretAsVolume", "secretAsEnv", "pvcMount", "nodeSelector", "podMetadata",
    "imagePullSecret", "imagePullPolicy", "configMapAsVolume", "configMapAsEnv",
    "activeDeadlineSeconds", "fieldPathAsEnv", "tolerations", "genericEphemeralVolume",
    "nodeAffinity", "podAffinity", "enabledSharedMemory", "emptyDirMounts", "securityContext"}
K8S_APPLIED = {"pvcMount", "nodeSelector", "tolerations"}
K8S_MESSAGE_FIELDS = {
    "pvcMount": {"taskOutputParameter", "constant", "componentInputParameter", "mountPath",
                 "pvcNameParameter", "subPath"},
    "nodeSelector": {"labels", "nodeSelectorJson"},
    "tolerations": {"key", "operator", "value", "effect", "tolerationSeconds",
                    "tolerationJson"},
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def check_kubernetes_config(label: str, config: Mapping, strict: bool) -> None:
    """Refuses what the run's compile refuses in an executor's config (strict protojson into
    KubernetesExecutorConfig from 2.14, `compiler/argocompiler/container.go`), and what this
    emulator does not apply."""
    for key, value in config.items():
        field = _camel(key)
        if field not in K8S_CONFIG_FIELDS:
            if strict:
                raise RefusedSpec(f"executor {label}: failed to unmarshal kubernetes config: "
                                  f"unknown field {key!r}")
            continue
        if field not in K8S_APPLIED:
            raise RefusedSpec(f"executor {label}: {key} is not emulated")
        entries = value if isinstance(value, list) else [value]
        if field == "pvcMount" and not all("constant" in e and "mountPath" in e
                                           for e in entries):
            raise RefusedSpec(f"executor {label}: PVC mounts other than constant claim names "
                              "are not emulated")
        for entry in entries:
            unknown = {_camel(k) for k in entry} - K8S_MESSAGE_FIELDS[field]
            if unknown and strict:
                raise RefusedSpec(f"executor {label}: failed to unmarshal kubernetes config: "
                                  f"unknown field {sorted(unknown)[0]!r} in {key}")


def parse_package(text: str) -> Tuple[pipeline_spec_pb2.PipelineSpec, Dict[str, Dict]]:
    """`NewV2SpecTemplate` (`apiserver/template/v2_template.go`): each YAML document that
    parses strictly as a PipelineSpec with a name and a root is the pipeline spec, one that
    parses strictly as a PlatformSpec with a `kubernetes` platform is the platform spec;
    anything else is ignored. Returns the spec and its Kubernetes executor configs by label.

    Raises:
      RefusedSpec: on two pipeline or platform specs, none, or a schema other than 2.1.0.
    """
    spec = None
    platform_spec = None
    for document in yaml.safe_load_all(text):
        if not document:
            continue
        candidate = pipeline_spec_pb2.PipelineSpec()
        try:
            json_format.ParseDict(document, candidate, ignore_unknown_fields=False)
            is_spec = bool(candidate.pipeline_info.name) and candidate.HasField("root")
        except json_format.ParseError:
            is_spec = False
        if is_spec:
            if spec is not None:
                raise RefusedSpec("multiple pipeline specs provided")
            if candidate.schema_version != "2.1.0":
                raise RefusedSpec("KFP only supports schema version 2.1.0, but the pipeline "
                                  f"spec has version {candidate.schema_version}")
            spec = candidate
            continue
        platform_candidate = pipeline_spec_pb2.PlatformSpec()
        try:
            json_format.ParseDict(document, platform_candidate, ignore_unknown_fields=False)
        except json_format.ParseError:
            continue
        if "kubernetes" in platform_candidate.platforms:
            if platform_spec is not None:
                raise RefusedSpec("multiple platform specs provided")
            platform_spec = platform_candidate
    if spec is None:
        raise RefusedSpec("no pipeline spec is provided")
    executors = {}
    if platform_spec is not None:
        deployment = platform_spec.platforms["kubernetes"].deployment_spec
        executors = {label: json_format.MessageToDict(config)
                     for label, config in deployment.executors.items()}
    return spec, executors


def _tolerates(tolerations: Sequence[Mapping], taint: Tuple[str, str, str]) -> bool:
    """Kubernetes' toleration matching (`Toleration.ToleratesTaint`, k8s.io/api core/v1): same
    key (an empty key with Exists matches every key), same effect (empty matches every
    effect), and Exists, or Equal with the same value."""
    key, value, effect = taint
    for t in tolerations:
        operator = t.get("operator", "Equal")
        if t.get("effect") and t["effect"] != effect:
            continue
        if t.get("key", "") not in ("", key) or (not t.get("key") and operator != "Exists"):
            continue
        if operator == "Exists" or t.get("value", "") == value:
            return True
    return False


def schedule(task: str, nodes: Sequence[Node], limits: Mapping[str, float],
             node_selector: Mapping[str, str], tolerations: Sequence[Mapping]) -> Node:
    """The node kube-scheduler may bind the pod to: its node selector's labels present
    (NodeAffinity), every NoSchedule/NoExecute taint tolerated (TaintToleration), and its
    requests, which default to the limits the driver sets, allocatable (NodeResourcesFit).

    Raises:
      PodPending: with the reason each node refused the pod.
    """
    reasons = []
    for node in nodes:
        missing = [k for k, v in node_selector.items() if node.labels.get(k) != v]
        untolerated = [t for t in node.taints
                       if t[2] in ("NoSchedule", "NoExecute") and not _tolerates(tolerations, t)]
        short = [r for r, amount in limits.items() if node.allocatable.get(r, 0) < amount]
        if not (missing or untolerated or short):
            return node
        reasons.append(f"{node.name}: " + ", ".join(
            [f"node selector {k}={node_selector[k]} not matched" for k in missing]
            + [f"untolerated taint {k}={v}:{e}" for k, v, e in untolerated]
            + [f"insufficient {r}" for r in short]))
    raise PodPending(task, reasons)


def local_path_for_uri(uri: str) -> Optional[str]:
    """`LocalPathForURI` (`component/launcher_v2.go`): the pod path of a remote URI."""
    for scheme, folder in LOCAL_PREFIXES.items():
        if uri.startswith(scheme):
            return f"/{folder}/{uri[len(scheme):]}"
    return None


def _instance_schema_title(artifact_type: pipeline_spec_pb2.ArtifactTypeSchema) -> str:
    """`getArtifactSchema` + `SchemaToArtifactType` (`component/launcher_v2.go`,
    `metadata/client.go`): the MLMD type name is the schema's title; no title is fatal."""
    kind = artifact_type.WhichOneof("kind")
    if kind == "schema_title":
        return artifact_type.schema_title
    if kind != "instance_schema":
        raise RefusedSpec(f"artifact type {artifact_type}: SchemaUri is unsupported")
    for line in artifact_type.instance_schema.splitlines():
        if line.startswith("title:"):
            return line.split(":", 1)[1].strip()
    raise RefusedSpec("glog.Fatal: No title specified in the artifact's instance schema")


def _to_mlmd_value(value: struct_pb2.Value) -> metadata_store_pb2.Value:
    """`StructValueToMLMDValue` (`metadata/converter.go`): numbers become doubles, booleans
    ints, lists and structs a struct wrapping them."""
    kind = value.WhichOneof("kind")
    result = metadata_store_pb2.Value()
    if kind == "string_value":
        result.string_value = value.string_value
    elif kind == "number_value":
        result.double_value = value.number_value
    elif kind == "bool_value":
        result.int_value = int(value.bool_value)
    elif kind in ("list_value", "struct_value"):
        wrapped = struct_pb2.Struct()
        wrapped.fields["list" if kind == "list_value" else "struct"].CopyFrom(value)
        result.struct_value.CopyFrom(wrapped)
    else:
        raise RefusedSpec(f"unknown/unsupported value type {kind}")
    return result


def _to_runtime_artifact(artifact: metadata_store_pb2.Artifact, name: str
                         ) -> pipeline_spec_pb2.RuntimeArtifact:
    """`toRuntimeArtifact` (`metadata/converter.go`): properties and custom properties merged
    into `metadata`, integers as doubles; the caller sets name and type."""
    result = pipeline_spec_pb2.RuntimeArtifact(name=name, uri=artifact.uri)
    for properties in (artifact.properties, artifact.custom_properties):
        for key, value in properties.items():
            kind = value.WhichOneof("value")
            if kind == "string_value":
                result.metadata[key] = value.string_value
            elif kind in ("double_value", "int_value"):
                result.metadata[key] = float(getattr(value, kind))
            elif kind == "struct_value":
                result.metadata.fields[key].struct_value.CopyFrom(value.struct_value)
            else:
                raise RefusedSpec(f"unknown property type in MLMD artifact: {kind}")
    return result


def _copy_files(source: str, target: str) -> None:
    """Copies the file `source`, or every file under it (folders only as their paths)."""
    if os.path.isfile(source):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(source, target)
        return
    for dirpath, _, files in os.walk(source):
        for name in files:
            path = os.path.join(dirpath, name)
            dest = os.path.join(target, os.path.relpath(path, source))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(path, dest)


@dataclasses.dataclass
class TaskRun:
    name: str
    state: str  # "COMPLETE" or "CACHED"
    execution_id: int
    executor_input: pipeline_spec_pb2.ExecutorInput
    outputs: Dict[str, metadata_store_pb2.Artifact]
    node: str = ""


class Backend:
    """One Kubeflow Pipelines installation: its ML Metadata, its cache, its MinIO, its
    volumes and the nodes of its cluster.

    Args:
      root: a directory of the test's own; the store, objects, volumes and pods go there.
      form: "open-source" (the KFP v2 backend) or "vertex" (Vertex AI's executor input).
      release: a key of RELEASES: the backend release emulated.
      publish_logs: the apiserver's PUBLISH_LOGS (`manifests/kustomize/base/pipeline/
        ml-pipeline-apiserver-deployment.yaml`: "true").
      cache_enabled: the server-wide cache switch (`driver/container.go`: CacheDisabled).
      nodes: the cluster's nodes.
      vertex_paths: Vertex AI only: host directories every pod sees at the same path. They
        stand in for data on gs://, which Vertex's pods read with TensorFlow's GCS file
        system and which cannot be served here.
    """

    def __init__(self, root: str, form: str = "open-source", release: str = "2.17",
                 publish_logs: bool = True, cache_enabled: bool = True,
                 nodes: Sequence[Node] = DEFAULT_NODES, vertex_paths: Sequence[str] = ()):
        if form not in ("open-source", "vertex"):
            raise ValueError(form)
        self.root = root
        self.form = form
        self.release = RELEASES[release]
        self.publish_logs = publish_logs
        self.cache_enabled = cache_enabled
        self.nodes = tuple(nodes)
        self.vertex_paths = tuple(vertex_paths)
        os.makedirs(root, exist_ok=True)
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = os.path.join(root, "mlmd.sqlite")
        config.sqlite.connection_mode = 3  # READWRITE_OPENCREATE
        self.store = metadata_store.MetadataStore(config)
        self.objects = os.path.join(root, "objects")
        # Vertex AI: one Cloud Storage FUSE file system seen by every pod at /gcs/.
        self.fuse = os.path.join(root, "gcs-fuse")
        # `cacheutils/cache.go`: entries by fingerprint, "pipeline/<name>" and namespace.
        self.cache: Dict[tuple, int] = {}
        self._execution_type = self.store.put_execution_type(
            metadata_store_pb2.ExecutionType(name=EXECUTION_TYPE))
        self.runs = 0

    # ----- storage --------------------------------------------------------------------------
    def volume(self, claim: str, namespace: str = DEFAULT_NAMESPACE) -> str:
        """Creates the PersistentVolumeClaim `claim` in `namespace` (if new); returns the
        directory holding its files, where a test puts what a user copies onto the volume."""
        path = os.path.join(self.root, "volumes", namespace, claim)
        os.makedirs(path, exist_ok=True)
        return path

    def _object_path(self, uri: str) -> str:
        """The file of an object: `<objects>/<scheme>/<bucket>/<key>`."""
        for scheme, folder in LOCAL_PREFIXES.items():
            if uri.startswith(scheme):
                return os.path.join(self.objects, folder, uri[len(scheme):])
        raise RefusedSpec(f"no object store for {uri}")

    def _download(self, uri: str, local_dir: str) -> None:
        """`DownloadBlob` (`objectstore/object_store.go`): every object under the key prefix
        becomes a file; nothing else (an empty folder was never uploaded)."""
        _copy_files(self._object_path(uri), local_dir)

    def _upload(self, local_dir: str, uri: str) -> None:
        """`UploadBlob` (`objectstore/object_store.go`): files only, recursively; a missing
        local path is skipped with a warning ("We allow components to not produce output
        files", `uploadOutputArtifacts`)."""
        if os.path.exists(local_dir):
            _copy_files(local_dir, self._object_path(uri))

    def read(self, uri: str) -> str:
        """Where an artifact's files are, for assertions: the object store (open source) or
        the shared FUSE file system (Vertex AI)."""
        if self.form == "vertex":
            return os.path.join(self.fuse, local_path_for_uri(uri).lstrip("/"))
        return self._object_path(uri)

    # ----- the run --------------------------------------------------------------------------
    def run(self, path: str, pipeline_root: Optional[str] = None,
            namespace: str = DEFAULT_NAMESPACE, stop_after: Optional[str] = None
            ) -> Dict[str, TaskRun]:
        """Runs a pipeline once; returns each task's run.

        Args:
          path: open source: the uploaded package (YAML, `parse_package`); Vertex AI: the
            PipelineJob JSON.
          pipeline_root: the run's pipeline root; default: the spec's defaultPipelineRoot
            (open source) or the job's gcsOutputDirectory (Vertex AI).
          namespace: the profile namespace the run executes in (its pods, volumes, cache).
          stop_after: a task after which the run stops.

        Raises:
          RefusedSpec: what the backend would refuse when the run is created.
          PodPending: when a task's pod fits no node (or its volume does not exist).
          TaskFailed: when a task's command fails (later tasks do not run).
        """
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if self.form == "vertex":
            job = json.loads(text)
            spec = pipeline_spec_pb2.PipelineSpec()
            json_format.ParseDict(job["pipelineSpec"], spec, ignore_unknown_fields=False)
            k8s_configs: Dict[str, Dict] = {}  # Vertex AI has no Kubernetes platform
            root = pipeline_root or job["runtimeConfig"]["gcsOutputDirectory"]
        else:
            spec, k8s_configs = parse_package(text)
            root = pipeline_root or spec.default_pipeline_root
            if not root:
                raise RefusedSpec("no pipeline root: the run gives none and the spec has no "
                                  "defaultPipelineRoot")
        deployment = pipeline_spec_pb2.PipelineDeploymentConfig()
        json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec), deployment,
                              ignore_unknown_fields=False)
        self._check_compilable(spec, deployment, k8s_configs)
        self.runs += 1
        run_id = uuid.uuid4().hex
        # `driver/root_dag.go` + `metadata/client.go` GetPipeline: the run's root.
        run_root = f"{root.rstrip('/')}/{spec.pipeline_info.name}/{run_id}"
        results: Dict[str, TaskRun] = {}
        for task_name in self._order(spec):
            results[task_name] = self._run_task(spec, deployment, k8s_configs, task_name,
                                                run_root, namespace, results)
            if task_name == stop_after:
                break
        return results

    def _check_compilable(self, spec, deployment, k8s_configs) -> None:
        """`compiler/argocompiler/dag.go`: only container and importer executors compile;
        "resolver executors not implemented"; each executor's Kubernetes config
        (`compiler/argocompiler/container.go`)."""
        for name, task in spec.root.dag.tasks.items():
            component = spec.components[task.component_ref.name]
            if component.WhichOneof("implementation") != "executor_label":
                raise RefusedSpec(f"task {name}: sub-DAGs are not emulated")
            executor = deployment.executors[component.executor_label]
            kind = executor.WhichOneof("spec")
            if kind == "resolver":
                raise RefusedSpec(f"task {name}: resolver executors not implemented")
            if kind != "container":
                raise RefusedSpec(f"task {name}: {kind} executors are not emulated")
            if task.HasField("trigger_policy") and task.trigger_policy.condition:
                raise RefusedSpec(f"task {name}: conditions are not emulated")
            if task.WhichOneof("iterator"):
                raise RefusedSpec(f"task {name}: loops are not emulated")
            if component.output_definitions.parameters:
                raise RefusedSpec(f"task {name}: output parameters are not emulated")
        for label, config in k8s_configs.items():
            check_kubernetes_config(label, config, self.release.strict_kubernetes_config)

    @staticmethod
    def _order(spec) -> List[str]:
        tasks = spec.root.dag.tasks
        deps = {name: set(task.dependent_tasks) | {
            a.task_output_artifact.producer_task for a in task.inputs.artifacts.values()}
            for name, task in tasks.items()}
        order: List[str] = []
        while len(order) < len(tasks):
            ready = sorted(n for n in tasks if n not in order and deps[n] <= set(order))
            if not ready:
                raise RefusedSpec(f"the DAG has a cycle or a missing task: {deps}")
            order.append(ready[0])
        return order

    def _inputs(self, spec, task_name: str, results: Dict[str, TaskRun]
                ) -> pipeline_spec_pb2.ExecutorInput.Inputs:
        """`driver/resolve.go` `resolveInputs`."""
        task = spec.root.dag.tasks[task_name]
        inputs = pipeline_spec_pb2.ExecutorInput.Inputs()
        for name, parameter in task.inputs.parameters.items():
            kind = parameter.WhichOneof("kind")
            value_kind = parameter.runtime_value.WhichOneof("value")
            if kind != "runtime_value" or value_kind != "constant":
                # `resolveInputParameter`: "param runtime value spec of type %T not implemented"
                # for the deprecated `constantValue` of pipeline spec 2.0.
                raise RefusedSpec(f"task {task_name}: parameter {name} is {kind}/{value_kind}: "
                                  "not implemented")
            if "{{$." in parameter.runtime_value.constant.string_value:
                raise RefusedSpec(f"task {task_name}: parameter {name} placeholders are not "
                                  "emulated")
            inputs.parameter_values[name].CopyFrom(parameter.runtime_value.constant)
        for name, artifact_spec in task.inputs.artifacts.items():
            producer = artifact_spec.task_output_artifact.producer_task
            key = artifact_spec.task_output_artifact.output_artifact_key
            mlmd_artifact = results[producer].outputs[key]
            if self.form == "open-source":
                # `GetOutputArtifactsByExecutionId` + `ToRuntimeArtifact`: Schema "".
                runtime = _to_runtime_artifact(mlmd_artifact, str(mlmd_artifact.id))
                runtime.type.instance_schema = ""
            else:
                runtime = _to_runtime_artifact(
                    mlmd_artifact,
                    f"projects/p/locations/l/metadataStores/default/artifacts/{mlmd_artifact.id}")
                producer_component = spec.components[
                    spec.root.dag.tasks[producer].component_ref.name]
                runtime.type.CopyFrom(
                    producer_component.output_definitions.artifacts[key].artifact_type)
            inputs.artifacts[name].artifacts.append(runtime)
        return inputs

    def _outputs(self, component, task_name: str, run_root: str
                 ) -> pipeline_spec_pb2.ExecutorInput.Outputs:
        """`driver/driver.go` `provisionOutputs`: a URI per output under the task root
        (`<run root>/<task>/<uuid>` from 2.4), the `executor-logs` output when logs are
        published (2.5+), and the executor output file (`Release.output_file_in_task_root`)."""
        release = self.release
        outputs = pipeline_spec_pb2.ExecutorInput.Outputs()
        task_root = f"{run_root}/{task_name}" + (f"/{uuid.uuid4()}" if release.output_uri_uuid
                                                 else "")
        definitions = {name: (d.artifact_type, d.metadata)
                       for name, d in component.output_definitions.artifacts.items()}
        if self.form == "open-source" and release.executor_logs and self.publish_logs:
            definitions[EXECUTOR_LOGS] = (pipeline_spec_pb2.ArtifactTypeSchema(
                schema_title="system.Artifact"), None)
        for name, (artifact_type, metadata) in definitions.items():
            artifact = pipeline_spec_pb2.RuntimeArtifact(
                name=name if release.named_outputs or self.form == "vertex" else "",
                uri=f"{task_root}/{name}", type=artifact_type)
            if metadata is not None:
                artifact.metadata.CopyFrom(metadata)
            if name == EXECUTOR_LOGS and release.logs_retry_suffix:
                # `qualifyExecutorLogsForRetry`: no retry policy, no annotation index: "0".
                artifact.uri += "-0"
            outputs.artifacts[name].artifacts.append(artifact)
        local_root = local_path_for_uri(task_root)
        outputs.output_file = (f"{local_root}/output_metadata.json"
                               if local_root and (release.output_file_in_task_root
                                                  or self.form == "vertex")
                               else LEGACY_OUTPUT_FILE)
        return outputs

    def fingerprint(self, executor_input, container, claims: Sequence[str]) -> str:
        """`cacheutils/cache.go` `GenerateCacheKey` + `GenerateFingerPrint`: input artifact
        names (MLMD ids), input parameter values, output artifact specs with URIs wiped
        (executor-logs included), command and arguments, image, and from 2.15 the pod's PVC
        claim names, sorted."""
        container_key = {"image": container.image,
                         "cmdArgs": list(container.command) + list(container.args)}
        if self.release.named_outputs:
            container_key["pvcNames"] = sorted(set(claims))
        key = {
            "inputArtifactNames": {n: {"artifactNames": [a.name for a in l.artifacts]}
                                   for n, l in executor_input.inputs.artifacts.items()},
            "inputParameterValues": {n: json_format.MessageToDict(v) for n, v in
                                     executor_input.inputs.parameter_values.items()},
            "outputArtifactsSpec": {
                n: json_format.MessageToDict(pipeline_spec_pb2.RuntimeArtifact(
                    name=l.artifacts[0].name, type=l.artifacts[0].type,
                    metadata=l.artifacts[0].metadata))
                for n, l in executor_input.outputs.artifacts.items()},
            "containerSpec": container_key,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def _run_task(self, spec, deployment, k8s_configs, task_name: str, run_root: str,
                  namespace: str, results: Dict[str, TaskRun]) -> TaskRun:
        task = spec.root.dag.tasks[task_name]
        component = spec.components[task.component_ref.name]
        container = deployment.executors[component.executor_label].container
        # `cmd/driver/main.go`: the executor label's config reaches the driver as
        # --kubernetes_config; Vertex AI has none.
        k8s_config = k8s_configs.get(component.executor_label, {})
        executor_input = pipeline_spec_pb2.ExecutorInput(
            inputs=self._inputs(spec, task_name, results),
            outputs=self._outputs(component, task_name, run_root))
        claims = [m["constant"] for m in k8s_config.get("pvcMount", [])]
        # `driver/container.go`: the execution is created by the driver; the cache is used
        # when enabled server-wide and for the task, and an entry exists for this pipeline in
        # this namespace (`driver/cache.go` GetExecutionCache).
        fingerprint = self.fingerprint(executor_input, container, claims)
        cache_key = (fingerprint, f"pipeline/{spec.pipeline_info.name}", namespace)
        execution = metadata_store_pb2.Execution(type_id=self._execution_type)
        execution.custom_properties["task_name"].string_value = task_name
        [execution_id] = self.store.put_executions([execution])
        cached_id = self.cache.get(cache_key)
        if (self.cache_enabled and task.caching_options.enable_cache
                and cached_id is not None):
            outputs = self._reuse_cached_outputs(task_name, cached_id, executor_input)
            self._publish(execution_id, executor_input, outputs, "CACHED")
            return TaskRun(task_name, "CACHED", execution_id, executor_input, outputs)
        node = self._schedule(task_name, container, k8s_config, namespace)
        outputs = self._launch(task_name, container, k8s_config, executor_input, namespace)
        self._publish(execution_id, executor_input, outputs, "COMPLETE")
        # `component/launcher_v2.go` Execute: a cache entry for every fresh success.
        self.cache[cache_key] = execution_id
        return TaskRun(task_name, "COMPLETE", execution_id, executor_input, outputs, node.name)

    def _reuse_cached_outputs(self, task_name: str, cached_id: int, executor_input
                              ) -> Dict[str, metadata_store_pb2.Artifact]:
        """`reuseCachedOutputs` (`driver/cache.go`): the cached execution's output artifacts,
        published again; every output of the new executor input must be among them."""
        cached = self._output_artifacts(cached_id)
        for name in executor_input.outputs.artifacts:
            if name not in cached:
                raise RefusedSpec(f"task {task_name}: unable to find artifact with name "
                                  f"{name} in mlmd output artifacts")
        return {name: cached[name] for name in executor_input.outputs.artifacts}

    def _schedule(self, task_name: str, container, k8s_config, namespace: str) -> Node:
        """The pod the driver's pod spec patch describes (`driver/driver.go`
        initPodSpecPatch: resource limits, the accelerator type as the resource name;
        `driver/k8s.go` extendPodSpecPatch: volumes, node selector, tolerations), placed by
        kube-scheduler; a missing claim keeps it Pending too."""
        if self.form == "vertex":
            return Node("vertex", {}, (), {})
        resources = container.resources
        limits = {}
        if resources.cpu_limit:
            limits["cpu"] = resources.cpu_limit
        if resources.memory_limit:
            limits["memory"] = resources.memory_limit
        if resources.accelerator.type and resources.accelerator.count > 0:
            limits[resources.accelerator.type] = resources.accelerator.count
        for mount in k8s_config.get("pvcMount", []):
            if not os.path.isdir(os.path.join(self.root, "volumes", namespace,
                                              mount["constant"])):
                raise PodPending(task_name, [f'persistentvolumeclaim "{mount["constant"]}" '
                                             f"not found in namespace {namespace}"])
        return schedule(task_name, self.nodes, limits,
                        k8s_config.get("nodeSelector", {}).get("labels", {}),
                        k8s_config.get("tolerations", []))

    def _pod_root(self, task_name: str) -> str:
        # A pod's own root file system (`kfp_pod.py` builds it).
        path = os.path.join(self.root, "pods", f"run{self.runs}-{task_name}")
        os.makedirs(path)
        return path

    def _launch(self, task_name: str, container, k8s_config, executor_input,
                namespace: str) -> Dict[str, metadata_store_pb2.Artifact]:
        """`component/launcher_v2.go` `execute` and `uploadOutputArtifacts`."""
        pod_root = self._pod_root(task_name)

        def in_pod(path: str) -> str:
            """The host path of a file the pod sees at `path`."""
            if self.form == "vertex" and path.startswith("/gcs/"):
                return os.path.join(self.fuse, path[len("/gcs/"):])
            return os.path.join(pod_root, path.lstrip("/"))

        binds = [(os.path.join(self.root, "volumes", namespace, m["constant"]), m["mountPath"],
                  False) for m in k8s_config.get("pvcMount", [])]
        if self.form == "open-source":
            for artifacts in executor_input.inputs.artifacts.values():
                for artifact in artifacts.artifacts:
                    local = local_path_for_uri(artifact.uri)
                    if local:  # else: "Skipping downloading to local path" (a warning)
                        self._download(artifact.uri, in_pod(local))
        else:
            os.makedirs(self.fuse, exist_ok=True)
            binds += [(self.fuse, "/gcs", False)] + [(p, p, False) for p in self.vertex_paths]
        for artifacts in executor_input.outputs.artifacts.values():  # `prepareOutputFolders`
            for artifact in artifacts.artifacts:
                local = local_path_for_uri(artifact.uri)
                if local is None:
                    raise RefusedSpec(f"failed to generate local storage path for output "
                                      f"artifact {artifact.name}: unsupported storage scheme")
                os.makedirs(os.path.dirname(in_pod(local)), exist_ok=True)
        if self.form == "vertex" and container.lifecycle.HasField("pre_cache_check"):
            hook = container.lifecycle.pre_cache_check
            self._exec(task_name, hook.command, hook.args, executor_input, pod_root, binds)
        log = self._exec(task_name, container.command, container.args, executor_input,
                         pod_root, binds, check=False)
        succeeded = log.returncode == 0
        if EXECUTOR_LOGS in executor_input.outputs.artifacts:
            # `getLogWriter`: the command's stdout and stderr, teed into the local path.
            (logs,) = executor_input.outputs.artifacts[EXECUTOR_LOGS].artifacts
            with open(in_pod(local_path_for_uri(logs.uri)), "w", encoding="utf-8") as f:
                f.write(log.stdout + log.stderr)
        if not succeeded:
            if EXECUTOR_LOGS in executor_input.outputs.artifacts and \
                    self.release.drops_capabilities:
                # 2.16+: on failure only the log is uploaded and recorded.
                self._upload_and_record(executor_input, pipeline_spec_pb2.ExecutorOutput(),
                                        in_pod, only=(EXECUTOR_LOGS,))
            raise TaskFailed(task_name, log.stdout[-3000:] + log.stderr)
        # `getExecutorOutputFile`: no file is an empty output; protojson rejects unknown
        # fields.
        executor_output = pipeline_spec_pb2.ExecutorOutput()
        output_file = in_pod(executor_input.outputs.output_file)
        if os.path.exists(output_file):
            with open(output_file, encoding="utf-8") as f:
                json_format.Parse(f.read(), executor_output, ignore_unknown_fields=False)
        return self._upload_and_record(executor_input, executor_output, in_pod)

    def _upload_and_record(self, executor_input, executor_output, in_pod,
                           only: Sequence[str] = ()) -> Dict[str, metadata_store_pb2.Artifact]:
        """`uploadOutputArtifacts` (`component/launcher_v2.go`): each output, its URI and
        metadata merged from the executor output (`mergeRuntimeArtifacts`; from 2.17 never
        for executor-logs), uploaded from its local path and recorded in ML Metadata."""
        recorded = {}
        for name, artifacts in executor_input.outputs.artifacts.items():
            if only and name not in only:
                continue
            artifact = pipeline_spec_pb2.RuntimeArtifact()
            artifact.CopyFrom(artifacts.artifacts[0])
            merge = not (name == EXECUTOR_LOGS and self.release.logs_retry_suffix)
            if merge and executor_output.artifacts[name].artifacts:
                produced = executor_output.artifacts[name].artifacts[0]
                if produced.uri:
                    artifact.uri = produced.uri
                for key, value in produced.metadata.items():
                    artifact.metadata[key] = value
            local = local_path_for_uri(artifact.uri)
            if local is not None and self.form == "open-source":
                self._upload(in_pod(local), artifact.uri)
            # else: "does not have a recognized storage URI ... Skipping uploading".
            recorded[name] = self._record_artifact(name, artifact)
        return recorded

    def _exec(self, task_name: str, command, args, executor_input, pod_root: str,
              binds: Sequence[Tuple[str, str, bool]], check: bool = True
              ) -> subprocess.CompletedProcess:
        """Runs a container command in the pod: `{{$}}` becomes the executor input JSON
        (`compileCmdAndArgs`)."""
        invocation = json_format.MessageToJson(executor_input)
        argv = []
        for part in list(command) + list(args):
            if "{{$." in part:
                raise RefusedSpec(f"task {task_name}: placeholder in {part!r} is not emulated")
            argv.append(part.replace("{{$}}", invocation))
        done = self.run_in_pod(pod_root, argv, binds)
        if check and done.returncode != 0:
            raise TaskFailed(task_name, done.stdout[-3000:] + done.stderr)
        return done

    def run_in_pod(self, pod_root: str, argv: Sequence[str],
                   binds: Sequence[Tuple[str, str, bool]] = ()) -> subprocess.CompletedProcess:
        """Runs `argv` in a container of its own (`kfp_pod.py`) rooted at the new directory
        `pod_root`: the image (this checkout at IMAGE_WORKDIR, its working directory, and at
        its own path, where the editable install points), the `(host path, pod path,
        read-only)` binds, no network, and on open source from 2.16 no capabilities."""
        os.makedirs(pod_root, exist_ok=True)
        image = [(os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_prefix), True),
                 (REPO, REPO, True), (REPO, IMAGE_WORKDIR, True)]
        if os.path.commonpath([sys.prefix, REPO]) != REPO:
            image.append((sys.prefix, sys.prefix, True))
        pod = {
            "root": pod_root, "binds": image + list(binds), "cwd": IMAGE_WORKDIR,
            "argv": list(argv),
            "drop_capabilities": self.form == "open-source" and
            self.release.drops_capabilities,
            # kubeflow/Dockerfile sets TF_USE_LEGACY_KERAS for every pod.
            "env": {"PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
                    "HOME": "/root", "LANG": "C.UTF-8", "TF_USE_LEGACY_KERAS": "1"},
        }
        spec_path = pod_root.rstrip("/") + ".json"
        with open(spec_path, "w", encoding="utf-8") as f:
            json.dump(pod, f)
        return subprocess.run(["unshare", "--mount", "--net", "--fork", "--", sys.executable,
                               POD_STARTER, spec_path], capture_output=True, text=True,
                              timeout=POD_TIMEOUT_S, check=False)

    def place(self, path: str, task_name: str, namespace: str = DEFAULT_NAMESPACE) -> Node:
        """The node a task's pod of the package at `path` would run on (`_schedule`),
        without running anything.

        Raises:
          PodPending: see `_schedule`.
        """
        with open(path, encoding="utf-8") as f:
            spec, k8s_configs = parse_package(f.read())
        label = spec.components[spec.root.dag.tasks[task_name].component_ref.name].executor_label
        deployment = pipeline_spec_pb2.PipelineDeploymentConfig()
        json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec), deployment,
                              ignore_unknown_fields=False)
        return self._schedule(task_name, deployment.executors[label].container,
                              k8s_configs.get(label, {}), namespace)

    def _record_artifact(self, name: str, artifact: pipeline_spec_pb2.RuntimeArtifact
                         ) -> metadata_store_pb2.Artifact:
        """`RecordArtifact` (`metadata/client.go`): the type named by the schema's title,
        every metadata field a custom property (`toMLMDArtifact`), state LIVE."""
        type_id = self.store.put_artifact_type(metadata_store_pb2.ArtifactType(
            name=_instance_schema_title(artifact.type)), can_add_fields=True)
        mlmd_artifact = metadata_store_pb2.Artifact(
            type_id=type_id, uri=artifact.uri, state=metadata_store_pb2.Artifact.LIVE)
        for key, value in artifact.metadata.fields.items():
            mlmd_artifact.custom_properties[key].CopyFrom(_to_mlmd_value(value))
        mlmd_artifact.custom_properties["display_name"].string_value = name
        [artifact_id] = self.store.put_artifacts([mlmd_artifact])
        [stored] = self.store.get_artifacts_by_id([artifact_id])
        return stored

    def _publish(self, execution_id: int, executor_input, outputs, state: str) -> None:
        """`PublishExecution` (`metadata/client.go`): the state, an INPUT event per input
        artifact and an OUTPUT event per output, keyed by name."""
        [execution] = self.store.get_executions_by_id([execution_id])
        execution.last_known_state = getattr(metadata_store_pb2.Execution, state)
        self.store.put_executions([execution])
        events = []
        for name, artifacts in executor_input.inputs.artifacts.items():
            for artifact in artifacts.artifacts:
                events.append((name, metadata_store_pb2.Event.INPUT,
                               int(artifact.name.rsplit("/", 1)[-1])))
        events += [(name, metadata_store_pb2.Event.OUTPUT, artifact.id)
                   for name, artifact in outputs.items()]
        records = []
        for name, kind, artifact_id in events:
            event = metadata_store_pb2.Event(type=kind, artifact_id=artifact_id,
                                             execution_id=execution_id)
            event.path.steps.add().key = name
            records.append(event)
        self.store.put_events(records)

    def _output_artifacts(self, execution_id: int) -> Dict[str, metadata_store_pb2.Artifact]:
        """`GetOutputArtifactsByExecutionId` (`metadata/client.go`)."""
        events = [e for e in self.store.get_events_by_execution_ids([execution_id])
                  if e.type == metadata_store_pb2.Event.OUTPUT]
        artifacts = {a.id: a for a in self.store.get_artifacts_by_id(
            [e.artifact_id for e in events])}
        return {e.path.steps[0].key: artifacts[e.artifact_id] for e in events}
