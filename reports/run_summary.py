"""The run summary: read back from ML Metadata and the artifacts of the latest pipeline run."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Dict, List, Optional, Tuple

from ml_metadata.proto import metadata_store_pb2

from tfx_finetune.components import history as history_lib
from tfx_finetune.components.evaluator import BASELINE_MODEL_PROPERTY
from tfx_finetune.components import image_example_gen
from tfx_finetune.components.properties import (BLESSED_KEY, DESTINATION_KEY, NEW_VERSION_KEY,
                                                PUSHED_KEY, REASON_KEY)
from tfx_finetune.components.tflite_check import EVALUATION_KEY, TFLiteEvaluation
from tfx_finetune.pipeline import metadata_store, nodes
from tfx_finetune.pipeline.config import PipelineConfig
from tfx_finetune.reports import tuning as tuning_lib
from tfx_finetune.reports.formatting import number

_STATES = {v: k.lower() for k, v in metadata_store_pb2.Execution.State.items()}
ACCURACY_METRIC = "sparse_categorical_accuracy"
BASELINE_MODEL_NAME = "baseline"  # tfma.constants.BASELINE_KEY, the name TFX gives the baseline


@dataclasses.dataclass
class TFLiteResult:
    """The run's TFLite model: what the TFLiteCheck measured and decided, and what the
    TFLitePusher published."""

    mode: str
    blessed: bool
    reason: str
    # None when the check judged without evaluating (the model was not blessed, or missing).
    evaluation: Optional[TFLiteEvaluation] = None
    pushed_to: Optional[str] = None
    new_version: bool = False

    @classmethod
    def from_dict(cls, values: dict) -> TFLiteResult:
        evaluation = values["evaluation"]
        return cls(**dict(values, evaluation=evaluation and TFLiteEvaluation(**evaluation)))


@dataclasses.dataclass
class ComponentRun:
    node_id: str
    state: str
    seconds: float


@dataclasses.dataclass
class RunSummary:
    run_id: str
    components: List[ComponentRun]
    ingestion: Optional[dict] = None
    phase1_val_accuracy: Optional[float] = None
    phase2_val_accuracy: Optional[float] = None
    test_accuracy: Optional[float] = None
    had_baseline: bool = False
    blessed: Optional[bool] = None
    servable: Optional[bool] = None
    serving_check: Optional[str] = None
    pushed_to: Optional[str] = None
    new_version: bool = False
    tflite: Optional[TFLiteResult] = None  # with `tflite` set in the config
    tuning: Optional[tuning_lib.Tuning] = None  # with `tuner_trials` set
    # Where the run's artifacts are, for the report and for users.
    examples_uri: Optional[str] = None
    statistics_uri: Optional[str] = None
    model_dir: Optional[str] = None
    history_path: Optional[str] = None
    evaluation_uri: Optional[str] = None
    report_path: Optional[str] = None
    model_card_path: Optional[str] = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, values: dict) -> "RunSummary":
        components = [ComponentRun(**c) for c in values["components"]]
        tflite = values.get("tflite") and TFLiteResult.from_dict(values["tflite"])
        tuned = values.get("tuning") and tuning_lib.Tuning(**values["tuning"])
        return cls(**dict(values, components=components, tflite=tflite, tuning=tuned))


def _outputs(store, execution_id: int) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    return artifacts(store, execution_id, metadata_store_pb2.Event.OUTPUT)


def artifacts(store, execution_id: int, event_type) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type == event_type]
    by_id = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    result: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    for event in events:
        # One event can bind an artifact to several keys (e.g. `model` and `baseline_model`).
        for step in event.path.steps:
            if step.key:
                result.setdefault(step.key, []).append(by_id[event.artifact_id])
    return result


def is_candidate_accuracy(key) -> bool:
    """The candidate's own accuracy (not the baseline's, not a difference to it)."""
    return (key.name == ACCURACY_METRIC and not key.is_diff
            and key.model_name != BASELINE_MODEL_NAME)


def _test_accuracy(evaluation_uri: str) -> Optional[float]:
    import tensorflow_model_analysis as tfma

    for slice_metrics in tfma.load_metrics(evaluation_uri):
        if slice_metrics.slice_key.single_slice_keys:
            continue  # only the overall slice
        for key_and_value in slice_metrics.metric_keys_and_values:
            if is_candidate_accuracy(key_and_value.key):
                return key_and_value.value.double_value.value
    return None


def _latest_run(store, config: PipelineConfig
                ) -> Tuple[metadata_store_pb2.Context, List[metadata_store_pb2.Execution]]:
    """The newest pipeline_run context of `config.pipeline_name` (one store can hold several
    pipelines, e.g. `finetune compare`'s) and its executions in order."""
    pipeline_context = store.get_context_by_type_and_name(metadata_store.PIPELINE_CONTEXT,
                                                          config.pipeline_name)
    if pipeline_context is not None:
        in_pipeline = {e.id for e in store.get_executions_by_context(pipeline_context.id)}
        for run in sorted(store.get_contexts_by_type(metadata_store.PIPELINE_RUN_CONTEXT),
                          key=lambda c: -c.id):
            executions = [e for e in store.get_executions_by_context(run.id)
                          if e.id in in_pipeline]
            if executions:
                return run, sorted(executions, key=lambda e: e.id)
    raise RuntimeError(f"no run of pipeline {config.pipeline_name!r} recorded in "
                       f"{config.metadata_path}")


def summarize(config: PipelineConfig) -> RunSummary:
    """Summarises the latest run of `config`'s pipeline recorded in its ML Metadata store."""
    store = metadata_store.open_store(config)
    run, executions = _latest_run(store, config)
    summary = RunSummary(run_id=run.name, components=[])
    node_of = {}
    for node in store.get_contexts_by_type(metadata_store.NODE_CONTEXT):
        for execution in store.get_executions_by_context(node.id):
            node_of[execution.id] = metadata_store.node_id(node)
    for execution in executions:
        node_id = node_of.get(execution.id, execution.type)
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        state = _STATES.get(execution.last_known_state, "unknown")
        summary.components.append(ComponentRun(node_id, state, seconds))
        if node_id in READERS:
            key, read = READERS[node_id]
            outputs = _outputs(store, execution.id)
            if key in outputs:
                read(summary, outputs, state == "cached", config)
    return summary


Outputs = Dict[str, List[metadata_store_pb2.Artifact]]


def _read_examples(summary: RunSummary, outputs: Outputs, cached: bool, config) -> None:
    summary.examples_uri = outputs[nodes.EXAMPLES][0].uri
    path = os.path.join(summary.examples_uri, image_example_gen.REPORT_DIR,
                        image_example_gen.SUMMARY_FILE)
    if os.path.exists(path):
        with open(path) as f:
            summary.ingestion = json.load(f)


def _read_statistics(summary: RunSummary, outputs: Outputs, cached: bool, config) -> None:
    summary.statistics_uri = outputs[nodes.STATISTICS][0].uri


def _read_model(summary: RunSummary, outputs: Outputs, cached: bool, config) -> None:
    from tfx.utils import path_utils

    summary.model_dir = path_utils.serving_model_path(outputs[nodes.MODEL][0].uri)
    summary.history_path = history_lib.history_path(outputs[nodes.MODEL_RUN][0].uri)
    history = history_lib.read(summary.history_path)
    if history:
        summary.phase1_val_accuracy = history_lib.best_val_accuracy(history, history_lib.PHASE1)
        summary.phase2_val_accuracy = history_lib.best_val_accuracy(history, history_lib.PHASE2)


def _read_evaluation(summary: RunSummary, outputs: Outputs, cached: bool, config) -> None:
    props = outputs[nodes.BLESSING][0].custom_properties
    summary.blessed = bool(props[BLESSED_KEY].int_value)
    summary.had_baseline = bool(props[BASELINE_MODEL_PROPERTY].string_value)
    summary.evaluation_uri = outputs[nodes.EVALUATION][0].uri
    summary.test_accuracy = _test_accuracy(summary.evaluation_uri)


def _read_serving_check(summary: RunSummary, outputs: Outputs, cached: bool, config) -> None:
    props = outputs[nodes.BLESSING][0].custom_properties
    summary.servable = bool(props[BLESSED_KEY].int_value)
    summary.serving_check = props[REASON_KEY].string_value


def _read_tflite_check(summary: RunSummary, outputs: Outputs, cached: bool, config) -> None:
    props = outputs[nodes.BLESSING][0].custom_properties
    summary.tflite = TFLiteResult(
        mode=config.tflite, blessed=bool(props[BLESSED_KEY].int_value),
        reason=props[REASON_KEY].string_value,
        evaluation=(TFLiteEvaluation.from_json(props[EVALUATION_KEY].string_value)
                    if EVALUATION_KEY in props else None))


def _read_tuner(summary: RunSummary, outputs: Outputs, cached: bool, config) -> None:
    summary.tuning = tuning_lib.read(outputs[nodes.TUNER_RESULTS][0].uri,
                                 outputs[nodes.BEST_HYPERPARAMETERS][0].uri, cached)


def _pushed(props) -> Tuple[Optional[str], bool]:
    """Where a pusher published and whether it made a new version (else None, False)."""
    if not props[PUSHED_KEY].int_value:
        return None, False
    return props[DESTINATION_KEY].string_value, bool(props[NEW_VERSION_KEY].int_value)


def _read_tflite_push(summary: RunSummary, outputs: Outputs, cached: bool, config) -> None:
    pushed_to, new_version = _pushed(outputs[nodes.PUSHED_TFLITE][0].custom_properties)
    if summary.tflite and pushed_to:
        # A cached pusher's output is the earlier run's: nothing was published now.
        summary.tflite.pushed_to = pushed_to
        summary.tflite.new_version = new_version and not cached


def _read_push(summary: RunSummary, outputs: Outputs, cached: bool, config) -> None:
    pushed_to, new_version = _pushed(outputs[nodes.PUSHED_MODEL][0].custom_properties)
    if pushed_to:
        summary.pushed_to, summary.new_version = pushed_to, new_version and not cached


# Node id -> (the output it needs, the function that reads it into the summary).
READERS: Dict[str, Tuple[str, Callable[[RunSummary, Outputs, bool, PipelineConfig], None]]] = {
    nodes.EXAMPLE_GEN: (nodes.EXAMPLES, _read_examples),
    nodes.STATISTICS_GEN: (nodes.STATISTICS, _read_statistics),
    nodes.TUNER: (nodes.TUNER_RESULTS, _read_tuner),
    nodes.TRAINER: (nodes.MODEL_RUN, _read_model),
    nodes.EVALUATOR: (nodes.BLESSING, _read_evaluation),
    nodes.SERVING_CHECK: (nodes.BLESSING, _read_serving_check),
    nodes.TFLITE_CHECK: (nodes.BLESSING, _read_tflite_check),
    nodes.TFLITE_PUSHER: (nodes.PUSHED_TFLITE, _read_tflite_push),
    nodes.PUSHER: (nodes.PUSHED_MODEL, _read_push),
}


def _ingestion_line(ingestion: Optional[dict]) -> str:
    if not ingestion:
        return "n/a"
    splits = ", ".join(f"{split} {sum(counts.values())}"
                       for split, counts in sorted(ingestion["per_split"].items()))
    return (f"{ingestion['accepted']} images in {len(ingestion['per_class'])} classes "
            f"({splits}); {ingestion['rejected']} rejected, {ingestion['skipped']} skipped "
            "(listed in the ExampleGen output, ingestion/rejects.jsonl)")


def _push_line(summary: RunSummary) -> str:
    if not summary.pushed_to:
        return "nothing pushed"
    if summary.new_version:
        return f"new version {summary.pushed_to}"
    return f"nothing new: identical to the serving version {summary.pushed_to}"


def tflite_text(tflite: TFLiteResult) -> str:
    """The TFLite model's evaluation and whether it was published, on one line."""
    text = f"{tflite.mode}: "
    evaluation = tflite.evaluation
    if evaluation:
        text += (f"accuracy {evaluation.accuracy:.4f} (SavedModel "
                 f"{evaluation.savedmodel_accuracy:.4f}), top-1 agreement "
                 f"{evaluation.top1_agreement:.4f}, {evaluation.size_bytes / 2**20:.2f} MiB, "
                 f"{evaluation.latency_ms:.2f} ms/image; ")
    if not tflite.blessed:
        return text + f"NOT published: {tflite.reason}"
    if not tflite.pushed_to:
        return text + "nothing published (the SavedModel was not pushed)"
    if tflite.new_version:
        return text + f"published {tflite.pushed_to}"
    return text + f"nothing new: identical to {tflite.pushed_to}"


def blessing_text(summary: RunSummary, config: PipelineConfig) -> str:
    """The blessing decision and the rule it was judged by."""
    if summary.blessed is None:
        return "not evaluated"
    verdict = "BLESSED" if summary.blessed else "NOT blessed"
    if summary.had_baseline:
        return (f"{verdict}: needs test accuracy >= {config.min_accuracy} and at most "
                f"{config.max_accuracy_drop} below the last blessed model")
    return (f"{verdict}: no earlier blessed model, so judged on the value threshold only "
            f"(test accuracy >= {config.min_accuracy})")


def format_summary(summary: RunSummary, config: PipelineConfig) -> str:
    """Human-readable summary printed at the end of a run."""
    blessing = blessing_text(summary, config)
    lines = [
        f"Run {summary.run_id}",
        f"  ingested: {_ingestion_line(summary.ingestion)}",
        f"  phase 1 (head only)     best val accuracy: {number(summary.phase1_val_accuracy)}",
        f"  phase 2 (top unfrozen)  best val accuracy: {number(summary.phase2_val_accuracy)}",
        f"  test accuracy: {number(summary.test_accuracy)}",
        f"  blessing: {blessing}",
        f"  serving check: {summary.serving_check or 'not run'}",
        f"  pushed: {_push_line(summary)}",
    ]
    if summary.tuning:
        lines.insert(2, f"  tuning: {tuning_lib.text(summary.tuning)}")
    if summary.tflite:
        lines.append(f"  tflite {tflite_text(summary.tflite)}")
    lines += [
        f"  report: {summary.report_path or 'not written'}",
        f"  model card: {summary.model_card_path or 'not written'}",
        "  component wall times:",
    ]
    lines += [f"    {c.node_id:<32} {c.state:<9} {c.seconds:7.1f} s" for c in summary.components]
    lines.append(f"    {'total':<32} {'':<9} {sum(c.seconds for c in summary.components):7.1f} s")
    return "\n".join(lines)
