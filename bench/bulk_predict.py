"""Throughput of `finetune predict --bulk`: images/s with Beam in memory and with 2 worker
processes, on a folder of real digit images and the demo's published model.

    .venv/bin/python bench/bulk_predict.py [--sizes 600 6000] [--rounds 3] [--model DIR]   # merges bulk_images_per_s into bench/results/deploy.json

The folders are p1's images (`pipeline_vs_keras.write_images`: MNIST digits drawn as 32×32 grey
PNGs with a random jitter per copy, in ten class folders), written once under --work. The model
is `--model` (a version or serving base directory) or, by default, the one `finetune demo`
publishes into `<work>/demo` (run once, about 5 minutes). Each round scores each folder in
memory, then with `--beam-workers 2`, through `bulk_predict.run_bulk_predict` (what the command
runs), after one untimed warm-up run; each configuration's median round is used. The folder's
files are read once, untimed, before each run, so every run starts on a warm page cache.

`in_memory` and `workers_2` are end to end on the small folder: images over wall time, Beam
start-up (worker processes importing TensorFlow), loading the model and joining the outputs
included. `*_steady` leave those fixed costs out: (large − small) images over
(T(large) − T(small)) seconds, what a large folder approaches.
"""
import tfx_finetune.components  # noqa: F401  (fixes the Keras version before TensorFlow loads)

import argparse
import os
import statistics
import subprocess
import sys

from tfx_finetune.commands import bulk_predict
from tfx_finetune.pipeline import local_runner
from perf_results import merge_and_print
from pipeline_vs_keras import write_images

HERE = os.path.dirname(os.path.abspath(__file__))
DEPLOY_JSON = os.path.join(HERE, "results", "deploy.json")
MODES = {"in_memory": 0, "workers_2": 2}


def demo_model(work: str) -> str:
    """The serving base directory of the demo's model under `<work>/demo`, published once."""
    workspace = os.path.join(work, "demo")
    base = os.path.join(workspace, "serving", "digits")
    if not os.path.isdir(base):
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "finetune"), "demo",
                        "--workspace", workspace], check=True)
    return base


def warm(folder: str) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                f.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[600, 6000],
                        metavar=("SMALL", "LARGE"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", help="a published model (default: the demo's, made once)")
    parser.add_argument("--work", default="/tmp/tfx_finetune_bulk_bench")
    args = parser.parse_args()
    folders = {n: os.path.join(args.work, f"digits_{n}") for n in args.sizes}
    for n, folder in folders.items():
        write_images(folder, n)
    model = args.model or demo_model(args.work)
    # Untimed: the first scoring in a process also pays for loading Beam's and TensorFlow's
    # lazily imported modules.
    bulk_predict.run_bulk_predict(model, folders[args.sizes[0]],
                                  os.path.join(args.work, "warm_up.jsonl"), top_k=3)
    seconds = {(mode, n): [] for mode in MODES for n in args.sizes}
    for round_ in range(args.rounds):
        for n, folder in folders.items():
            for mode, workers in MODES.items():
                warm(folder)
                result = bulk_predict.run_bulk_predict(
                    model, folder, os.path.join(args.work, f"{mode}.jsonl"), top_k=3,
                    beam_args=local_runner.beam_worker_args(workers))
                assert result.scored == n and result.rejected == 0, result
                seconds[mode, n].append(result.seconds)
                print(f"round {round_} {mode}: {n} images in {result.seconds:.1f} s "
                      f"({n / result.seconds:.1f} images/s)", flush=True)
    small, large = args.sizes
    median = {key: statistics.median(values) for key, values in seconds.items()}
    figures = {"images": small, "steady_images": [small, large], "cpus": os.cpu_count()}
    for mode in MODES:
        figures[mode] = round(small / median[mode, small], 1)
        figures[f"{mode}_steady"] = round(
            (large - small) / (median[mode, large] - median[mode, small]), 1)
    merge_and_print({"bulk_images_per_s": figures}, DEPLOY_JSON)


if __name__ == "__main__":
    main()
