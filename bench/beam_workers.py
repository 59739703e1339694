"""p3: throughput of ingestion + statistics + Transform analysis with Beam's DirectRunner in
multi-processing mode, 2 workers over 1, on folders of real digit images.

    .venv/bin/python bench/beam_workers.py [--sizes 20000 80000] [--rounds 3] [--cold]   # merges into bench/results/perf.json

The folders are p1's images (`pipeline_vs_keras.write_images`: MNIST digits drawn as 32×32 grey
PNGs with a random jitter per copy), written once under --work. For each size, Beam in memory,
then 1, then 2 worker processes run the same three-component pipeline (ImageExampleGen,
StatisticsGen, Transform with ImportSchemaGen) through the LocalDagRunner without caching, in
interleaved rounds; each configuration's median run is used.

Each Beam pipeline in multi-processing mode starts its own worker processes, which import
TensorFlow, TFX and TFDV before the first image: a fixed cost per component that does not
depend on the data. Throughput is therefore measured between the two sizes,
(large − small) images / (T(large) − T(small)) seconds, for each worker count;
`p3_two_workers_speedup` is the 2-worker throughput over the 1-worker throughput. The
end-to-end ratio at the large size, fixed costs included, is `p3_end_to_end_speedup`.

Every run starts with the page cache warm: the folder's files are read once, untimed, just
before it. This VM drops cached file data within about a minute (re-reading the 160,000 files
took 1.1 s at once, 1.6 s after 20 s idle and 9.7 s after 60 s), so otherwise a configuration
would be timed on cold or warm reads depending on how long the runs before it took. With
`--cold` (root only) every run starts on an empty page cache instead (`drop_caches`), as a first
run on a folder nobody has read lately; its figures are written as `p3_cold_*`.

The in-memory runs (Beam in this process, no workers: the default of `finetune run`) are the
reference for choosing `--beam-workers`: `p3_in_memory_s`.
"""
import tfx_finetune.components  # noqa: F401  (fixes the Keras version before TensorFlow loads)

import argparse
import os
import shutil
import time

import ml_metadata as mlmd
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.components.transform.component import Transform
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from tfx_finetune.components.image_example_gen.component import ImageExampleGen
from tfx_finetune.pipeline import local_runner, metadata_store, nodes
from tfx_finetune.pipeline.config import DEFAULT_SCHEMA, PipelineConfig
from tfx_finetune.pipeline.pipeline import PREPROCESSING_FN, statistics_options
from perf_results import PERF_JSON, merge_and_print
from pipeline_vs_keras import IMAGE_SIZE, write_images

COMPONENTS = (nodes.EXAMPLE_GEN, nodes.STATISTICS_GEN, nodes.TRANSFORM)


def component_seconds(metadata_path: str) -> dict:
    """Each component's execution wall time, from ML Metadata."""
    store = mlmd.MetadataStore(metadata.sqlite_metadata_connection_config(metadata_path))
    seconds = {}
    for node in store.get_contexts_by_type(metadata_store.NODE_CONTEXT):
        for execution in store.get_executions_by_context(node.id):
            seconds[metadata_store.node_id(node)] = round(
                (execution.last_update_time_since_epoch - execution.create_time_since_epoch)
                / 1000, 1)
    return {name: seconds[name] for name in COMPONENTS}


def read_files(root: str) -> None:
    """Reads every file under `root` once, so that the timed run starts on a warm page cache."""
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb", buffering=0) as f:
                f.readall()


def drop_page_cache() -> None:
    """Empties the kernel's page, dentry and inode caches, so that the timed run reads cold."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
    except PermissionError:
        raise SystemExit("--cold writes /proc/sys/vm/drop_caches: run it as root")


def run(root: str, run_dir: str, workers: int, cold: bool) -> dict:
    config = PipelineConfig()
    example_gen = ImageExampleGen(input_path=root, split_ratios=config.split_ratios,
                                  options=config.ingestion_options()).with_id(nodes.EXAMPLE_GEN)
    examples = example_gen.outputs[nodes.EXAMPLES]
    statistics = StatisticsGen(examples=examples, stats_options=statistics_options()).with_id(
        nodes.STATISTICS_GEN)
    schema = ImportSchemaGen(schema_file=DEFAULT_SCHEMA).with_id(nodes.SCHEMA_GEN)
    transform = Transform(
        examples=examples, schema=schema.outputs[nodes.SCHEMA],
        preprocessing_fn=PREPROCESSING_FN, materialize=False, disable_statistics=True,
        custom_config={"image_size": IMAGE_SIZE}).with_id(nodes.TRANSFORM)
    shutil.rmtree(run_dir, ignore_errors=True)
    if cold:
        drop_page_cache()
    else:
        read_files(root)
    metadata_path = os.path.join(run_dir, "mlmd.sqlite")
    started = time.perf_counter()
    LocalDagRunner().run(tfx_pipeline.Pipeline(
        pipeline_name=f"p3-{workers}", pipeline_root=os.path.join(run_dir, "root"),
        components=[example_gen, statistics, schema, transform], enable_cache=False,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(metadata_path),
        beam_pipeline_args=local_runner.beam_worker_args(workers)))
    result = {"wall_s": round(time.perf_counter() - started, 1),
              "component_s": component_seconds(metadata_path)}
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def _mode(workers: int) -> str:
    return f"{workers} workers" if workers else "in memory"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[20000, 80000],
                        metavar=("SMALL", "LARGE"))
    parser.add_argument("--work", default="/tmp/p3-bench",
                        help="image folders (written once, reused) and run directories")
    parser.add_argument("--rounds", type=int, default=3,
                        help="every configuration runs once per round; medians are compared")
    parser.add_argument("--cold", action="store_true",
                        help="start every run on an empty page cache (root only) instead of a "
                             "warm one; figures are written as p3_cold_*")
    parser.add_argument("--output", default=PERF_JSON)
    args = parser.parse_args()
    small, large = sorted(args.sizes)
    for size in (small, large):
        write_images(os.path.join(args.work, f"digits-{size}"), size)
    configurations = [(size, workers) for size in (small, large) for workers in (0, 1, 2)]
    rounds = {c: [] for c in configurations}
    for index in range(args.rounds):
        for size, workers in configurations:
            result = run(os.path.join(args.work, f"digits-{size}"),
                         os.path.join(args.work, "run"), workers, args.cold)
            rounds[(size, workers)].append(result)
            print(f"round {index}: {size} images, {_mode(workers)}: {result}", flush=True)
    # The median run of each configuration (by wall time).
    runs = {c: sorted(results, key=lambda r: r["wall_s"])[len(results) // 2]
            for c, results in rounds.items()}
    throughput = {workers: (large - small) / (runs[(large, workers)]["wall_s"]
                                              - runs[(small, workers)]["wall_s"])
                  for workers in (1, 2)}
    results = {
        "p3_two_workers_speedup": round(throughput[2] / throughput[1], 3),
        "p3_throughput_images_per_s": {str(w): round(t, 1) for w, t in throughput.items()},
        "p3_end_to_end_speedup": round(runs[(large, 1)]["wall_s"] / runs[(large, 2)]["wall_s"], 3),
        "p3_in_memory_s": {str(size): runs[(size, 0)]["wall_s"] for size in (small, large)},
        "p3_rounds": args.rounds,
        "p3_runs": {f"{size}_images_{_mode(workers).replace(' ', '_')}": results
                    for (size, workers), results in rounds.items()},
        "p3_sizes": [small, large], "p3_image_size": IMAGE_SIZE, "cores": os.cpu_count(),
    }
    shown = ["p3_two_workers_speedup", "p3_throughput_images_per_s", "p3_end_to_end_speedup",
             "p3_in_memory_s", "p3_sizes", "cores"]
    if args.cold:
        results = {k.replace("p3_", "p3_cold_", 1): v for k, v in results.items()}
        shown = [k.replace("p3_", "p3_cold_", 1) for k in shown]
    merge_and_print(results, args.output, shown=shown)


if __name__ == "__main__":
    main()
