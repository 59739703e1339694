"""Runs `create_pipeline` locally: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata."""
from __future__ import annotations

import os
from typing import List, Optional

from tfx import v1 as tfx

from pipeline import report
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline


def run(config: PipelineConfig, beam_pipeline_args: Optional[List[str]] = None) -> report.RunSummary:
    """Runs the pipeline to completion (cached components are reused) and summarises it.

    Beam runs in-process (DirectRunner, in-memory mode), which suits laptop-sized data; pass
    e.g. ["--direct_running_mode=multi_processing", "--direct_num_workers=4"] for more.
    """
    os.makedirs(config.workspace, exist_ok=True)
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.abspath(config.metadata_path))
    tfx.orchestration.LocalDagRunner().run(
        create_pipeline(config, connection, beam_pipeline_args=beam_pipeline_args))
    summary = report.summarize(config)
    with open(os.path.join(config.workspace, "run_summary.json"), "w") as f:
        f.write(summary.to_json())
    return summary
