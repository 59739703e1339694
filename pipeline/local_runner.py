"""Runs `create_pipeline` locally: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata."""
from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Iterator, List, Optional

from tfx import v1 as tfx

from pipeline import report
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline


class _Progress(logging.Filter):
    """Turns the runner's component start/finish records into progress lines with elapsed time,
    and keeps the rest of TFX's INFO chatter out of the console (warnings still pass)."""

    def __init__(self):
        super().__init__()
        self.started = {}
        self.cached = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if record.msg == "Component %s is running." and record.args:
            self.started[record.args[0]] = time.time()
            print(f"[{time.strftime('%H:%M:%S')}] {record.args[0]} started", flush=True)
        elif record.msg == "Component %s is finished." and record.args:
            node = record.args[0]
            elapsed = time.time() - self.started.get(node, time.time())
            note = " (cached)" if self.cached else ""
            self.cached = False
            print(f"[{time.strftime('%H:%M:%S')}] {node} finished in {elapsed:.1f} s{note}",
                  flush=True)
        elif record.msg.startswith("A cached execution"):
            self.cached = True
        return False


@contextlib.contextmanager
def _progress_lines() -> Iterator[None]:
    logger = logging.getLogger("absl")
    level, progress = logger.level, _Progress()
    logger.setLevel(logging.INFO)
    logger.addFilter(progress)
    try:
        yield
    finally:
        logger.removeFilter(progress)
        logger.setLevel(level)


def run(config: PipelineConfig, beam_pipeline_args: Optional[List[str]] = None) -> report.RunSummary:
    """Runs the pipeline to completion (cached components are reused) and summarises it.

    Beam runs in-process (DirectRunner, in-memory mode), which suits laptop-sized data; pass
    e.g. ["--direct_running_mode=multi_processing", "--direct_num_workers=4"] for more.
    """
    os.makedirs(config.workspace, exist_ok=True)
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.abspath(config.metadata_path))
    with _progress_lines():
        tfx.orchestration.LocalDagRunner().run(
            create_pipeline(config, connection, beam_pipeline_args=beam_pipeline_args))
    summary = report.summarize(config)
    with open(os.path.join(config.workspace, "run_summary.json"), "w") as f:
        f.write(summary.to_json())
    return summary
