"""The Evaluator's executor hands the served model to TFX's Evaluator (and so to TFMA) as the
baseline: which served version, in the layout TFX reads, cleaned up afterwards.

TFX's own `Executor.Do` runs for real up to the point where it has built one TFMA model per
model spec (`tfma.default_eval_shared_model`, recorded here); it is stopped before Beam
evaluates anything, so no real SavedModel is needed.
"""
import os

import pytest
import tensorflow_model_analysis as tfma
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import json_utils, proto_utils

from tfx_finetune.components import published
from tfx_finetune.components.digest import directory_digest
from tfx_finetune.components.evaluator import BASELINE_MODEL_PROPERTY, executor
from tfx_finetune.pipeline.config import PipelineConfig
from tfx_finetune.pipeline.pipeline import eval_config


class _StopBeforeBeam(Exception):
    """Raised where TFX's Evaluator would start evaluating with Beam."""


def _saved_model(path, content):
    """A stand-in SavedModel directory whose content (and so digest) is `content`."""
    os.makedirs(os.path.join(path, "variables"), exist_ok=True)
    with open(os.path.join(path, published.SAVED_MODEL_FILE), "w") as f:
        f.write(content)
    with open(os.path.join(path, "variables", "variables.index"), "w") as f:
        f.write(content + " variables")
    return str(path)


def _artifact(cls, uri):
    artifact = cls()
    artifact.uri = str(uri)
    return artifact


@pytest.fixture
def workspace(tmp_path):
    """A candidate model (a Trainer output) and a serving base directory holding an older
    version and, newer, a copy of the candidate (as after an unchanged re-run)."""
    candidate_uri = tmp_path / "Trainer" / "model" / "7"
    _saved_model(candidate_uri / "Format-Serving", "candidate")
    base = tmp_path / "serving" / "tiny"
    older = _saved_model(base / "100", "served model")
    _saved_model(base / "200", "candidate")
    return {"tmp": tmp_path, "candidate_uri": str(candidate_uri), "base": str(base),
            "older": older}


def _evaluate(workspace, monkeypatch, **exec_properties):
    """Runs our Executor's `Do` with TFX's Evaluator under it, stopped before Beam.

    Returns:
      [(model name, model path, digest of that directory when TFX opened it)], one per model
      TFX's Evaluator handed to TFMA, and the executor's temporary directory.
    """
    handed = []

    def record(eval_saved_model_path, model_name, **unused):
        exists = os.path.isdir(eval_saved_model_path)
        handed.append((model_name, eval_saved_model_path,
                       directory_digest(eval_saved_model_path) if exists else None))
        return object()

    def stop(*unused, **unused_kwargs):
        raise _StopBeforeBeam()

    monkeypatch.setattr(tfma, "default_eval_shared_model", record)
    monkeypatch.setattr(tfma, "is_batched_input", stop)
    tmp = workspace["tmp"] / "executor_tmp"
    properties = {
        standard_component_specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(
            eval_config(PipelineConfig(min_accuracy=0.5, max_accuracy_drop=0.02))),
        standard_component_specs.EXAMPLE_SPLITS_KEY: json_utils.dumps(["test"]),
        executor.BASELINE_BASE_DIRECTORY_KEY: workspace["base"],
        **exec_properties,
    }
    inputs = {
        standard_component_specs.EXAMPLES_KEY: [
            _artifact(standard_artifacts.Examples, workspace["tmp"] / "examples")],
        standard_component_specs.MODEL_KEY: [
            _artifact(standard_artifacts.Model, workspace["candidate_uri"])],
    }
    outputs = {
        standard_component_specs.EVALUATION_KEY: [
            _artifact(standard_artifacts.ModelEvaluation, workspace["tmp"] / "evaluation")],
        standard_component_specs.BLESSING_KEY: [
            _artifact(standard_artifacts.ModelBlessing, workspace["tmp"] / "blessing")],
    }
    context = base_beam_executor.BaseBeamExecutor.Context(tmp_dir=str(tmp), unique_id="1")
    with pytest.raises(_StopBeforeBeam):
        executor.Executor(context).Do(inputs, outputs, properties)
    return handed, str(tmp)


def test_the_newest_other_served_version_is_tfmas_baseline(workspace, monkeypatch):
    """With no driver answer (Kubeflow runs no drivers), the executor finds the baseline
    itself: the newest served version whose content is not the candidate's. TFX's Evaluator
    must find that version's files where it reads a Model artifact (`<uri>/Format-Serving`),
    and the staged copy is removed afterwards, even when the evaluation fails."""
    handed, tmp = _evaluate(workspace, monkeypatch)

    names = [name for name, _, _ in handed]
    assert names == ["candidate", "baseline"], handed
    (_, candidate_path, _), (_, baseline_path, baseline_digest) = handed
    assert candidate_path == os.path.join(workspace["candidate_uri"], "Format-Serving")
    assert baseline_digest == directory_digest(workspace["older"]), (
        f"TFMA's baseline {baseline_path} is not a copy of the served version "
        f"{workspace['older']}")
    # Staged in the executor's temporary directory, never evaluated in place in the serving
    # directory (TF Serving reads it), and gone afterwards.
    assert baseline_path.startswith(tmp)
    assert not os.path.exists(baseline_path)
    assert published.versions(workspace["base"]) == [100, 200]
    assert directory_digest(workspace["older"]) != directory_digest(candidate_path)


def test_the_drivers_answer_is_the_baseline(workspace, monkeypatch):
    """The driver's answer is in the Evaluator's cache key: the executor blesses against that
    version, not against whatever it would find itself."""
    newer = _saved_model(os.path.join(workspace["base"], "300"), "a newer served model")
    assert published.baseline_model(
        workspace["base"], os.path.join(workspace["candidate_uri"], "Format-Serving")) == newer
    handed, _ = _evaluate(workspace, monkeypatch,
                          **{executor.BASELINE_MODEL_PATH_KEY: workspace["older"]})
    assert [name for name, _, _ in handed] == ["candidate", "baseline"]
    assert handed[1][2] == directory_digest(workspace["older"]) != directory_digest(newer)


@pytest.mark.parametrize("driver_answer", [published.NOTHING_EARLIER, None])
def test_no_baseline_when_nothing_else_is_served(workspace, monkeypatch, driver_answer):
    """A first run (the driver found nothing; or, with no driver, only the candidate's own
    content is served): TFMA gets the candidate alone, so the value threshold alone judges."""
    if driver_answer is None:  # no driver: the executor looks, and finds only the candidate
        os.rename(workspace["older"], os.path.join(workspace["base"], "retired"))
        properties = {}
    else:
        properties = {executor.BASELINE_MODEL_PATH_KEY: driver_answer}
    handed, _ = _evaluate(workspace, monkeypatch, **properties)
    assert [path for _, path, _ in handed] == [
        os.path.join(workspace["candidate_uri"], "Format-Serving")]


def test_the_blessing_names_the_served_baseline(workspace, monkeypatch):
    """The blessing records the served version it was judged against (the run summary's
    `had_baseline` reads it); TFX's own baseline id, meaningless for a staged copy, is not
    kept."""
    from tfx.components.evaluator import executor as tfx_evaluator_executor

    seen = {}

    def tfx_do(self, input_dict, output_dict, exec_properties):
        baseline = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY)
        seen["baseline"] = baseline
        blessing = output_dict[standard_component_specs.BLESSING_KEY][0]
        if baseline:  # as TFX's Evaluator does
            blessing.set_int_custom_property("baseline_model_id", baseline[0].id)

    monkeypatch.setattr(tfx_evaluator_executor.Executor, "Do", tfx_do)
    blessing = _artifact(standard_artifacts.ModelBlessing, workspace["tmp"] / "blessing")
    context = base_beam_executor.BaseBeamExecutor.Context(tmp_dir=str(workspace["tmp"] / "t"),
                                                 unique_id="1")
    executor.Executor(context).Do(
        {standard_component_specs.MODEL_KEY: [
            _artifact(standard_artifacts.Model, workspace["candidate_uri"])]},
        {standard_component_specs.BLESSING_KEY: [blessing]},
        {executor.BASELINE_BASE_DIRECTORY_KEY: workspace["base"]})
    assert len(seen["baseline"]) == 1
    assert blessing.get_string_custom_property(BASELINE_MODEL_PROPERTY) == workspace["older"]
    assert not blessing.has_custom_property("baseline_model_id")
