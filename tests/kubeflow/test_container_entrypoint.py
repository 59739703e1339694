"""The first pod of the compiled pipeline, run here: TFX's Kubeflow v2 container commands for the
image ExampleGen, with exactly the command, arguments and parameters the spec gives it."""
import glob
import json
import os
import subprocess
import sys

import tensorflow as tf
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def executor_input(compiled, task, outputs_root):
    """What the KFP launcher substitutes for `{{$}}`: the task's constant parameters and a
    fresh URI for each output artifact."""
    spec = compiled["spec"]
    result = pipeline_spec_pb2.ExecutorInput()
    for name, parameter in spec.root.dag.tasks[task].inputs.parameters.items():
        result.inputs.parameters[name].CopyFrom(parameter.runtime_value.constant_value)
    for i, (name, output) in enumerate(
            spec.components[task].output_definitions.artifacts.items()):
        artifact = result.outputs.artifacts[name].artifacts.add()
        artifact.name = f"projects/p/locations/l/metadataStores/default/artifacts/{i + 1}"
        artifact.uri = os.path.join(outputs_root, name)
        artifact.type.CopyFrom(output.artifact_type)
    result.outputs.output_file = os.path.join(outputs_root, "executor_output.json")
    return result


def run_pod_command(command, args, invocation):
    """Runs a container command as the pod would, from the image's working directory."""
    argv = [sys.executable if part == "python" else part for part in command]
    argv += [invocation if arg == "{{$}}" else arg for arg in args]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_example_gen_pod_commands_write_the_splits(default_compiled, tmp_path):
    compiled = default_compiled
    (task,) = [t for t in compiled["spec"].root.dag.tasks if "input_base" in
               compiled["spec"].root.dag.tasks[t].inputs.parameters]
    label = compiled["spec"].components[task].executor_label
    container = compiled["deployment"].executors[label].container
    invocation = json_format.MessageToJson(executor_input(compiled, task, str(tmp_path)))

    # The driver (pre-cache-check hook) resolves the input fingerprint, then the executor runs.
    hook = container.lifecycle.pre_cache_check
    run_pod_command(hook.command, hook.args, invocation)
    run_pod_command(container.command, container.args, invocation)

    output = pipeline_spec_pb2.ExecutorOutput()
    with open(tmp_path / "executor_output.json", encoding="utf-8") as f:
        json_format.Parse(f.read(), output, ignore_unknown_fields=False)
    (examples,) = output.artifacts["examples"].artifacts
    assert examples.uri == str(tmp_path / "examples")
    assert json.loads(examples.metadata["split_names"]) == ["train", "eval", "test"]
    counts = {}
    for split in ("train", "eval", "test"):
        files = glob.glob(str(tmp_path / "examples" / f"Split-{split}" / "*.gz"))
        counts[split] = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    # The session's image folder holds 2 classes × 6 images; every one is decoded and written.
    assert sum(counts.values()) == 12
    assert counts["train"] > 0
