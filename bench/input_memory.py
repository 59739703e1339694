"""The Trainer's input pipeline alone on photo-size JPEGs: peak RSS and images/s per epoch as the
data grows, today's code against the code before it, side by side. Writes
bench/results/input_memory.json.

Photos: flower photos from ../shared/data/flowers.tar.gz upscaled (bicubic) with sensor-like
noise and saved as JPEG q90, as a phone's photos are: a pool of distinct photos, cycled to the
sizes asked for. Each (code, size) runs in a fresh process, so its peak RSS (VmHWM) is its own.
`in_memory_images_per_s` is the Trainer's phase-1 step of MobileNetV2 (alpha 0.35, 224 px, base
frozen) fed already-decoded tensors: the rate the input pipeline has to keep up with.

Usage: .venv/bin/python bench/input_memory.py [--sizes 2000 10000 40000] [--megapixels 1.2]
       [--large-megapixels 12 --large-count 300] [--before df072a2]
"""
import tfx_finetune.components  # noqa: F401  (fixes the Keras version before TensorFlow loads)

import argparse
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from PIL import Image

from tfx_finetune.components import trainer_inputs
from perf import _transform_output, _write_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOWERS = os.path.join(REPO, "..", "shared", "data", "flowers.tar.gz")
RESULTS = os.path.join(REPO, "bench", "results", "input_memory.json")
IMAGE_SIZE = 224
BATCH = 32
POOL = 200


def photos(megapixels: float, count: int, seed: int = 0):
    """`count` distinct photo-like JPEGs of about `megapixels`, with their class names."""
    rng = np.random.default_rng(seed)
    width = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    height = width * 3 // 4
    result = []
    with tarfile.open(FLOWERS) as tar:
        members = sorted((m for m in tar.getmembers() if m.name.endswith(".jpg")),
                         key=lambda m: m.name)
        for member in members[::max(1, len(members) // count)][:count]:
            image = Image.open(tar.extractfile(member)).convert("RGB").resize(
                (width, height), Image.BICUBIC)
            pixels = np.asarray(image, dtype=np.float32)
            pixels += rng.normal(0, 4, pixels.shape)  # sensor noise: what makes photos large
            buffer = io.BytesIO()
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                buffer, format="JPEG", quality=90)
            result.append((buffer.getvalue(), member.name.split("/")[1]))
    return result


def write_records(path: str, pool, count: int) -> int:
    """Writes `count` examples cycling through `pool` (GZIP at level 0: the bytes as given,
    as fast to write as to read); returns the file's size."""
    cycled = [pool[i % len(pool)] for i in range(count)]
    _write_records(path, [jpeg for jpeg, _ in cycled], [label for _, label in cycled],
                   options=tf.io.TFRecordOptions(compression_type="GZIP", compression_level=0))
    return os.path.getsize(path)


def _module_at(commit: str, work: str):
    """components/trainer.py as it was at `commit` (before its input pipeline moved to
    trainer_inputs.py), importable as a module."""
    path = os.path.join(work, f"trainer_{commit}.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(subprocess.run(["git", "show", f"{commit}:components/trainer.py"], cwd=REPO,
                               check=True, capture_output=True, text=True).stdout)
    spec = importlib.util.spec_from_file_location(f"trainer_{commit}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _epoch_rates(dataset, count: int, epochs: int = 2):
    rates = []
    for _ in range(epochs):
        started = time.perf_counter()
        seen = sum(int(x.shape[0]) for x, _ in dataset)
        rates.append(seen / (time.perf_counter() - started))
        assert seen == count, (seen, count)
    return rates


def measure(records: str, transform_dir: str, count: int, code: str, work: str) -> dict:
    """Two epochs of the Trainer's training input in this process (`code`: "after" for this
    checkout, else the commit of the code before)."""
    tft_output = tft.TFTransformOutput(transform_dir)
    if code == "after":
        with trainer_inputs.cached_inputs([([records], True)], tft_output, BATCH,
                                          seed=0) as (train,):
            rates = _epoch_rates(train, count)
    else:
        before = _module_at(code, work)
        cache = before.fits_in_memory([records], IMAGE_SIZE)
        train = before.input_fn([records], tft_output, BATCH, True, 0, cache_transformed=cache)
        rates = _epoch_rates(train, count)
    return {"images_per_s": rates[0], "second_epoch_images_per_s": rates[1],
            "peak_rss_mb": _peak_rss_mb()}


def in_memory_images_per_s(steps: int = 20) -> float:
    """The phase-1 train step (frozen base, new head) on already-decoded 224 px tensors."""
    base = tf.keras.applications.MobileNetV2(alpha=0.35, include_top=False, weights=None,
                                             input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    base.trainable = False
    inputs = tf.keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = tf.keras.applications.mobilenet_v2.preprocess_input(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(5, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    images = tf.random.uniform((BATCH, IMAGE_SIZE, IMAGE_SIZE, 3), 0, 255)
    labels = tf.zeros((BATCH,), tf.int64)
    for _ in range(3):
        model.train_on_batch(images, labels)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, labels)
    return steps * BATCH / (time.perf_counter() - started)


def _child(args) -> None:
    print(json.dumps(measure(args.records, args.transform, args.count, args.code, args.work)))


def _run_child(records, transform, count, code, work) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", "--records", records, "--transform", transform,
         "--count", str(count), "--code", code, "--work", work],
        capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000, 40000])
    parser.add_argument("--megapixels", type=float, default=1.2)
    parser.add_argument("--large-megapixels", type=float, default=12.0)
    parser.add_argument("--large-count", type=int, default=300)
    parser.add_argument("--before", default="df072a2")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--records")
    parser.add_argument("--transform")
    parser.add_argument("--count", type=int)
    parser.add_argument("--code")
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    work = tempfile.mkdtemp(prefix="input-memory-", dir=os.environ.get("BENCH_DIR"))
    pool = photos(args.megapixels, POOL)
    jpegs, labels = [p for p, _ in pool], [l for _, l in pool]
    _transform_output(work, jpegs, labels, IMAGE_SIZE)
    transform = os.path.join(work, "transform")
    result = {"sizes": args.sizes, "megapixels": args.megapixels,
              "mean_jpeg_kb": float(np.mean([len(p) for p in jpegs]) / 1024)}
    runs = {"after": {}, "before": {}}
    for count in args.sizes:
        records = os.path.join(work, f"{count}.gz")
        size = write_records(records, pool, count)
        print(f"{count} images: {size / 1e9:.2f} GB of records", flush=True)
        for code in ("after", args.before):
            measured = _run_child(records, transform, count, code, work)
            print(f"  {code}: {measured}", flush=True)
            runs["after" if code == "after" else "before"][count] = measured
        os.remove(records)
    for key in ("peak_rss_mb", "images_per_s", "second_epoch_images_per_s"):
        result[key] = [runs["after"][c][key] for c in args.sizes]
    result["before"] = {key: [runs["before"][c][key] for c in args.sizes]
                        for key in ("peak_rss_mb", "images_per_s",
                                    "second_epoch_images_per_s")}
    result["before"]["code"] = args.before
    result["in_memory_images_per_s"] = in_memory_images_per_s()
    large = photos(args.large_megapixels, min(args.large_count, POOL), seed=1)
    records = os.path.join(work, "large.gz")
    write_records(records, large, args.large_count)
    result["large_photos"] = {
        "megapixels": args.large_megapixels, "count": args.large_count,
        "mean_jpeg_kb": float(np.mean([len(p) for p, _ in large]) / 1024),
        "after": _run_child(records, transform, args.large_count, "after", work),
        "before": _run_child(records, transform, args.large_count, args.before, work)}
    middle, largest = result["peak_rss_mb"][-2], result["peak_rss_mb"][-1]
    result["rss_growth_middle_to_largest_mb"] = largest - middle
    result["second_epoch_over_in_memory"] = [
        r / result["in_memory_images_per_s"] for r in result["second_epoch_images_per_s"]]
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
