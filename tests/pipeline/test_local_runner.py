import multiprocessing
import signal
import time

import pytest

from tfx_finetune.pipeline import local_runner
from tfx_finetune.pipeline.config import PipelineConfig


def _hold_lock(workspace, ready, release):
    with local_runner.workspace_lock(workspace):
        ready.set()
        release.wait(30)


def test_second_run_on_a_busy_workspace_fails_at_once(tmp_path):
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        started = time.time()
        with pytest.raises(local_runner.WorkspaceBusyError, match=f"pid {holder.pid}"):
            local_runner.run(PipelineConfig(workspace=str(tmp_path), data_dir=str(tmp_path)))
        assert time.time() - started < 1.0
    finally:
        release.set()
        holder.join(30)
    with local_runner.workspace_lock(str(tmp_path)):  # free again once the holder is gone
        pass


def test_lock_is_released_when_the_holder_dies(tmp_path):
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(30), "the child never took the lock"
        with pytest.raises(local_runner.WorkspaceBusyError):  # it holds it now
            with local_runner.workspace_lock(str(tmp_path)):
                pass
    finally:
        # Killed while waiting, not released: no `finally` of its own runs. (Setting `release`
        # now would hang: a multiprocessing Event waits for every waiter to wake.)
        holder.kill()
        holder.join(30)
    assert holder.exitcode == -signal.SIGKILL
    with local_runner.workspace_lock(str(tmp_path)):
        pass
