"""Performance figures measured side by side in one process: writes bench/results/perf.json.

p4_input_pipeline_efficiency: Trainer images/s (the real `input_fn`: GZIP TFRecords of encoded
  images through the Transform graph in tf.data) over `model.fit` on the same batches held as
  in-memory tensors. Same model, same phase, alternating runs.
p5_serving_over_keras: latency of the exported `serving_default` signature on a batch of 32
  encoded images over decoding + resizing + calling the Keras model directly.

Usage: .venv/bin/python bench/perf.py [--images N] [--epochs E] [--rounds R]
"""
import tfx_finetune.components  # noqa: F401  (fixes the Keras version before TensorFlow loads)

import argparse
import io
import os
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from PIL import Image
from sklearn.datasets import load_digits
from tensorflow_transform import TFTransformOutput
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from tfx_finetune.components import (features, model as model_lib, preprocessing, recipe,
                                     signatures, trainer_inputs)
from perf_results import PERF_JSON, merge_and_print

IMAGE_SIZE = 32


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _dataset(count: int):
    digits = load_digits()
    index = np.arange(count) % len(digits.images)
    images = [np.round(digits.images[i] * 255 / 16).astype(np.uint8) for i in index]
    return [_png(im) for im in images], [str(digits.target[i]) for i in index]


def _write_records(path: str, pngs, labels, options="GZIP") -> None:
    with tf.io.TFRecordWriter(path, options=options) as writer:
        for i, (png, label) in enumerate(zip(pngs, labels)):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                features.LABEL_KEY: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[label.encode()])),
                features.PATH_KEY: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[f"{label}/{i}.png".encode()])),
            })).SerializeToString())


def _transform_output(work: str, pngs, labels, image_size: int = IMAGE_SIZE) -> TFTransformOutput:
    spec = {k: tf.io.FixedLenFeature([1], tf.string)
            for k in (features.IMAGE_KEY, features.LABEL_KEY, features.PATH_KEY)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    raw = [{features.IMAGE_KEY: [p], features.LABEL_KEY: [l.encode()],
            features.PATH_KEY: [b"x"]} for p, l in zip(pngs[:200], labels[:200])]
    with tft_beam.Context(temp_dir=os.path.join(work, "tmp")):
        transform_fn = (raw, metadata) | tft_beam.AnalyzeDataset(
            lambda inputs: preprocessing.preprocessing_fn(inputs, {"image_size": image_size}))
        _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(work, "transform"))
    # The raw schema, as TFX's Transform writes it beside the graph.
    metadata_io.write_metadata(metadata, os.path.join(work, "transform",
                                                      TFTransformOutput.RAW_METADATA_DIR))
    return TFTransformOutput(os.path.join(work, "transform"))


def _fit_images_per_second(model, dataset, epochs: int, count: int) -> float:
    model.fit(dataset, epochs=1, verbose=0)  # warm-up: tracing and the tf.data cache
    started = time.perf_counter()
    model.fit(dataset, epochs=epochs, verbose=0)
    return count * epochs / (time.perf_counter() - started)


def input_pipeline_efficiency(work: str, count: int, epochs: int, rounds: int) -> dict:
    pngs, labels = _dataset(count)
    records = os.path.join(work, "data.gz")
    _write_records(records, pngs, labels)
    tft_output = _transform_output(work, pngs, labels)
    pipeline = trainer_inputs.input_fn([records], tft_output, 32, shuffle=True, seed=0)
    batches = list(pipeline.as_numpy_iterator())
    in_memory = tf.data.Dataset.from_tensor_slices(
        (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    ).batch(32)
    # A saved base takes the pretrained path: phase 1, head only, the base frozen.
    weights = os.path.join(work, "base.weights.h5")
    model_lib.build_base("mobilenet_v3_small", IMAGE_SIZE, "none").save_weights(weights)
    model = model_lib.build_model("mobilenet_v3_small", 10, IMAGE_SIZE, weights, 256, 0.2,
                                  head="dense")
    model_lib.compile_model(model, recipe.plain_phase(1e-3))
    ratios, pipeline_ips, memory_ips = [], [], []
    for _ in range(rounds):
        p = _fit_images_per_second(model, pipeline, epochs, count)
        m = _fit_images_per_second(model, in_memory, epochs, count)
        pipeline_ips.append(p)
        memory_ips.append(m)
        ratios.append(p / m)
    return {"p4_input_pipeline_efficiency": statistics.median(ratios),
            "p4_ratios": ratios, "p4_pipeline_images_per_s": statistics.median(pipeline_ips),
            "p4_in_memory_images_per_s": statistics.median(memory_ips),
            "p4_images": count, "p4_epochs_timed": epochs,
            "p4_phase": "phase 1 (head only)"}, \
        model, tft_output, pngs


def serving_over_keras(work: str, model, tft_output, pngs, repeats: int) -> dict:
    export = os.path.join(work, "export")
    model.save(export, save_format="tf", signatures=signatures.make_signatures(model, tft_output))
    serve = tf.saved_model.load(export).signatures["serving_default"]
    batch = tf.constant(pngs[:32])

    @tf.function
    def direct(image_bytes):
        return model(preprocessing.decode_and_resize(image_bytes, IMAGE_SIZE), training=False)

    serve(image_bytes=batch)
    direct(batch)
    serving_ms, direct_ms = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        serve(image_bytes=batch)["probabilities"].numpy()
        serving_ms.append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        direct(batch).numpy()
        direct_ms.append(1000 * (time.perf_counter() - started))
    s, d = statistics.median(serving_ms), statistics.median(direct_ms)
    return {"p5_serving_over_keras": s / d, "p5_serving_ms_batch32": s,
            "p5_keras_direct_ms_batch32": d, "p5_repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default=PERF_JSON)
    args = parser.parse_args()
    results = {"cores": os.cpu_count(), "image_size": IMAGE_SIZE}
    with tempfile.TemporaryDirectory() as work:
        p4, model, tft_output, pngs = input_pipeline_efficiency(work, args.images, args.epochs,
                                                                args.rounds)
        results.update(p4)
        results.update(serving_over_keras(work, model, tft_output, pngs, repeats=50))
    merge_and_print(results, args.output)


if __name__ == "__main__":
    main()
