"""Anomaly checks of the data gate, in plain words.

Two sources: ExampleValidator's anomalies against the curated schema (TFDV), and a comparison
with the statistics of the previous accepted run (TFDV `validate_statistics` with
`previous_statistics`): new classes (a label domain built from the previous classes),
label-distribution drift (L-infinity), and a drop in the number of examples. A vanished class
is checked directly, because TFDV has no anomaly for it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Dict, List, Optional, Set

import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from tfx_finetune.components import features, published
from tfx_finetune.components.label_counts import STATS_FILE, class_counts, statistics_path
from tfx_finetune.components.splits import SPLIT_PREFIX, split_dir

ANOMALIES_FILE = "SchemaDiff.pb"

STATISTICS_KEY = "statistics"
SCHEMA_KEY = "schema"
ANOMALIES_KEY = "anomalies"
ACCEPTED_STATISTICS_KEY = "accepted_statistics"
MAX_LABEL_DRIFT_KEY = "max_label_drift"
MIN_EXAMPLE_COUNT_RATIO_KEY = "min_example_count_ratio"
ACCEPT_DATA_CHANGES_KEY = "accept_data_changes"
ACCEPTED_STATISTICS_DIR_KEY = "accepted_statistics_dir"
PREVIOUS_STATISTICS_KEY = "previous_statistics"


class DataValidationError(RuntimeError):
    """The data has anomalies; the message lists them and says how to proceed."""


@dataclasses.dataclass(frozen=True)
class Finding:
    """One anomaly: `kind` is "schema" (fix the data or the schema) or "change" (acceptable)."""

    kind: str
    split: str
    message: str


def _splits(uri: str, file_name: str) -> List[str]:
    """Split names with `file_name` under an artifact URI (local or gs://…)."""
    if not tf.io.gfile.isdir(uri):
        return []
    names = [d.rstrip("/") for d in tf.io.gfile.listdir(uri)]
    return sorted(d[len(SPLIT_PREFIX):] for d in names if d.startswith(SPLIT_PREFIX)
                  and tf.io.gfile.exists(os.path.join(uri, d, file_name)))


def load_statistics(uri: str, split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    return tfdv.load_stats_binary(statistics_path(uri, split))


# The anomalies a comparison with the previous run adds; the rest repeat ExampleValidator's.
_CHANGE_TYPES = frozenset({anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
                           anomalies_pb2.AnomalyInfo.COMPARATOR_LOW_NUM_EXAMPLES})


def _describe(anomalies: anomalies_pb2.Anomalies, only_changes: bool = False) -> List[str]:
    infos = sorted((f"feature '{name}'", info) for name, info in anomalies.anomaly_info.items())
    if anomalies.HasField("dataset_anomaly_info"):
        infos.append(("dataset", anomalies.dataset_anomaly_info))
    messages = []
    for where, info in infos:
        if only_changes and not {r.type for r in info.reason} & _CHANGE_TYPES:
            continue
        messages.append(f"{where}: {info.short_description} ({info.description})")
    return messages


def schema_findings(anomalies_uri: str) -> List[Finding]:
    """ExampleValidator's anomalies, per split."""
    findings = []
    for split in _splits(anomalies_uri, ANOMALIES_FILE):
        anomalies = anomalies_pb2.Anomalies()
        with tf.io.gfile.GFile(os.path.join(split_dir(anomalies_uri, split), ANOMALIES_FILE),
                               "rb") as f:
            anomalies.ParseFromString(f.read())
        findings += [Finding("schema", split, m) for m in _describe(anomalies)]
    return findings


def compare_with_previous(current: statistics_pb2.DatasetFeatureStatisticsList,
                          previous: statistics_pb2.DatasetFeatureStatisticsList,
                          schema: schema_pb2.Schema, split: str, max_label_drift: float,
                          min_example_count_ratio: float) -> List[Finding]:
    """Changes of one split against the previous accepted run, found by TFDV."""
    previous_classes = set(class_counts(previous))
    comparison_schema = schema_pb2.Schema()
    comparison_schema.CopyFrom(schema)
    label = tfdv.get_feature(comparison_schema, features.LABEL_KEY)
    label.ClearField("domain_info")
    label.string_domain.value.extend(sorted(previous_classes))
    label.drift_comparator.infinity_norm.threshold = max_label_drift
    comparison_schema.dataset_constraints.num_examples_drift_comparator.min_fraction_threshold = (
        min_example_count_ratio)
    anomalies = tfdv.validate_statistics(current, comparison_schema,
                                         previous_statistics=previous)
    findings = [Finding("change", split, m) for m in _describe(anomalies, only_changes=True)]
    new = sorted(set(class_counts(current)) - previous_classes)
    if new:
        findings.insert(0, Finding("change", split, "new class(es) not in the previous run: "
                                   + ", ".join(new)))
    vanished: Set[str] = previous_classes - set(class_counts(current))
    if vanished:
        findings.insert(0, Finding("change", split, "class(es) of the previous run now "
                                   "missing: " + ", ".join(sorted(vanished))))
    return findings


def load_schema(schema_uri: str) -> schema_pb2.Schema:
    return tfdv.load_schema_text(os.path.join(schema_uri, "schema.pbtxt"))


def gate(statistics_uri: str, schema_uri: str, anomalies_uri: str,
         previous_statistics_uri: Optional[str], max_label_drift: float,
         min_example_count_ratio: float, accept_changes: bool) -> List[Finding]:
    """Checks everything; returns the accepted findings.

    Raises:
      DataValidationError: listing every blocking finding, with what to do about each kind.
    """
    findings = schema_findings(anomalies_uri)
    if previous_statistics_uri:
        schema = load_schema(schema_uri)
        for split in _splits(statistics_uri, STATS_FILE):
            if split in _splits(previous_statistics_uri, STATS_FILE):
                findings += compare_with_previous(
                    load_statistics(statistics_uri, split),
                    load_statistics(previous_statistics_uri, split), schema, split,
                    max_label_drift, min_example_count_ratio)
    blocking = [f for f in findings if f.kind == "schema" or not accept_changes]
    if blocking:
        lines = [f"  [{f.split}] {f.message}" for f in blocking]
        advice = []
        if any(f.kind == "schema" for f in blocking):
            advice.append("schema anomalies: fix the data, or update the curated schema "
                          "(see schemas/README.md)")
        if any(f.kind == "change" for f in blocking):
            advice.append("changes since the previous accepted run: if intended, re-run with "
                          "--accept-data-changes (recorded in the run)")
        raise DataValidationError(
            "the data gate stopped the run before Transform and Trainer:\n"
            + "\n".join(lines) + "\n" + "\n".join(advice))
    return findings


class Executor(base_executor.BaseExecutor):
    """Runs `gate` against the previous accepted statistics, then publishes the accepted ones.

    `accepted_statistics` (a copy of the input statistics) records what the gate compared
    with (`compared_with`), the changes it accepted (`accepted_changes`) and where the
    accepted statistics were published for the next run (`published_to`).
    """

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        statistics = artifact_utils.get_single_instance(input_dict[STATISTICS_KEY])
        store = exec_properties[ACCEPTED_STATISTICS_DIR_KEY]
        previous = exec_properties.get(PREVIOUS_STATISTICS_KEY) or (
            published.previous_statistics(store, statistics.uri) or published.NOTHING_EARLIER)
        if previous == published.NOTHING_EARLIER:
            previous = None
            logging.info("data gate: no previous accepted run, nothing to compare (first run)")
        accepted = gate(
            statistics.uri, artifact_utils.get_single_uri(input_dict[SCHEMA_KEY]),
            artifact_utils.get_single_uri(input_dict[ANOMALIES_KEY]), previous,
            float(exec_properties[MAX_LABEL_DRIFT_KEY]),
            float(exec_properties[MIN_EXAMPLE_COUNT_RATIO_KEY]),
            bool(exec_properties[ACCEPT_DATA_CHANGES_KEY]))
        for finding in accepted:
            logging.warning("data gate: accepted change [%s] %s", finding.split, finding.message)
        changes = [f"[{f.split}] {f.message}" for f in accepted]
        publication = published.accept_statistics(
            statistics.uri, store, {"statistics": statistics.uri, "accepted_changes": changes})
        output = artifact_utils.get_single_instance(output_dict[ACCEPTED_STATISTICS_KEY])
        io_utils.copy_dir(statistics.uri, output.uri)
        output.split_names = statistics.split_names
        output.set_string_custom_property("compared_with", previous or "nothing: first run")
        output.set_string_custom_property("accepted_changes", json.dumps(changes))
        output.set_string_custom_property("published_to", publication.path)
