"""Interrupted and partial re-runs of the real pipeline (issue #8).

Run 1 publishes a first version in-process. Run 2 is `finetune run` with only the phase-2
learning rate changed, SIGKILLed once its Trainer is training. Run 3 is that changed config
again: it must reuse everything upstream of the Trainer, re-run the Trainer and what follows,
and publish exactly one new version, built by its own Trainer execution.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading

import ml_metadata as mlmd
import pytest
import tensorflow as tf
import yaml
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata
from tfx.utils import path_utils

from imagefolders import write_folder
from tfx_finetune.commands import run
from tfx_finetune.components.digest import directory_digest
from tfx_finetune.components.published import TEMP_PREFIX
from tfx_finetune.components.published import versions as published_versions
from tfx_finetune.pipeline import config as config_lib, local_runner

# A real pipeline run: the slow tier (`pytest -m 'not slow'` skips it).
pytestmark = pytest.mark.slow

PHASE2_LEARNING_RATE = 3e-4  # run 1 uses the config's, phase-1 rate / 100 = 1e-5
UPSTREAM = ("ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
            "DataGate", "Transform")
DOWNSTREAM = ("Trainer", "Evaluator", "ServingCheck", "AtomicPusher")
# Keras fit(verbose=2) prints "Epoch 1/20" as the first epoch begins.
EPOCH_BEGINS = re.compile(r"^Epoch 1/\d+$")
# Generous bound on the killed run reaching its Trainer's first epoch.
CLI_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = write_folder(root / "data", classes=(0, 1, 2), per_class=30)
    # Blessing must not hinge on luck: any accuracy above 0.01 passes, and any drop against
    # the first version is accepted; a few epochs are enough.
    fields = dict(data_dir=data, workspace=str(root / "workspace"), model_name="tiny",
                  weights="none", image_size=32, head_units=16, batch_size=16,
                  phase1_epochs=3, early_stopping_patience=3, phase2_epochs=1,
                  min_accuracy=0.01, max_accuracy_drop=0.99,
                  # A constant rate: the history's phase-2 rate then names the run.
                  recipe="seed")
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(fields))
    return str(path)


@pytest.fixture(scope="module")
def first_run(config_file):
    config = config_lib.make_config(config_file=config_file)
    return config, run.run(config)


def _finetune_run(config_file, *flags):
    """Starts `finetune run --verbose` (Keras epoch lines on the console) with stdout and
    stderr merged into one pipe, read line by line."""
    finetune = os.path.join(os.path.dirname(sys.executable), "finetune")
    return subprocess.Popen(
        [finetune, "run", "--verbose", "--config", config_file, *flags], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1,
        cwd=os.path.dirname(config_file))


@pytest.fixture(scope="module")
def killed_run(config_file, first_run):
    """Run 2 through the CLI, killed as its Trainer's first epoch begins.

    Returns:
      The lines the run printed and its exit code.
    """
    process = _finetune_run(config_file, "--phase2-learning-rate", str(PHASE2_LEARNING_RATE))
    watchdog = threading.Timer(CLI_TIMEOUT_S, process.kill)
    watchdog.start()
    lines, training = [], False
    try:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.rstrip().endswith("] Trainer started"):
                training = True
            elif training and EPOCH_BEGINS.match(line):
                process.send_signal(signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
        returncode = process.wait(60)
        process.stdout.close()
    assert training and EPOCH_BEGINS.match(lines[-1]), (
        "the run never reached a Trainer epoch:\n" + "\n".join(lines[-40:]))
    return lines, returncode


@pytest.fixture(scope="module")
def resumed_run(config_file, killed_run):
    config = config_lib.make_config({"phase2_learning_rate": PHASE2_LEARNING_RATE}, config_file)
    return config, run.run(config)


def _store(config):
    return mlmd.MetadataStore(
        metadata.sqlite_metadata_connection_config(os.path.abspath(config.metadata_path)))


def _trainer_executions(config):
    store = _store(config)
    [node] = [c for c in store.get_contexts_by_type("node") if c.name.endswith(".Trainer")]
    return store, sorted(store.get_executions_by_context(node.id), key=lambda e: e.id)


def _output_uris(store, execution_id):
    """{output key: [artifact URI, ...]} of one execution."""
    events = [e for e in store.get_events_by_execution_ids([execution_id])
              if e.type == metadata_store_pb2.Event.OUTPUT]
    uris = {a.id: a.uri for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    result = {}
    for event in events:
        result.setdefault(event.path.steps[0].key, []).append(uris[event.artifact_id])
    return result


def test_killed_run_died_in_the_trainer_and_published_nothing(first_run, killed_run):
    config, first = first_run
    lines, returncode = killed_run
    assert returncode == -signal.SIGKILL, "\n".join(lines[-40:])
    # Everything before the Trainer came from run 1, the DataGate included: the statistics
    # it accepted then are this run's own, so it compares with what it compared with then.
    for node in UPSTREAM:
        assert any(re.search(rf"\] {node} finished in .* \(cached\)$", l) for l in lines), node
    assert published_versions(config.model_base_dir) == [int(os.path.basename(first.pushed_to))]
    assert not [n for n in os.listdir(config.model_base_dir) if n.startswith(TEMP_PREFIX)]
    _, executions = _trainer_executions(config)
    states = [e.last_known_state for e in executions]
    assert states == [metadata_store_pb2.Execution.COMPLETE,
                      metadata_store_pb2.Execution.RUNNING], states
    with local_runner.workspace_lock(config.workspace):  # raises WorkspaceBusyError if held
        pass


def test_rerun_reuses_upstream_and_reruns_the_trainer_and_what_follows(killed_run,
                                                                      resumed_run):
    _, summary = resumed_run
    states = {c.node_id: c.state for c in summary.components}
    for node in UPSTREAM:
        assert states[node] == "cached", states
    for node in DOWNSTREAM:
        assert states[node] == "complete", states


def test_rerun_publishes_exactly_one_new_version(first_run, killed_run, resumed_run):
    config, first = first_run
    _, summary = resumed_run
    assert summary.blessed and summary.had_baseline and summary.servable, summary
    assert summary.new_version
    old = int(os.path.basename(first.pushed_to))
    versions = published_versions(config.model_base_dir)
    assert len(versions) == 2 and versions[0] == old and versions[1] > old, versions
    assert summary.pushed_to == os.path.join(os.path.abspath(config.model_base_dir),
                                             str(versions[1]))
    assert sorted(os.listdir(config.model_base_dir)) == sorted(map(str, versions))


def test_published_model_is_the_completed_trainers_not_the_killed_ones(killed_run,
                                                                       resumed_run):
    config, summary = resumed_run
    store, executions = _trainer_executions(config)
    assert len(executions) == 3
    killed, completed = executions[1], executions[2]
    assert killed.last_known_state == metadata_store_pb2.Execution.RUNNING
    assert completed.last_known_state == metadata_store_pb2.Execution.COMPLETE
    assert not _output_uris(store, killed.id)  # the killed execution published nothing
    # What it had written (TensorBoard logs) stays in its own execution's directory.
    leftovers = os.path.join(os.path.abspath(config.pipeline_root), "Trainer", "model_run",
                             str(killed.id))
    assert os.listdir(leftovers)
    outputs = _output_uris(store, completed.id)
    assert summary.model_dir == path_utils.serving_model_path(outputs["model"][0])
    assert os.path.dirname(summary.history_path) == outputs["model_run"][0] != leftovers
    assert directory_digest(summary.pushed_to) == directory_digest(summary.model_dir)
    with open(summary.history_path) as f:
        phase2 = json.load(f)["phase2"]
    assert phase2["learning_rate"] == [pytest.approx(PHASE2_LEARNING_RATE)]
    loaded = tf.saved_model.load(summary.pushed_to)
    assert "serving_default" in loaded.signatures
