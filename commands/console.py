"""The console of the long commands (`run`, `demo`, `compare`, `lr-find`): progress lines and
the summary on the terminal, everything else in a log file under the workspace; how a command
stopped by its input says so.

TensorFlow's C++ start-up lines, absl and Beam logging, Python warnings and Keras' epoch lines
are written to the process's file descriptors 1 and 2 by code this project does not own, some
of it in C++ or in Beam worker processes. Redirecting the descriptors themselves is the one
place that catches all of them; progress lines go to a copy of the terminal's descriptor kept
aside. Nothing here imports TensorFlow: the redirection must start before it loads.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Callable, Iterator, Optional, TextIO

_console: Optional[TextIO] = None  # the terminal while `to_log_file` redirects, else None


def progress(line: str) -> None:
    """Prints `line` on the terminal, also while the rest of the output goes to the log."""
    print(line, file=_console or sys.stdout, flush=True)


def log_path(workspace: str, command: str) -> str:
    """Where a `command` started now logs: `<workspace>/logs/<time>-<command>.log`."""
    return os.path.join(workspace, "logs", f"{time.strftime('%Y%m%d-%H%M%S')}-{command}.log")


@contextlib.contextmanager
def to_log_file(path: Optional[str]) -> Iterator[None]:
    """Sends everything written to stdout and stderr (descriptors 1 and 2, so C++ libraries
    and child processes too) to the file `path`, appending, while `progress` still reaches the
    terminal. `path` None redirects nothing (`--verbose`).

    When the block raises, the terminal is restored first and told where the log is, so the
    traceback and the error message are on the terminal.
    """
    global _console
    if path is None:
        yield
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    try:
        with open(path, "a", encoding="utf-8") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            _console = console
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                _console = None
    except BaseException:
        print(f"the full log is in {path}", file=sys.stderr, flush=True)
        raise
    finally:
        for fd in saved:
            os.close(fd)
        console.close()


class Stopped(Exception):
    """A command was stopped by its input or a busy workspace (not a crash); `logged` has told
    the user why. `finetune` exits with 1."""


def _stopping_errors() -> tuple:
    """The errors by which the data or a busy workspace stop a run. Imported on call, inside
    the log: TensorFlow's start-up lines belong there."""
    from tfx_finetune.components.data_gate.executor import DataValidationError
    from tfx_finetune.components.image_example_gen.errors import IngestionError
    from tfx_finetune.pipeline.local_runner import WorkspaceBusyError

    return IngestionError, DataValidationError, WorkspaceBusyError


@contextlib.contextmanager
def logged(command: str, path: Optional[str],
           more_stopping_errors: Callable[[], tuple] = tuple) -> Iterator[None]:
    """Runs the block with its output in the log `path` (`to_log_file`). When the data, a busy
    workspace or one of `more_stopping_errors()` stops it, tells the terminal why and where
    the log is, then raises `Stopped`."""
    stopped = None
    with to_log_file(path):
        stopping = _stopping_errors() + more_stopping_errors()
        try:
            yield
        except stopping as e:
            stopped = e
    if stopped is not None:
        print(f"finetune: {command} stopped: {stopped}", file=sys.stderr)
        if path:
            print(f"full log: {path}", file=sys.stderr)
        raise Stopped(str(stopped)) from stopped


def print_log_path(path: Optional[str], indent: str = "  ") -> None:
    """The last line of a long command that wrote a log."""
    if path:
        print(f"{indent}full log: {path}")
