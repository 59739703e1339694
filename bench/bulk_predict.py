"""Throughput of `finetune predict --bulk`: images/s with Beam in memory and with 2 worker
processes, on a folder of real digit images and the demo's published model.

    .venv/bin/python bench/bulk_predict.py [--images 600] [--rounds 2] [--model DIR]   # merges bulk_images_per_s into bench/results/deploy.json

The folder is p1's images (`pipeline_vs_keras.write_images`: MNIST digits drawn as 32×32 grey
PNGs with a random jitter per copy, in ten class folders), written once under --work. The model
is `--model` (a version or serving base directory) or, by default, the one `finetune demo`
publishes into `<work>/demo` (run once, about 3 minutes). Each round scores the folder in
memory, then with `--beam-workers 2`, through `bulk_predict.run_bulk_predict` (what the command
runs); a run's images/s is the images scored over its wall time, Beam start-up, the model's
loading and writing the outputs included; each mode's median round is reported. The folder's
files are read once, untimed, before each run, so every run starts on a warm page cache.
"""
import tfx_finetune.components  # noqa: F401  (fixes the Keras version before TensorFlow loads)

import argparse
import os
import statistics
import subprocess
import sys

from tfx_finetune.pipeline import bulk_predict, local_runner
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
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", help="a published model (default: the demo's, made once)")
    parser.add_argument("--work", default="/tmp/tfx_finetune_bulk_bench")
    args = parser.parse_args()
    folder = os.path.join(args.work, f"digits_{args.images}")
    write_images(folder, args.images)
    model = args.model or demo_model(args.work)
    rates = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        for mode, workers in MODES.items():
            warm(folder)
            result = bulk_predict.run_bulk_predict(
                model, folder, os.path.join(args.work, f"{mode}.jsonl"), top_k=3,
                beam_args=local_runner.beam_worker_args(workers))
            assert result.scored == args.images and result.rejected == 0, result
            rates[mode].append(result.scored / result.seconds)
            print(f"round {round_} {mode}: {result.scored} images in {result.seconds:.1f} s "
                  f"({rates[mode][-1]:.1f} images/s)", flush=True)
    figures = {mode: round(statistics.median(r), 1) for mode, r in rates.items()}
    merge_and_print({"bulk_images_per_s": dict(figures, images=args.images,
                                               cpus=os.cpu_count())}, DEPLOY_JSON)


if __name__ == "__main__":
    main()
