"""The run summary: read back from ML Metadata and the artifacts of the latest pipeline run."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

from pipeline.config import PipelineConfig

_STATES = {v: k.lower() for k, v in metadata_store_pb2.Execution.State.items()}
ACCURACY_METRIC = "sparse_categorical_accuracy"


@dataclasses.dataclass
class ComponentRun:
    node_id: str
    state: str
    seconds: float


@dataclasses.dataclass
class RunSummary:
    run_id: str
    components: List[ComponentRun]
    phase1_val_accuracy: Optional[float] = None
    phase2_val_accuracy: Optional[float] = None
    test_accuracy: Optional[float] = None
    had_baseline: bool = False
    blessed: Optional[bool] = None
    servable: Optional[bool] = None
    serving_check: Optional[str] = None
    pushed_to: Optional[str] = None
    new_version: bool = False

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def _outputs(store, execution_id: int) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    return _artifacts(store, execution_id, metadata_store_pb2.Event.OUTPUT)


def _artifacts(store, execution_id: int, event_type) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type == event_type]
    by_id = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    result: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    for event in events:
        # One event can bind an artifact to several keys (e.g. `model` and `baseline_model`).
        for step in event.path.steps:
            if step.key:
                result.setdefault(step.key, []).append(by_id[event.artifact_id])
    return result


def _best_val_accuracy(history: dict) -> Optional[float]:
    values = history.get("val_accuracy") or []
    return max(values) if values else None


def _test_accuracy(evaluation_uri: str) -> Optional[float]:
    import tensorflow_model_analysis as tfma

    for slice_metrics in tfma.load_metrics(evaluation_uri):
        if slice_metrics.slice_key.single_slice_keys:
            continue  # only the overall slice
        for key_and_value in slice_metrics.metric_keys_and_values:
            if key_and_value.key.name == ACCURACY_METRIC and not key_and_value.key.is_diff:
                return key_and_value.value.double_value.value
    return None


def summarize(config: PipelineConfig) -> RunSummary:
    """Summarises the latest run of `config`'s pipeline recorded in its ML Metadata store."""
    store = mlmd.MetadataStore(
        metadata.sqlite_metadata_connection_config(os.path.abspath(config.metadata_path)))
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        raise RuntimeError(f"no pipeline run recorded in {config.metadata_path}")
    run = max(runs, key=lambda c: c.id)
    summary = RunSummary(run_id=run.name, components=[])
    node_of = {}
    for node in store.get_contexts_by_type("node"):
        for execution in store.get_executions_by_context(node.id):
            node_of[execution.id] = node.name.split(".", 1)[-1]
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        node_id = node_of.get(execution.id, execution.type)
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        summary.components.append(
            ComponentRun(node_id, _STATES.get(execution.last_known_state, "unknown"), seconds))
        outputs = _outputs(store, execution.id)
        if node_id == "Trainer" and "model_run" in outputs:
            path = os.path.join(outputs["model_run"][0].uri, "history.json")
            if os.path.exists(path):
                with open(path) as f:
                    history = json.load(f)
                summary.phase1_val_accuracy = _best_val_accuracy(history.get("phase1", {}))
                summary.phase2_val_accuracy = _best_val_accuracy(history.get("phase2", {}))
        elif node_id == "Evaluator" and "blessing" in outputs:
            summary.blessed = bool(outputs["blessing"][0].custom_properties["blessed"].int_value)
            summary.test_accuracy = _test_accuracy(outputs["evaluation"][0].uri)
            inputs = _artifacts(store, execution.id, metadata_store_pb2.Event.INPUT)
            summary.had_baseline = bool(inputs.get("baseline_model"))
        elif node_id == "ServingCheck" and "blessing" in outputs:
            props = outputs["blessing"][0].custom_properties
            summary.servable = bool(props["blessed"].int_value)
            summary.serving_check = props["reason"].string_value
        elif node_id == "AtomicPusher" and "pushed_model" in outputs:
            props = outputs["pushed_model"][0].custom_properties
            if props["pushed"].int_value:
                summary.pushed_to = props["pushed_destination"].string_value
                summary.new_version = bool(props["new_version"].int_value)
    return summary


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _push_line(summary: RunSummary) -> str:
    if not summary.pushed_to:
        return "nothing pushed"
    if summary.new_version:
        return f"new version {summary.pushed_to}"
    return f"nothing new: identical to the serving version {summary.pushed_to}"


def format_summary(summary: RunSummary, config: PipelineConfig) -> str:
    """Human-readable summary printed at the end of a run."""
    if summary.blessed is None:
        blessing = "not evaluated"
    elif summary.had_baseline:
        blessing = (f"{'BLESSED' if summary.blessed else 'NOT blessed'} (accuracy >= "
                    f"{config.min_accuracy} and at most {config.max_accuracy_drop} below the "
                    "last blessed model)")
    else:
        blessing = (f"{'BLESSED' if summary.blessed else 'NOT blessed'} (first blessing: no "
                    f"earlier blessed model, judged on the value threshold accuracy >= "
                    f"{config.min_accuracy} only)")
    lines = [
        f"Run {summary.run_id}",
        f"  phase 1 (head only)     best val accuracy: {_fmt(summary.phase1_val_accuracy)}",
        f"  phase 2 (top unfrozen)  best val accuracy: {_fmt(summary.phase2_val_accuracy)}",
        f"  test accuracy: {_fmt(summary.test_accuracy)}",
        f"  blessing: {blessing}",
        f"  serving check: {summary.serving_check or 'not run'}",
        f"  pushed: {_push_line(summary)}",
        "  component wall times:",
    ]
    lines += [f"    {c.node_id:<32} {c.state:<9} {c.seconds:7.1f} s" for c in summary.components]
    lines.append(f"    {'total':<32} {'':<9} {sum(c.seconds for c in summary.components):7.1f} s")
    return "\n".join(lines)
