"""Container entrypoint of every compiled task: runs a TFX executor from the KFP executor input
of either backend, Vertex AI Pipelines or open-source Kubeflow Pipelines v2.

TFX's own entrypoint (`kubeflow_v2_run_executor`) expects Vertex AI's executor input. The
open-source backend differs (kubeflow/pipelines, `backend/src/v2/`):

- Input artifacts are rebuilt from ML Metadata with an empty `instance_schema`
  (`metadata/client.go`, `GetOutputArtifactsByExecutionId`: `Schema: ""`), which TFX cannot
  map to an artifact class. Their type is taken here from the component's input definitions,
  which the compiled spec passes as `--json_serialized_inputs_spec_args`. The same repairs
  types given as `system.*` schema titles.
- Names are MLMD ids as decimal strings and integers arrive as doubles
  (`metadata/converter.go`, `toRuntimeArtifact`): TFX's parser already reads both.
- Artifacts live in an object store the launcher copies to and from local paths
  (`component/launcher_v2.go`: `LocalPathForURI` maps gs:// to /gcs/, minio:// to /minio/,
  s3:// to /s3/; inputs are downloaded there before the command runs, outputs uploaded from
  there after it), while the executor input keeps the remote URIs. TensorFlow cannot open
  minio:// at all, and writing gs:// directly leaves zero-byte directory markers that the
  launcher's download turns into files (kubeflow/pipelines#13476). So executors work on the
  local paths, and the executor output names the remote URIs again: the launcher takes a URI
  from the executor output as the artifact's new URI (`mergeRuntimeArtifacts`), so a local
  path there would be recorded and never uploaded. On Vertex AI, /gcs/ is the Cloud Storage
  FUSE mount, so the same paths work there.

Since KFP 2.5 the driver also adds an output artifact `executor-logs` (type `system.Artifact`)
to every task when logs are published, the default (`driver/driver.go` provisionOutputs); the
launcher writes the task's log there itself (`component/launcher_v2.go`). It is no output of the
TFX component: TFX cannot import its type, so it is left out of what the executor sees, and out
of the executor output, which names only the component's artifacts.

The process ends with `os._exit` once the executor output is written: TFX 1.15-1.17 pods were
seen to abort at interpreter exit ("pure virtual method called", sky-uk/kfp-operator
`provider-service/kfp/tfx-patch/README.md`), which fails a task whose work is done.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence

# Before TensorFlow: the project's Keras choice (see components/__init__.py).
import tfx_finetune.components  # noqa: F401  pylint: disable=unused-import

from absl import logging
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_executor, base_executor
from tfx.dsl.io import fileio
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as tfx_utils
from tfx.orchestration.portable import outputs_utils
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import import_utils

# The launcher's local copies of remote artifacts (`LocalPathForURI`).
LAUNCHER_PATHS = {"gs://": "gcs", "minio://": "minio", "s3://": "s3"}
# Outputs the KFP launcher adds and fills itself (`executor-logs`, when PUBLISH_LOGS is on).
LAUNCHER_OUTPUTS = ("executor-logs",)


class ExecutorInputError(ValueError):
    """The executor input cannot be run; the message says what is missing."""


def local_path(uri: str) -> Optional[str]:
    """Where the launcher keeps `uri` in the pod, or None for a path that is used as it is
    (local, mounted)."""
    for scheme, folder in LAUNCHER_PATHS.items():
        if uri.startswith(scheme):
            return f"/{folder}/{uri[len(scheme):]}"
    return None


def _is_tfx_type(artifact_type: pipeline_spec_pb2.ArtifactTypeSchema) -> bool:
    kind = artifact_type.WhichOneof("kind")
    if kind == "instance_schema":
        return "title: tfx." in artifact_type.instance_schema
    return kind == "schema_title" and artifact_type.schema_title.startswith("tfx.")


def restore_input_types(executor_input: pipeline_spec_pb2.ExecutorInput,
                        inputs_spec: Optional[pipeline_spec_pb2.ComponentInputsSpec]) -> None:
    """Gives every input artifact without a TFX type the type its component declares.

    Raises:
      ExecutorInputError: when an artifact has no TFX type and the spec declares none.
    """
    declared = inputs_spec.artifacts if inputs_spec else {}
    for name, artifacts in executor_input.inputs.artifacts.items():
        for artifact in artifacts.artifacts:
            if _is_tfx_type(artifact.type):
                continue
            if name not in declared:
                raise ExecutorInputError(
                    f"input artifact {name!r} has no TFX type and the command has no "
                    "--json_serialized_inputs_spec_args declaring it: recompile the pipeline "
                    "with `finetune compile` (it passes the input definitions)")
            artifact.type.CopyFrom(declared[name].artifact_type)


def localize(executor_input: pipeline_spec_pb2.ExecutorInput) -> Dict[str, str]:
    """Points every artifact at its launcher path; returns {local path: remote URI}."""
    remote_of = {}
    for artifact_lists in (executor_input.inputs.artifacts, executor_input.outputs.artifacts):
        for artifacts in artifact_lists.values():
            for artifact in artifacts.artifacts:
                path = local_path(artifact.uri)
                if path:
                    remote_of[path] = artifact.uri
                    artifact.uri = path
    return remote_of


def run(executor_class_path: str, executor_input: pipeline_spec_pb2.ExecutorInput,
        inputs_spec: Optional[pipeline_spec_pb2.ComponentInputsSpec],
        beam_args: Sequence[str]) -> pipeline_spec_pb2.ExecutorOutput:
    """Runs the executor on `executor_input`; returns and writes its executor output.

    Raises:
      ExecutorInputError: see `restore_input_types`; also when the task declares output
        parameters (no component of this pipeline has any).
    """
    if executor_input.outputs.parameters:
        raise ExecutorInputError("output parameters are not supported: the components of this "
                                 "pipeline pass artifacts only")
    restore_input_types(executor_input, inputs_spec)
    for name in LAUNCHER_OUTPUTS:
        if name in executor_input.outputs.artifacts:
            del executor_input.outputs.artifacts[name]
    remote_of = localize(executor_input)
    output_file = executor_input.outputs.output_file
    if fileio.exists(output_file):
        # Vertex AI ran the ExampleGen's driver hook first: it wrote the exec properties it
        # resolved (span, version, input fingerprint) to this file.
        resolved = pipeline_spec_pb2.ExecutorOutput()
        with fileio.open(output_file, "rb") as f:
            json_format.Parse(f.read(), resolved, ignore_unknown_fields=True)
        for key, value in resolved.parameter_values.items():
            executor_input.inputs.parameter_values[key].CopyFrom(value)
    name_from_id: Dict[int, str] = {}
    inputs = tfx_utils.parse_raw_artifact_dict(executor_input.inputs.artifacts, name_from_id)
    outputs = tfx_utils.parse_raw_artifact_dict(executor_input.outputs.artifacts, name_from_id)
    exec_properties = tfx_utils.parse_execution_properties(
        executor_input.inputs.parameter_values, executor_input.inputs.parameters, inputs_spec)
    executor_cls = import_utils.import_class_by_path(executor_class_path)
    task_root = os.path.dirname(output_file)
    context_args = dict(unique_id=os.path.basename(task_root),
                        tmp_dir=os.path.join(task_root, ".temp"))
    if issubclass(executor_cls, base_beam_executor.BaseBeamExecutor):
        context = base_beam_executor.BaseBeamExecutor.Context(
            beam_pipeline_args=list(beam_args), **context_args)
    else:
        context = base_executor.BaseExecutor.Context(extra_flags=list(beam_args),
                                                     **context_args)
    logging.info("Executor %s: inputs %s, outputs %s, exec properties %s",
                 executor_class_path, inputs, outputs, exec_properties)
    executor_cls(context).Do(inputs, outputs, exec_properties)

    outputs_utils.tag_output_artifacts_with_version(outputs)
    if (issubclass(executor_cls, evaluator_executor.Executor)
            and standard_component_specs.BLESSING_KEY in outputs):
        tfx_utils.refactor_model_blessing(artifact_utils.get_single_instance(
            outputs[standard_component_specs.BLESSING_KEY]), name_from_id)
    for artifacts in outputs.values():
        for artifact in artifacts:
            artifact.uri = remote_of.get(artifact.uri, artifact.uri)
    executor_output = pipeline_spec_pb2.ExecutorOutput()
    for key, value in tfx_utils.translate_executor_output(outputs, name_from_id).items():
        executor_output.artifacts[key].CopyFrom(value)
    fileio.makedirs(os.path.dirname(output_file))
    with fileio.open(output_file, "wb") as f:
        f.write(json_format.MessageToJson(executor_output))
    return executor_output


def _parse_args(argv: List[str]):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor_class_path", required=True)
    parser.add_argument("--json_serialized_invocation_args", required=True)
    parser.add_argument("--json_serialized_inputs_spec_args")
    return parser.parse_known_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    """Parses TFX's container arguments (the rest are Beam's), runs, and exits the process."""
    args, beam_args = _parse_args(sys.argv[1:] if argv is None else argv)
    logging.set_verbosity(logging.INFO)
    executor_input = pipeline_spec_pb2.ExecutorInput()
    # A newer backend may send fields this pinned proto does not know yet, as TFX allows.
    json_format.Parse(args.json_serialized_invocation_args, executor_input,
                      ignore_unknown_fields=True)
    inputs_spec = None
    if args.json_serialized_inputs_spec_args:
        inputs_spec = pipeline_spec_pb2.ComponentInputsSpec()
        json_format.Parse(args.json_serialized_inputs_spec_args, inputs_spec,
                          ignore_unknown_fields=True)
    run(args.executor_class_path, executor_input, inputs_spec, beam_args)
    logging.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # pylint: disable=protected-access


if __name__ == "__main__":
    main()
