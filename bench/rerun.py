"""p2: wall time of `finetune demo` re-runs with nothing changed, which must publish nothing.

Run it in the folder where `make demo` (or `finetune demo`) has completed, with the same
workspace string (config paths are part of TFX's cache key):

    cd <clone> && .venv/bin/python bench/rerun.py [--workspace workspace]

It times, as whole processes, and merges into bench/results/perf.json:
- p2_cached_rerun_s: `finetune demo` again, nothing changed: the no-op check finds the
  fingerprint of the last run and the pipeline is not started (median of 3);
- p2_tfx_all_cached_s: the same with the no-op record removed, so the pipeline runs through
  LocalDagRunner and every component comes from the TFX cache (its states are recorded);
- p2_published_nothing: no version directory was added by any of them.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from perf_results import PERF_JSON, merge_and_print
from tfx_finetune.commands.run import RUN_SUMMARY_FILE
from tfx_finetune.pipeline import up_to_date


def _versions(serving_model_dir: str) -> list:
    return sorted(os.listdir(serving_model_dir)) if os.path.isdir(serving_model_dir) else []


def _timed_demo(finetune: str, workspace: str) -> float:
    started = time.perf_counter()
    subprocess.run([finetune, "demo", "--workspace", workspace], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return round(time.perf_counter() - started, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="workspace")
    parser.add_argument("--output", default=PERF_JSON)
    args = parser.parse_args()
    finetune = os.path.join(os.path.dirname(sys.executable), "finetune")
    serving = os.path.join(args.workspace, "serving", "digits")
    record = os.path.join(args.workspace, up_to_date.RECORD)
    before = _versions(serving)
    if not before or not os.path.exists(record):
        sys.exit(f"no completed demo run in {args.workspace}: run `make demo` first")
    no_op = [_timed_demo(finetune, args.workspace) for _ in range(3)]
    os.remove(record)
    tfx_cached = _timed_demo(finetune, args.workspace)
    with open(os.path.join(args.workspace, RUN_SUMMARY_FILE)) as f:
        states = {c["node_id"]: c["state"] for c in json.load(f)["components"]}
    results = {"p2_cached_rerun_s": statistics.median(no_op), "p2_cached_rerun_runs_s": no_op,
               "p2_tfx_all_cached_s": tfx_cached, "p2_tfx_component_states": states,
               "p2_published_nothing": _versions(serving) == before, "cores": os.cpu_count()}
    merge_and_print(results, args.output,
                    shown=("p2_cached_rerun_s", "p2_tfx_all_cached_s", "p2_published_nothing"))


if __name__ == "__main__":
    main()
