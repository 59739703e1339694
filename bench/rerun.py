"""p2: wall time of `finetune demo` re-runs with nothing changed, which must publish nothing.

Run it in the folder where `make demo` (or `finetune demo`) has completed, with the same
workspace string (config paths are part of TFX's cache key):

    cd <clone> && .venv/bin/python bench/rerun.py [--workspace workspace]

It runs the demo twice more and merges into bench/results/perf.json:
p2_first_rerun_s (the Evaluator runs again: the model blessed by the first run is now its
baseline), p2_cached_rerun_s (every component cached), p2_published_nothing, and per-run
component states.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from perf_results import PERF_JSON, merge_and_print


def _versions(serving_model_dir: str) -> list:
    return sorted(os.listdir(serving_model_dir)) if os.path.isdir(serving_model_dir) else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="workspace")
    parser.add_argument("--output", default=PERF_JSON)
    args = parser.parse_args()
    finetune = os.path.join(os.path.dirname(sys.executable), "finetune")
    serving = os.path.join(args.workspace, "serving", "digits")
    before = _versions(serving)
    if not before:
        sys.exit(f"no published demo model under {serving}: run `make demo` first")
    seconds, states = [], []
    for _ in range(2):
        started = time.perf_counter()
        subprocess.run([finetune, "demo", "--workspace", args.workspace], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds.append(round(time.perf_counter() - started, 1))
        with open(os.path.join(args.workspace, "run_summary.json")) as f:
            states.append({c["node_id"]: c["state"] for c in json.load(f)["components"]})
    results = {"p2_first_rerun_s": seconds[0], "p2_cached_rerun_s": seconds[1],
               "p2_published_nothing": _versions(serving) == before,
               "p2_component_states": states, "cores": os.cpu_count()}
    merge_and_print(results, args.output,
                    shown=("p2_first_rerun_s", "p2_cached_rerun_s", "p2_published_nothing"))


if __name__ == "__main__":
    main()
