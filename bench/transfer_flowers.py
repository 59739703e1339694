"""The fine-tune recipe on real photos with real ImageNet weights (`transfer.py --task flowers`).

Target: the 4,317 TensorFlow flower photos of ../shared/data/flowers.tar.gz (5 classes).
Base: the ImageNet notop weights file of MobileNetV2 alpha 0.35 at 224 x 224 (or, with
--backbone mobilenet --alpha 0.25 --weights <v1 file>, MobileNet v1 0.25). For each budget
(labelled images per class) and seed, the labelled images are chosen per class at random; a
fifth of them are the validation split (early stopping), the rest are trained on, and every
other photo is the test set, used only for the reported figures.

Rows, all through the pipeline's own code (`PipelineConfig.trainer_config`,
`components.trainer.build_model`, `components.trainer.train_two_phases`):
  linear_probe  frozen base features (GAP), scikit-learn logistic regression, its C chosen on
                the validation split: the floor any fine-tune must beat
  head_only     the default recipe's model when its phase 2 starts (phase-1 best weights)
  seed_recipe   recipe: seed (the source documents' recipe)
  default       recipe: default
  scratch       recipe: default with weights: none (every layer trains from the start)

--dev reports on development seeds (100 by default) only, each on 100 unlabelled photos per
class of that seed (never on a reported seed's figures), and writes nothing: choices were
made this way.

Run:  .venv/bin/python bench/transfer.py --task flowers   (writes transfer_flowers.json)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tarfile
import tempfile
import time

import numpy as np
import tensorflow as tf

from tfx_finetune.components import backbones, model as model_lib, trainer
from tfx_finetune.components.preprocessing import decode_image, resize_images
from tfx_finetune.pipeline import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
DEV_SEED = 100
DEV_HOLDOUT_PER_CLASS = 100
VAL_FRACTION = 5  # one labelled image in five is validation
BATCH_SIZE = 32
# The same epoch budget and early stopping for every trained row (the rates are each
# recipe's own).
TRAINING = {"batch_size": BATCH_SIZE, "phase1_epochs": 15, "phase2_epochs": 15,
            "early_stopping_patience": 5}
ROWS = ("linear_probe", "seed_recipe", "default", "scratch")
GOAL_RATIO = 0.85


def load_flowers(path: str, image_size: int, cache: str = "") -> tuple:
    """(uint8 [N, size, size, 3] pixels, int labels, class names): each photo decoded and
    resized with the Transform's own functions, then rounded to uint8 as the Trainer's cache
    keeps them."""
    if cache and os.path.isfile(cache):
        data = np.load(cache)
        return data["pixels"], data["labels"], list(data["classes"])
    encoded, names = [], []
    with tarfile.open(path) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if member.isfile() and member.name.lower().endswith((".jpg", ".jpeg", ".png")):
                names.append(member.name.split("/")[-2])
                encoded.append(tar.extractfile(member).read())
    classes = sorted(set(names))
    labels = np.array([classes.index(n) for n in names], np.int64)
    pixels = np.stack(list(
        tf.data.Dataset.from_tensor_slices(encoded)
        .map(lambda b: tf.cast(tf.clip_by_value(tf.round(
            resize_images(decode_image(b)[tf.newaxis], image_size)[0]), 0, 255), tf.uint8),
            num_parallel_calls=tf.data.AUTOTUNE)
        .as_numpy_iterator()))
    if cache:
        np.savez(cache, pixels=pixels, labels=labels, classes=np.array(classes))
    return pixels, labels, classes


def split(labels: np.ndarray, budget: int, seed: int, dev: bool) -> dict:
    """Index arrays: `budget` labelled photos per class (a fifth validation), the rest test;
    with `dev`, the test set is 100 other photos per class."""
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for c in np.unique(labels):
        order = rng.permutation(np.flatnonzero(labels == c))
        chosen, rest = order[:budget], order[budget:]
        val.extend(chosen[:budget // VAL_FRACTION])
        train.extend(chosen[budget // VAL_FRACTION:])
        test.extend(rest[:DEV_HOLDOUT_PER_CLASS] if dev else rest)
    return {"train": np.array(train), "val": np.array(val), "test": np.sort(test)}


def _dataset(pixels, labels, idx, seed=None) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices((pixels[idx], labels[idx]))
    if seed is not None:
        dataset = dataset.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(BATCH_SIZE).map(lambda x, y: (tf.cast(x, tf.float32), y))


def predict(model, pixels, idx) -> np.ndarray:
    """Top-1 predictions in chunks (the test set as float32 would be gigabytes)."""
    return np.concatenate([
        np.argmax(model.predict_on_batch(pixels[idx[i:i + 256]].astype(np.float32)), -1)
        for i in range(0, len(idx), 256)])


def accuracy(model, pixels, labels, idx) -> float:
    return float(np.mean(predict(model, pixels, idx) == labels[idx]))


def linear_probe(args, pixels, labels, parts) -> dict:
    """Logistic regression on the frozen base's pooled features; C chosen on validation."""
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    base = model_lib.build_base(args.backbone, args.image_size, args.weights, args.alpha)
    inputs = tf.keras.Input((args.image_size, args.image_size, 3))
    pooled = tf.keras.layers.GlobalAveragePooling2D()(
        base(backbones.BACKBONES[args.backbone].normalize(inputs), training=False))
    extractor = tf.keras.Model(inputs, pooled)

    def features(idx):
        return np.concatenate([extractor.predict_on_batch(
            pixels[idx[i:i + 256]].astype(np.float32)) for i in range(0, len(idx), 256)])

    train, val = features(parts["train"]), features(parts["val"])
    best = max((LogisticRegression(C=c, max_iter=5000).fit(train, labels[parts["train"]])
                for c in (0.01, 0.1, 1.0, 10.0)),
               key=lambda clf: clf.score(val, labels[parts["val"]]))
    test_accuracy = float(best.score(features(parts["test"]), labels[parts["test"]]))
    return {"accuracy": test_accuracy, "C": best.C,
            "wall_seconds": round(time.perf_counter() - started, 1)}


def trained(args, recipe: str, weights: str, pixels, labels, parts, seed, extra=None) -> dict:
    """One fine-tune through the Trainer's code; accuracy before phase 2 and at the end."""
    from transfer import before_phase2

    overrides = {**TRAINING, "recipe": recipe, "backbone": args.backbone, "alpha": args.alpha,
                 "weights": weights, "image_size": args.image_size, "seed": seed,
                 "class_weights": "none", **(extra or {})}
    hp = config_lib.make_config(overrides).trainer_config()
    tf.keras.backend.clear_session()
    trainer.set_up(hp)
    measured = {}

    def head_only(model):
        evaluating = time.perf_counter()
        measured["head_only"] = accuracy(model, pixels, labels, parts["test"])
        measured["evaluation_seconds"] = time.perf_counter() - evaluating

    started = time.perf_counter()
    model = trainer.build_model(hp, int(labels.max()) + 1)
    with tempfile.TemporaryDirectory() as logs, before_phase2(head_only):
        history = trainer.train_two_phases(
            model, _dataset(pixels, labels, parts["train"], seed),
            _dataset(pixels, labels, parts["val"]), hp, logs)
    # The training's wall time: building the model and both phases, not the evaluation.
    measured["wall_seconds"] = round(
        time.perf_counter() - started - measured.pop("evaluation_seconds", 0.0), 1)
    measured["accuracy"] = accuracy(model, pixels, labels, parts["test"])
    measured["epochs_run"] = {p: len(h["loss"]) for p, h in history.items()}
    measured["best_val_accuracy"] = {p: round(max(h["val_accuracy"]), 4)
                                     for p, h in history.items()}
    return measured


def run_seed(args, pixels, labels, budget, seed) -> dict:
    parts = split(labels, budget, seed, args.dev)
    row = {"seed": seed, "budget": budget,
           **{f"n_{k}": int(len(v)) for k, v in parts.items()}}
    extra = dict(kv.split("=", 1) for kv in args.set)
    for name in args.rows:
        if name == "linear_probe":
            row[name] = linear_probe(args, pixels, labels, parts)
        elif name == "seed_recipe":
            row[name] = trained(args, "seed", args.weights, pixels, labels, parts, seed)
        elif name == "default":
            row[name] = trained(args, "default", args.weights, pixels, labels, parts, seed,
                                extra)
        elif name == "scratch":
            row[name] = trained(args, "default", "none", pixels, labels, parts, seed, extra)
        print(f"budget {budget} seed {seed} {name}: {row[name]}", flush=True)
    return row


def summarise(per_seed: list, budget: int) -> dict:
    rows = [r for r in per_seed if r["budget"] == budget]

    def mean(key, field="accuracy"):
        values = [r[key][field] for r in rows if key in r and r[key].get(field) is not None]
        return round(float(np.mean(values)), 4) if values else None

    figures = {name: mean(name) for name in ROWS}
    figures["head_only"] = mean("default", "head_only")
    figures["default_seconds"] = mean("default", "wall_seconds")
    figures["seed_recipe_seconds"] = mean("seed_recipe", "wall_seconds")
    error = {k: 1 - v for k, v in figures.items() if k in ROWS + ("head_only",) and v}
    if {"default", "seed_recipe", "linear_probe", "head_only"} <= set(error):
        figures["ratios"] = {
            "default_error_over_seed_recipe": round(error["default"] / error["seed_recipe"], 3),
            "default_error_over_linear_probe": round(error["default"] / error["linear_probe"],
                                                     3),
            "phase2_error_cut_over_head_only": round(1 - error["default"] / error["head_only"],
                                                     3),
            "default_seconds_over_seed_recipe": round(
                figures["default_seconds"] / figures["seed_recipe_seconds"], 2)}
    return figures


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="flowers")
    parser.add_argument("--data", default=os.path.join(SHARED, "flowers.tar.gz"))
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--alpha", type=float, default=0.35)
    parser.add_argument("--weights",
                        default=os.path.join(SHARED, "mobilenet_v2_0.35_224_no_top.h5"))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--budgets", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="config fields on top of the default recipe (development)")
    parser.add_argument("--cache", default="", help="keep the decoded photos in this .npz")
    parser.add_argument("--dev", action="store_true",
                        help="development seeds only, each on its own held-out photos; "
                             "writes nothing")
    parser.add_argument("--dev-seeds", type=int, nargs="+", default=[DEV_SEED],
                        help="--dev: the seeds (none of the reported ones)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "transfer_flowers.json"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    pixels, labels, classes = load_flowers(args.data, args.image_size, args.cache)
    if args.dev and set(args.dev_seeds) & set(args.seeds):
        parser.error("--dev-seeds must not be reported seeds")
    seeds = args.dev_seeds if args.dev else args.seeds
    per_seed = [run_seed(args, pixels, labels, budget, seed)
                for seed in seeds for budget in args.budgets]
    result = {str(b): summarise(per_seed, b) for b in args.budgets}
    result.update({
        "goals": {"default_error_over_seed_recipe": f"<= {GOAL_RATIO}",
                  "default_error_over_linear_probe": f"<= {GOAL_RATIO}",
                  "phase2_error_cut_over_head_only": ">= 0.20",
                  "default_seconds_over_seed_recipe": "<= 2"},
        "aggregate": "mean test accuracy over seeds", "seeds": seeds, "per_seed": per_seed,
        "protocol": {
            "data": f"{len(labels)} photos, classes {classes}, decoded and resized to "
                    f"{args.image_size} px by the Transform's functions, uint8",
            "backbone": args.backbone, "alpha": args.alpha,
            "weights": os.path.basename(args.weights),
            "labelled": "budget photos per class; one in five of them validation (early "
                        "stopping, best weights restored per phase, probe's C)",
            "test": "every other photo" if not args.dev else "dev: 100 other photos per class",
            "training": TRAINING, "default_overrides": args.set,
            "recipes": {name: config_lib.RECIPES[name] for name in ("default", "seed")},
        },
        "wall_seconds_total": round(time.perf_counter() - started, 1),
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "tensorflow": tf.__version__},
        "date": datetime.date.today().isoformat(),
    })
    print(json.dumps({k: v for k, v in result.items() if k != "per_seed"}, indent=2))
    if not args.dev:
        from transfer import write_result

        write_result(result, args.out)
    return result
