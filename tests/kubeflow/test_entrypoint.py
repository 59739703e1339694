"""The container entrypoint's repairs of the open-source backend's executor input, one by one
(the whole pipeline through it: test_open_source_backend.py)."""
import pytest
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.components.base import base_executor

from tfx_finetune.kubeflow import entrypoint

EXAMPLES_SCHEMA = "title: tfx.Examples\ntype: object\n"


def _input(name, uri, schema=None, title=None):
    executor_input = pipeline_spec_pb2.ExecutorInput()
    artifact = executor_input.inputs.artifacts[name].artifacts.add(name="7", uri=uri)
    if schema is not None:
        artifact.type.instance_schema = schema
    if title is not None:
        artifact.type.schema_title = title
    return executor_input


def _spec(name, schema):
    spec = pipeline_spec_pb2.ComponentInputsSpec()
    spec.artifacts[name].artifact_type.instance_schema = schema
    return spec


@pytest.mark.parametrize("uri, expected", [
    ("minio://mlpipeline/root/x", "/minio/mlpipeline/root/x"),
    ("s3://bucket/root/x", "/s3/bucket/root/x"),
    ("gs://bucket/root/x", "/gcs/bucket/root/x"),
    ("/mnt/shared/x", None),
])
def test_local_paths_are_the_launchers(uri, expected):
    assert entrypoint.local_path(uri) == expected


@pytest.mark.parametrize("schema, title", [("", None), (None, "system.Dataset"),
                                           (None, None)])
def test_untyped_inputs_get_the_declared_type(schema, title):
    executor_input = _input("examples", "minio://b/e", schema, title)
    entrypoint.restore_input_types(executor_input, _spec("examples", EXAMPLES_SCHEMA))
    (artifact,) = executor_input.inputs.artifacts["examples"].artifacts
    assert artifact.type.instance_schema == EXAMPLES_SCHEMA


def test_typed_inputs_are_kept():
    executor_input = _input("examples", "gs://b/e", "title: tfx.Examples\nproperties: {}\n")
    entrypoint.restore_input_types(executor_input, _spec("examples", EXAMPLES_SCHEMA))
    assert executor_input.inputs.artifacts["examples"].artifacts[0].type.instance_schema == \
        "title: tfx.Examples\nproperties: {}\n"


def test_an_untyped_input_without_a_declaration_is_refused():
    with pytest.raises(entrypoint.ExecutorInputError, match="recompile the pipeline"):
        entrypoint.restore_input_types(_input("examples", "minio://b/e", ""), None)


def test_localize_maps_inputs_and_outputs_and_remembers_the_remote_uris():
    executor_input = _input("examples", "minio://b/run/ExampleGen/1/examples", "")
    executor_input.outputs.artifacts["statistics"].artifacts.add(
        name="statistics", uri="minio://b/run/StatisticsGen/2/statistics")
    remote_of = entrypoint.localize(executor_input)
    assert executor_input.inputs.artifacts["examples"].artifacts[0].uri == \
        "/minio/b/run/ExampleGen/1/examples"
    local = executor_input.outputs.artifacts["statistics"].artifacts[0].uri
    assert local == "/minio/b/run/StatisticsGen/2/statistics"
    assert remote_of[local] == "minio://b/run/StatisticsGen/2/statistics"


class RecordingExecutor(base_executor.BaseExecutor):
    """Records the output artifacts it is given."""

    outputs = None

    def Do(self, input_dict, output_dict, exec_properties):
        RecordingExecutor.outputs = output_dict


def test_the_launchers_executor_logs_output_is_left_to_the_launcher(tmp_path):
    """KFP >= 2.5 adds `executor-logs` (system.Artifact) to every task's outputs; TFX cannot
    import that type, so the executor never sees it and the executor output does not name it."""
    executor_input = pipeline_spec_pb2.ExecutorInput()
    outputs = executor_input.outputs
    statistics = outputs.artifacts["statistics"].artifacts.add(
        name="statistics", uri="minio://b/run/StatisticsGen/1/statistics")
    statistics.type.instance_schema = "title: tfx.ExampleStatistics\ntype: object\n"
    logs = outputs.artifacts["executor-logs"].artifacts.add(
        name="executor-logs", uri="minio://b/run/StatisticsGen/1/executor-logs")
    logs.type.schema_title = "system.Artifact"
    outputs.output_file = str(tmp_path / "output_metadata.json")
    executor_output = entrypoint.run(f"{__name__}.RecordingExecutor", executor_input, None, [])
    assert set(RecordingExecutor.outputs) == {"statistics"}
    assert set(executor_output.artifacts) == {"statistics"}
    (written,) = executor_output.artifacts["statistics"].artifacts
    assert written.uri == "minio://b/run/StatisticsGen/1/statistics"
    assert (tmp_path / "output_metadata.json").exists()
