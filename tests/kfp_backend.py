"""A test-only emulator of the open-source Kubeflow Pipelines v2 backend, written from its source
(github.com/kubeflow/pipelines, `backend/src/v2/`, read 2026-11-30). Each behaviour cites the
file it comes from. It is as strict as the backend where our pipeline meets it, and refuses
what it does not emulate rather than guess.

What runs: the compiled PipelineJob's root DAG, task by task in dependency order (Argo may run
independent tasks at once; one topological order is one schedule it may pick). For each task
the driver's work (inputs from ML Metadata, output URIs, the cache key and cache reuse), then
the launcher's (downloads, the pod command as a subprocess with a file system of its own,
the executor output, uploads, recording in ML Metadata). ML Metadata is a real store (SQLite).
MinIO is a directory of objects: one file per object key, never a directory marker.

The Vertex AI form (`form="vertex"`) builds the executor input as Vertex AI does instead:
typed input artifacts named by resource name, and /gcs/ as a file system shared by all pods
(Cloud Storage FUSE), so nothing is downloaded or uploaded; its driver hook (the ExampleGen's
`lifecycle.pre_cache_check`) runs before the command.

Not emulated (refused if the spec needs it): importer and sub-DAG tasks, conditions, loops,
output parameters, placeholders other than `{{$}}`, Kubernetes platform specs. Nor the
`executor-logs` artifact the launcher adds when logs are published.
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
from typing import Dict, List, Optional

from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `component/launcher_v2.go` `LocalPathForURI`.
LOCAL_PREFIXES = {"gs://": "gcs", "minio://": "minio", "s3://": "s3"}
EXECUTION_TYPE = "system.ContainerExecution"  # `metadata/client.go` ContainerExecutionTypeName
POD_TIMEOUT_S = 900


class RefusedSpec(Exception):
    """The backend (or this emulator) cannot run the spec; the message says why."""


class TaskFailed(Exception):
    """A task's command failed; the run stops there, as the Argo workflow does."""

    def __init__(self, task: str, output: str):
        super().__init__(f"task {task} failed:\n{output[-6000:]}")
        self.task = task
        self.output = output


@dataclasses.dataclass
class TaskRun:
    name: str
    state: str  # "COMPLETE" or "CACHED"
    execution_id: int
    executor_input: pipeline_spec_pb2.ExecutorInput
    outputs: Dict[str, metadata_store_pb2.Artifact]


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


class Backend:
    """One Kubeflow Pipelines installation: its ML Metadata, its cache and its MinIO.

    Args:
      root: a directory of the test's own; the store, objects and pod file systems go there.
      form: "open-source" (the KFP v2 backend) or "vertex" (Vertex AI's executor input).
      cache_enabled: the server-wide cache switch (`driver/container.go`: CacheDisabled).
    """

    def __init__(self, root: str, form: str = "open-source", cache_enabled: bool = True):
        if form not in ("open-source", "vertex"):
            raise ValueError(form)
        self.root = root
        self.form = form
        self.cache_enabled = cache_enabled
        os.makedirs(root, exist_ok=True)
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = os.path.join(root, "mlmd.sqlite")
        config.sqlite.connection_mode = 3  # READWRITE_OPENCREATE
        self.store = metadata_store.MetadataStore(config)
        self.objects = os.path.join(root, "objects")
        # Vertex AI: one Cloud Storage FUSE file system seen by every pod at /gcs/.
        self.shared_pod_root = os.path.join(root, "vertex-pod")
        # `cacheutils/cache.go`: the cache entries, fingerprint and pipeline name -> execution.
        self.cache: Dict[tuple, int] = {}
        self._execution_type = self.store.put_execution_type(
            metadata_store_pb2.ExecutionType(name=EXECUTION_TYPE))
        self.runs = 0

    # ----- object store -------------------------------------------------------------------
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

    # ----- the run --------------------------------------------------------------------------
    def run(self, job_path: str, stop_after: Optional[str] = None) -> Dict[str, TaskRun]:
        """Runs the compiled PipelineJob once; returns each task's run.

        Raises:
          RefusedSpec: what the backend would refuse when the run is created.
          TaskFailed: when a task's command fails (later tasks do not run).
        """
        with open(job_path, encoding="utf-8") as f:
            job = json.load(f)
        spec = pipeline_spec_pb2.PipelineSpec()
        json_format.ParseDict(job["pipelineSpec"], spec, ignore_unknown_fields=False)
        deployment = pipeline_spec_pb2.PipelineDeploymentConfig()
        json_format.ParseDict(job["pipelineSpec"]["deploymentSpec"], deployment,
                              ignore_unknown_fields=False)
        self._check_compilable(spec, deployment)
        self.runs += 1
        run_id = uuid.uuid4().hex
        pipeline_name = spec.pipeline_info.name
        # `driver/root_dag.go` + `metadata/client.go` GetPipeline: the run's root.
        root = job["runtimeConfig"]["gcsOutputDirectory"]
        run_root = f"{root.rstrip('/')}/{pipeline_name}/{run_id}"
        results: Dict[str, TaskRun] = {}
        for task_name in self._order(spec):
            results[task_name] = self._run_task(spec, deployment, task_name, run_root,
                                                pipeline_name, results)
            if task_name == stop_after:
                break
        return results

    def _check_compilable(self, spec, deployment) -> None:
        """`compiler/argocompiler/dag.go`: only container and importer executors compile;
        "resolver executors not implemented"."""
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
        """`driver/driver.go` `provisionOutputs`: `<run root>/<task>/<uuid>/<output>`, and the
        executor output file under the task root's local path."""
        outputs = pipeline_spec_pb2.ExecutorInput.Outputs()
        task_root = f"{run_root}/{task_name}/{uuid.uuid4()}"
        for name, definition in component.output_definitions.artifacts.items():
            outputs.artifacts[name].artifacts.append(pipeline_spec_pb2.RuntimeArtifact(
                name=name, uri=f"{task_root}/{name}", type=definition.artifact_type,
                metadata=definition.metadata))
        local_root = local_path_for_uri(task_root)
        outputs.output_file = (f"{local_root}/output_metadata.json" if local_root
                               else "/tmp/kfp_outputs/output_metadata.json")
        return outputs

    @staticmethod
    def fingerprint(executor_input, container) -> str:
        """`cacheutils/cache.go` `GenerateCacheKey` + `GenerateFingerPrint`: input artifact
        names (MLMD ids), input parameter values, output artifact specs with URIs wiped,
        command and arguments, image."""
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
            "containerSpec": {"image": container.image,
                              "cmdArgs": list(container.command) + list(container.args)},
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def _run_task(self, spec, deployment, task_name: str, run_root: str, pipeline_name: str,
                  results: Dict[str, TaskRun]) -> TaskRun:
        task = spec.root.dag.tasks[task_name]
        component = spec.components[task.component_ref.name]
        container = deployment.executors[component.executor_label].container
        executor_input = pipeline_spec_pb2.ExecutorInput(
            inputs=self._inputs(spec, task_name, results),
            outputs=self._outputs(component, task_name, run_root))
        # `driver/container.go`: the execution is created by the driver; the cache is used
        # when enabled server-wide and for the task, and an entry exists.
        fingerprint = self.fingerprint(executor_input, container)
        execution = metadata_store_pb2.Execution(type_id=self._execution_type)
        execution.custom_properties["task_name"].string_value = task_name
        [execution_id] = self.store.put_executions([execution])
        cached_id = self.cache.get((fingerprint, pipeline_name))
        if (self.cache_enabled and task.caching_options.enable_cache
                and cached_id is not None):
            # `reuseCachedOutputs`: the cached execution's output artifacts, published again.
            outputs = self._output_artifacts(cached_id)
            self._publish(execution_id, executor_input, outputs, "CACHED")
            return TaskRun(task_name, "CACHED", execution_id, executor_input, outputs)
        outputs = self._launch(task_name, container, executor_input, execution_id)
        self._publish(execution_id, executor_input, outputs, "COMPLETE")
        # `component/launcher_v2.go` publish: a cache entry for every fresh success.
        self.cache[(fingerprint, pipeline_name)] = execution_id
        return TaskRun(task_name, "COMPLETE", execution_id, executor_input, outputs)

    def _pod_root(self, task_name: str) -> str:
        if self.form == "vertex":
            return self.shared_pod_root
        # A pod's own file system: nothing but what the launcher downloads into it.
        path = os.path.join(self.root, "pods", f"run{self.runs}-{task_name}")
        os.makedirs(path)
        return path

    def _launch(self, task_name: str, container, executor_input, execution_id: int
                ) -> Dict[str, metadata_store_pb2.Artifact]:
        """`component/launcher_v2.go` `execute` and `uploadOutputArtifacts`."""
        pod_root = self._pod_root(task_name)

        def in_pod(path: str) -> str:
            return os.path.join(pod_root, path.lstrip("/"))

        if self.form == "open-source":
            for artifacts in executor_input.inputs.artifacts.values():
                for artifact in artifacts.artifacts:
                    local = local_path_for_uri(artifact.uri)
                    if local:  # else: "Skipping downloading to local path" (a warning)
                        self._download(artifact.uri, in_pod(local))
        else:
            # Vertex AI: TFX's driver hook writes its file where the pod sees it; the file
            # system is FUSE, so the emulator hands the hook the real path.
            executor_input.outputs.output_file = in_pod(executor_input.outputs.output_file)
        for artifacts in executor_input.outputs.artifacts.values():  # `prepareOutputFolders`
            for artifact in artifacts.artifacts:
                local = local_path_for_uri(artifact.uri)
                if local is None:
                    raise RefusedSpec(f"failed to generate local storage path for output "
                                      f"artifact {artifact.name}: unsupported storage scheme")
                os.makedirs(os.path.dirname(in_pod(local)), exist_ok=True)
        output_file = in_pod(executor_input.outputs.output_file) if self.form == "open-source" \
            else executor_input.outputs.output_file
        os.makedirs(os.path.dirname(output_file), exist_ok=True)
        if self.form == "vertex" and container.lifecycle.HasField("pre_cache_check"):
            hook = container.lifecycle.pre_cache_check
            self._exec(task_name, hook.command, hook.args, executor_input, pod_root)
        self._exec(task_name, container.command, container.args, executor_input, pod_root)

        # `getExecutorOutputFile`: no file is an empty output; protojson rejects unknown
        # fields.
        executor_output = pipeline_spec_pb2.ExecutorOutput()
        if os.path.exists(output_file):
            with open(output_file, encoding="utf-8") as f:
                json_format.Parse(f.read(), executor_output, ignore_unknown_fields=False)
        recorded = {}
        for name, artifacts in executor_input.outputs.artifacts.items():
            artifact = pipeline_spec_pb2.RuntimeArtifact()
            artifact.CopyFrom(artifacts.artifacts[0])
            if executor_output.artifacts[name].artifacts:
                # `mergeRuntimeArtifacts`: the executor output's URI replaces the provisioned
                # one; its metadata is merged in.
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

    def _exec(self, task_name: str, command, args, executor_input, pod_root: str) -> None:
        """Runs a container command as the pod: `{{$}}` becomes the executor input JSON
        (`compileCmdAndArgs`), from the image's working directory (this checkout stands in
        for the image's /pipeline)."""
        invocation = json_format.MessageToJson(executor_input)
        argv = []
        for part in list(command) + list(args):
            if "{{$." in part:
                raise RefusedSpec(f"task {task_name}: placeholder in {part!r} is not emulated")
            argv.append(part.replace("{{$}}", invocation))
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env["TFX_FINETUNE_MOUNT_ROOT"] = pod_root
        env["TF_USE_LEGACY_KERAS"] = "1"  # kubeflow/Dockerfile sets it for every pod
        done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=POD_TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise TaskFailed(task_name, done.stdout[-3000:] + done.stderr)

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

    def read(self, uri: str) -> str:
        """Where an artifact's files are, for assertions: the object store (open source) or
        the shared FUSE file system (Vertex AI)."""
        if self.form == "vertex":
            return os.path.join(self.shared_pod_root, local_path_for_uri(uri).lstrip("/"))
        return self._object_path(uri)
