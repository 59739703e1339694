"""p3: throughput of ingestion + statistics + Transform analysis with Beam's DirectRunner in
multi-processing mode, 2 workers over 1, on a folder of real digit images.

    .venv/bin/python bench/beam_workers.py [--images 20000]   # merges into bench/results/perf.json

The folder repeats scikit-learn's digits, each copy shifted by up to one pixel (real pixels,
written as PNG class folders). Each worker count runs the same three-component pipeline
(ImageExampleGen, StatisticsGen, Transform with ImportSchemaGen) without caching.
"""
import components  # noqa: F401  (fixes the Keras version before TensorFlow loads)

import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from tfx import v1 as tfx
from tfx.orchestration import pipeline as tfx_pipeline

from components.image_example_gen.component import ImageExampleGen
from pipeline.config import DEFAULT_SCHEMA
from pipeline.pipeline import PREPROCESSING_FN
from perf_results import PERF_JSON, merge_and_print


def write_images(root: str, count: int) -> None:
    digits = load_digits()
    rng = np.random.default_rng(0)
    for i in range(count):
        j = i % len(digits.images)
        image = np.round(digits.images[j] * 255 / 16).astype(np.uint8)
        image = np.roll(image, tuple(rng.integers(-1, 2, 2)), axis=(0, 1))
        folder = os.path.join(root, str(digits.target[j]))
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(image, mode="L").save(os.path.join(folder, f"{i:06d}.png"))


def run(root: str, work: str, workers: int) -> float:
    example_gen = ImageExampleGen(input_path=root)
    statistics = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema = tfx.components.ImportSchemaGen(schema_file=DEFAULT_SCHEMA)
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN, materialize=False, disable_statistics=True,
        custom_config={"image_size": 32})
    run_dir = os.path.join(work, f"workers-{workers}")
    started = time.perf_counter()
    tfx.orchestration.LocalDagRunner().run(tfx_pipeline.Pipeline(
        pipeline_name=f"p3-{workers}", pipeline_root=os.path.join(run_dir, "root"),
        components=[example_gen, statistics, schema, transform], enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(run_dir, "mlmd.sqlite")),
        beam_pipeline_args=["--direct_running_mode=multi_processing",
                            f"--direct_num_workers={workers}"]))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--output", default=PERF_JSON)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        root = os.path.join(work, "images")
        write_images(root, args.images)
        seconds = {workers: run(root, work, workers) for workers in (1, 2)}
    results = {"p3_two_workers_speedup": seconds[1] / seconds[2],
               "p3_one_worker_s": round(seconds[1], 1), "p3_two_workers_s": round(seconds[2], 1),
               "p3_images": args.images, "cores": os.cpu_count()}
    merge_and_print(results, args.output)


if __name__ == "__main__":
    main()
