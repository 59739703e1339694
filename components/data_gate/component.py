"""DataGate: fails the run on data anomalies, after ExampleValidator and before Transform."""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from tfx_finetune.components.data_gate import driver, executor


class DataGateSpec(ComponentSpec):
    """Inputs, output and parameters of the DataGate (keys in `executor`)."""

    PARAMETERS = {
        executor.MAX_LABEL_DRIFT_KEY: ExecutionParameter(type=float),
        executor.MIN_EXAMPLE_COUNT_RATIO_KEY: ExecutionParameter(type=float),
        executor.ACCEPT_DATA_CHANGES_KEY: ExecutionParameter(type=bool),
        executor.ACCEPTED_STATISTICS_DIR_KEY: ExecutionParameter(type=str),
        # Set by the driver where the orchestrator runs it (see `driver`).
        executor.PREVIOUS_STATISTICS_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
        executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
        executor.ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies),
    }
    OUTPUTS = {
        executor.ACCEPTED_STATISTICS_KEY: ChannelParameter(
            type=standard_artifacts.ExampleStatistics),
    }


class DataGate(base_component.BaseComponent):
    """Passes the data on only when it has no anomalies.

    Schema anomalies (ExampleValidator) always stop the run. Changes against the statistics
    the gate accepted last (published under `accepted_statistics_dir` by earlier runs) stop it
    unless `accept_data_changes`; accepted changes are recorded on `accepted_statistics` as
    the `accepted_changes` property. A first run has nothing to compare and says so. Once
    accepted, the statistics are published to `accepted_statistics_dir` for the next run.
    """

    SPEC_CLASS = DataGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
    DRIVER_CLASS = driver.PreviousStatisticsDriver

    def __init__(self, statistics: types.BaseChannel, schema: types.BaseChannel,
                 anomalies: types.BaseChannel, accepted_statistics_dir: str,
                 max_label_drift: float, min_example_count_ratio: float,
                 accept_data_changes: bool):
        super().__init__(spec=DataGateSpec(
            statistics=statistics, schema=schema, anomalies=anomalies,
            accepted_statistics_dir=accepted_statistics_dir, max_label_drift=max_label_drift,
            min_example_count_ratio=min_example_count_ratio,
            accept_data_changes=accept_data_changes,
            accepted_statistics=types.Channel(type=standard_artifacts.ExampleStatistics)))
