"""The long commands' console: progress on the terminal, everything else in the log file."""
import subprocess
import sys
import textwrap

from tfx_finetune.commands import cli, options
from tfx_finetune.pipeline.config import PipelineConfig

_SCRIPT = textwrap.dedent("""
    import logging, os, subprocess, sys
    from tfx_finetune.commands import console

    with console.to_log_file(sys.argv[1]):
        os.write(2, b"cuda_dnn.cc: Unable to register cuDNN factory\\n")  # C++, fd 2
        print("Epoch 1/5")                                               # Keras, sys.stdout
        logging.warning("ArtifactQuery.property_predicate is not supported")
        subprocess.run(["sh", "-c", "echo beam worker noise >&2"], check=True)
        console.progress("[12:00:00] Trainer started")
        if sys.argv[2] == "fail":
            raise RuntimeError("boom")
    print("summary after the run")
""")
_NOISE = ("cuDNN factory", "Epoch 1/5", "property_predicate", "beam worker noise")


def _run(tmp_path, mode):
    log = tmp_path / "logs" / "run.log"
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(log), mode],
                          capture_output=True, text=True, timeout=60)
    return done, log.read_text()


def test_noise_goes_to_the_log_and_progress_and_summary_to_the_terminal(tmp_path):
    done, log = _run(tmp_path, "ok")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[12:00:00] Trainer started\nsummary after the run\n"
    assert done.stderr == ""
    for noise in _NOISE:
        assert noise in log
    assert "Trainer started" not in log


def test_a_crash_reaches_the_terminal_with_the_log_path(tmp_path):
    done, log = _run(tmp_path, "fail")
    assert done.returncode == 1
    assert f"the full log is in {tmp_path / 'logs' / 'run.log'}" in done.stderr
    assert "RuntimeError: boom" in done.stderr and "boom" not in log
    assert "Epoch 1/5" in log and "Epoch 1/5" not in done.stdout + done.stderr


def test_verbose_is_offered_by_the_long_commands_only_and_keeps_the_console(tmp_path):
    parser = cli.build_parser()
    config = PipelineConfig(workspace=str(tmp_path))
    for command in ("run", "demo", "compare", "lr-find"):
        args = parser.parse_args([command])
        assert options.log_path(args, config).startswith(str(tmp_path / "logs") + "/")
        assert options.log_path(args, config).endswith(f"-{command}.log")
        assert options.log_path(parser.parse_args([command, "--verbose"]), config) is None


def test_a_run_stopped_by_a_busy_workspace_says_why_without_a_traceback(tmp_path):
    from tfx_finetune.pipeline import local_runner

    workspace, data = tmp_path / "workspace", tmp_path / "data"
    data.mkdir()
    with local_runner.workspace_lock(str(workspace)):
        done = subprocess.run(
            [sys.executable, "-m", "tfx_finetune.commands.cli", "run", "--workspace",
             str(workspace), "--data", str(data), "--weights", "none"],
            capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"finetune: run stopped: workspace {workspace} is in use by a "
                               "running pipeline (pid "), done.stderr
    assert lines[1].startswith(f"full log: {workspace}/logs/") and lines[1].endswith("-run.log")
    assert "Traceback" not in done.stderr and done.stdout == ""
