"""Runs `create_pipeline` locally: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata."""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from typing import Callable, Iterator, List, Optional

from absl import logging as absl_logging
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from tfx_finetune.components import published
from tfx_finetune.pipeline import metadata_store
from tfx_finetune.pipeline.config import PipelineConfig
from tfx_finetune.pipeline.pipeline import create_pipeline


# Where progress lines go: a function of one line, `print` unless the caller passes its own.
Progress = Callable[[str], None]


class _Progress(logging.Filter):
    """Turns the runner's component start/finish records into progress lines with elapsed time,
    given to `emit`; every record still goes on to the other handlers."""

    def __init__(self, emit: Progress):
        super().__init__()
        self.emit = emit
        self.started = {}
        self.cached = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == published.NOTHING_EARLIER_LOG and record.args:
            self.emit(f"[{time.strftime('%H:%M:%S')}] {record.getMessage()}")
        elif record.msg == "Component %s is running." and record.args:
            self.started[record.args[0]] = time.time()
            self.emit(f"[{time.strftime('%H:%M:%S')}] {record.args[0]} started")
        elif record.msg == "Component %s is finished." and record.args:
            node = record.args[0]
            elapsed = time.time() - self.started.get(node, time.time())
            note = " (cached)" if self.cached else ""
            self.cached = False
            self.emit(f"[{time.strftime('%H:%M:%S')}] {node} finished in {elapsed:.1f} s"
                             f"{note}")
        elif record.msg.startswith("A cached execution"):
            self.cached = True
        return True


@contextlib.contextmanager
def progress_lines(emit: Progress = print) -> Iterator[None]:
    """Gives `emit` a line as each component starts and finishes while the block runs."""
    # Through absl's verbosity flag, not the logger's level: TensorFlow resets the absl logger
    # to that flag after each SavedModel save, which silenced every line after Transform.
    verbosity, progress = absl_logging.get_verbosity(), _Progress(emit)
    absl_logging.set_verbosity(absl_logging.INFO)
    logger = logging.getLogger("absl")
    logger.addFilter(progress)
    try:
        yield
    finally:
        logger.removeFilter(progress)
        absl_logging.set_verbosity(verbosity)


class WorkspaceBusyError(RuntimeError):
    """Another run holds the workspace; the message says which process."""


@contextlib.contextmanager
def workspace_lock(workspace: str) -> Iterator[None]:
    """Holds an exclusive lock on the workspace for the whole run.

    A second run on the same workspace (pipeline root, ML Metadata, serving directory) fails
    at once instead of racing the first. The lock is released when the process ends, however
    it ends, so a killed run never leaves a stale lock behind.

    Raises:
      WorkspaceBusyError: when another process holds the lock.
    """
    os.makedirs(workspace, exist_ok=True)
    path = os.path.join(workspace, ".run.lock")
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise WorkspaceBusyError(
                f"workspace {workspace} is in use by a running pipeline ({holder}); wait for "
                "it to finish or pass another --workspace") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


SETUP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "setup.py")


def beam_worker_args(workers: int) -> List[str]:
    """Beam arguments for `workers` DirectRunner worker processes; 0 keeps Beam in this
    process (in-memory mode), which suits laptop-sized data.

    The workers are processes of this Python environment and import TFX and this project as
    installed. Given Beam arguments without a dependency flag, TFX packages its own sources
    for remote workers before every Beam component, leaving a folder in the temp directory
    each time (bench/README.md). `--setup_file` names this project's package (what remote
    workers would need) instead; the DirectRunner stages nothing.
    """
    if workers == 0:
        return []
    args = ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    if os.path.isfile(SETUP_FILE):  # a source checkout, as the README installs it
        args.append(f"--setup_file={SETUP_FILE}")
    return args


def run_pipeline(config: PipelineConfig, beam_pipeline_args: Optional[List[str]] = None,
                 publish: bool = True, progress: Progress = print) -> None:
    """Runs `create_pipeline(config, publish=publish)`, giving `progress` a line as each
    component starts and finishes; the caller holds the workspace lock.

    Beam runs in-process (DirectRunner, in-memory mode) unless `beam_pipeline_args` say
    otherwise (`beam_worker_args`).
    """
    connection = metadata_store.connection_config(config)
    with progress_lines(progress):
        LocalDagRunner().run(create_pipeline(config, connection, publish=publish,
                                             beam_pipeline_args=beam_pipeline_args))


def run(config: PipelineConfig, beam_pipeline_args: Optional[List[str]] = None,
        progress: Progress = print) -> None:
    """Runs the pipeline to completion under the workspace lock (cached components are reused).

    Raises:
      WorkspaceBusyError: when another run is using the same workspace.
    """
    with workspace_lock(config.workspace):
        run_pipeline(config, beam_pipeline_args, progress=progress)
