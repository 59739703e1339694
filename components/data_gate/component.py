"""DataGate: fails the run on data anomalies, after ExampleValidator and before Transform."""
import json
import logging

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from components.data_gate import executor

# Set on `accepted_statistics`: the id of the StatisticsGen artifact that was accepted (the
# accepted artifact is a copy, with an id of its own).
SOURCE_STATISTICS_ID = "source_statistics_id"


@component
def DataGate(
        statistics: InputArtifact[standard_artifacts.ExampleStatistics],
        schema: InputArtifact[standard_artifacts.Schema],
        anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
        accepted_statistics: OutputArtifact[standard_artifacts.ExampleStatistics],
        previous_statistics: InputArtifact[standard_artifacts.ExampleStatistics] = None,
        max_label_drift: Parameter[float] = 0.1,
        min_example_count_ratio: Parameter[float] = 0.5,
        accept_data_changes: Parameter[bool] = False):
    """Passes the data on only when it has no anomalies.

    Schema anomalies (ExampleValidator) always stop the run. Changes against
    `previous_statistics` (the `accepted_statistics` of the last run that passed) stop it
    unless `accept_data_changes`; accepted changes are recorded on `accepted_statistics` as
    the `accepted_changes` property. A first run has nothing to compare and says so.
    """
    previous_uri = previous_statistics.uri if previous_statistics else None
    if previous_uri is None:
        logging.info("data gate: no previous accepted run, nothing to compare (first run)")
    accepted = executor.gate(statistics.uri, schema.uri, anomalies.uri, previous_uri,
                             max_label_drift, min_example_count_ratio, accept_data_changes)
    for finding in accepted:
        logging.warning("data gate: accepted change [%s] %s", finding.split, finding.message)
    io_utils.copy_dir(statistics.uri, accepted_statistics.uri)
    accepted_statistics.split_names = statistics.split_names
    accepted_statistics.set_int_custom_property(SOURCE_STATISTICS_ID, statistics.id)
    accepted_statistics.set_string_custom_property(
        "compared_with", previous_uri or "nothing: first run")
    accepted_statistics.set_string_custom_property(
        "accepted_changes", json.dumps([f"[{f.split}] {f.message}" for f in accepted]))
