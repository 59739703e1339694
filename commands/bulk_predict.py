"""`finetune predict --bulk`: a folder of any size scored with Beam's RunInference.

The folder is listed lazily (a generator over its directories), each file is read, checked and
scored as it comes, and the JSON lines stream into files: nothing holds the folder's images or
results in memory, and in one process not its listing either (`build`). The model is called
through its `serving_default` signature with encoded image bytes, so the Transform graph
inside it preprocesses exactly as in TF Serving and in `finetune predict`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.ml.inference.base import (KeyedModelHandler, ModelHandler, PredictionResult,
                                           RunInference)
from apache_beam.options.pipeline_options import PipelineOptions

from tfx_finetune.commands import console
from tfx_finetune.commands.predict import BATCH_SIZE, image_error, resolve_model, top_classes
from tfx_finetune.components.image_example_gen.image_check import IMAGE_EXTENSIONS
from tfx_finetune.components.labels import vocabulary
from tfx_finetune.components.uri import is_uri
from tfx_finetune.pipeline.config import PipelineConfig

REJECTED = "rejected"
# Seconds between two progress lines of one process.
PROGRESS_SECONDS = 10.0


class BulkPredictError(Exception):
    """The folder, the model or the output cannot be used; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class BulkResult:
    """What a bulk run wrote: the two files, their line counts and the wall time."""

    predictions_path: str
    rejects_path: str
    scored: int
    rejected: int
    seconds: float


def rejects_path(output: str) -> str:
    """Where the rejects of `output` go: `predictions.jsonl` → `predictions.rejects.jsonl`."""
    stem = output[:-len(".jsonl")] if output.endswith(".jsonl") else output
    return stem + ".rejects.jsonl"


def walk_files(folder: str) -> Iterator[str]:
    """Every file under `folder`, recursively, directory by directory (never the whole list).

    Local folders are walked without following links to directories, so a link cannot make
    the walk loop; buckets (gs://, s3://) have no links.
    """
    walk = tf.io.gfile.walk(folder) if is_uri(folder) else os.walk(folder)
    for root, dirs, files in walk:
        dirs.sort()
        for name in sorted(files):
            yield os.path.join(root, name)


class _ReadImage(beam.DoFn):
    """path → (path, encoded bytes), or a reject {path, reason} on the REJECTED output."""

    def process(self, path: str) -> Iterable:
        extension = os.path.splitext(path)[1].lower()
        if extension not in IMAGE_EXTENSIONS:
            yield beam.pvalue.TaggedOutput(REJECTED, {
                "path": path, "reason": f"not an image: extension '{extension}' (images: "
                                        f"{', '.join(sorted(IMAGE_EXTENSIONS))})"})
            return
        # One byte over the limit is enough to refuse a file: a huge file is never read whole.
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read(PipelineConfig.max_image_bytes + 1)
        error = image_error(data)
        if error:
            yield beam.pvalue.TaggedOutput(REJECTED, {"path": path, "reason": error})
        else:
            yield path, data


class ServingDefaultHandler(ModelHandler[bytes, PredictionResult, tf.Module]):
    """A RunInference model handler that calls the SavedModel's `serving_default` signature
    on batches of encoded images, as TF Serving does.

    Beam's own `TFModelHandlerTensor` does not fit: it loads with Keras' `load_model`, which
    rebuilds Keras layers instead of serving the signature, and its module imports
    `tensorflow_hub`, which needs setuptools' `pkg_resources` (not in this environment).
    """

    def __init__(self, model_dir: str):
        super().__init__()
        self.model_dir = model_dir

    def load_model(self) -> tf.Module:
        return tf.saved_model.load(self.model_dir)

    def run_inference(self, batch: Sequence[bytes], model: tf.Module,
                      inference_args: Optional[Dict] = None) -> List[PredictionResult]:
        probabilities = model.signatures["serving_default"](
            image_bytes=tf.constant(list(batch)))["probabilities"].numpy()
        return [PredictionResult(example, p, self.model_dir)
                for example, p in zip(batch, probabilities)]

    def get_num_bytes(self, batch: Sequence[bytes]) -> int:
        return sum(len(example) for example in batch)

    def batch_elements_kwargs(self) -> Dict:
        # At most BATCH_SIZE images at once, as `finetune predict` sends them.
        return {"max_batch_size": BATCH_SIZE}


class _ToJsonLine(beam.DoFn):
    """(path, PredictionResult) → one JSON line with the top-k classes; prints progress."""

    def __init__(self, names: List[str], top_k: int):
        self._names, self._top_k = names, top_k
        # Taken now: worker processes receive this DoFn pickled, with these values.
        self._main_pid, self._every = os.getpid(), PROGRESS_SECONDS

    def setup(self):
        self._scored, self._shown = 0, None

    def process(self, keyed: Tuple[str, PredictionResult]) -> Iterable[str]:
        path, result = keyed
        self._scored += 1
        self._shown = self._shown or time.time()
        if time.time() - self._shown >= self._every:
            self._shown = time.time()
            worker = f" by worker process {os.getpid()}" if os.getpid() != self._main_pid else ""
            console.progress(f"[{time.strftime('%H:%M:%S')}] {self._scored} images "
                             f"scored{worker}")
        yield json.dumps({"path": path, "predictions": top_classes(
            np.asarray(result.inference), self._names, self._top_k)})


def build(root: beam.Pipeline, folder: str, model_dir: str, names: List[str], top_k: int,
          parts_dir: str, spread: bool) -> None:
    """Adds the scoring of `folder` to `root`: JSON-line shards `predictions-*` and
    `rejects-*` in `parts_dir`.

    `spread` reshuffles the listed paths, so that a runner with several workers shares them
    out; without it every path would stay with the one worker that listed the folder. In one
    process it would only make the runner buffer every path, so in-memory runs go without.
    """
    paths = root | "Folder" >> beam.Create([folder]) | "List" >> beam.FlatMap(walk_files)
    if spread:
        paths = paths | "Spread" >> beam.Reshuffle()
    read = paths | "Read" >> beam.ParDo(_ReadImage()).with_outputs(REJECTED, main="images")
    (read.images
     | "Score" >> RunInference(KeyedModelHandler(ServingDefaultHandler(model_dir)))
     | "ToJson" >> beam.ParDo(_ToJsonLine(names, top_k))
     | "WritePredictions" >> beam.io.WriteToText(os.path.join(parts_dir, "predictions"),
                                                 file_name_suffix=".jsonl"))
    (read[REJECTED]
     | "RejectToJson" >> beam.Map(json.dumps)
     | "WriteRejects" >> beam.io.WriteToText(os.path.join(parts_dir, "rejects"),
                                             file_name_suffix=".jsonl"))


def _concatenate(parts: List[str], output: str) -> int:
    """Streams the shard files into `output` (complete or absent: written aside, then renamed);
    returns the line count."""
    lines = 0
    partial = output + ".partial"
    with tf.io.gfile.GFile(partial, "w") as out:
        out.write("")  # GFile creates the file on its first write: an empty result is a file too
        for part in parts:
            with tf.io.gfile.GFile(part) as f:
                for line in f:
                    out.write(line)
                    lines += 1
    tf.io.gfile.rename(partial, output, overwrite=True)
    return lines


def _is_inside(path: str, folder: str) -> bool:
    """Whether `path` lies under `folder`; local paths are compared absolute."""
    if is_uri(folder):
        return path.startswith(folder.rstrip("/") + "/")
    return os.path.abspath(path).startswith(os.path.abspath(folder) + os.sep)


def _check_paths(folder: str, output: str) -> None:
    if not tf.io.gfile.isdir(folder):
        raise BulkPredictError(f"folder {folder} does not exist or is not a folder: pass the "
                               "folder of images to score")
    if tf.io.gfile.isdir(output):
        raise BulkPredictError(f"--output {output} is a folder: pass a file name such as "
                               f"{os.path.join(output, 'predictions.jsonl')}")
    # Beam writes its shards beside the output while the folder is being listed: inside it,
    # they would be listed and scored too.
    if _is_inside(output, folder):
        raise BulkPredictError(f"--output {output} is inside the folder being scored: pass "
                               "a path outside it")


def run_bulk_predict(model: str, folder: str, output: str, top_k: int,
                     beam_args: Sequence[str] = ()) -> BulkResult:
    """Scores every image under `folder` with the published model `model` (a version
    directory, or a base directory for its newest version).

    Writes `output` (one JSON line per image: path and top-k classes with their
    probabilities) and `rejects_path(output)` (path and reason per file that is not an
    image or cannot be decoded). Beam runs in this process unless `beam_args` say otherwise.

    Raises:
      BulkPredictError: for a missing folder or model, or an output that cannot be written.
    """
    _check_paths(folder, output)
    try:
        model_dir = resolve_model(model)
    except FileNotFoundError as e:
        raise BulkPredictError(str(e)) from None
    if model_dir.endswith(".tflite"):
        raise BulkPredictError(f"{model} is a TFLite model: bulk predictions run the "
                               "SavedModel's serving signature; pass <workspace>/serving/"
                               "<model_name> or one of its version directories")
    names = vocabulary(model_dir)
    parts_dir = output + ".parts"
    try:
        tf.io.gfile.makedirs(parts_dir)
    except (OSError, tf.errors.OpError) as e:
        raise BulkPredictError(f"cannot write beside --output {output} ({e}): pass an output "
                               "path in a folder you can write") from None
    started = time.time()
    try:
        with beam.Pipeline(options=PipelineOptions(list(beam_args))) as root:
            build(root, folder, model_dir, names, top_k, parts_dir, spread=bool(beam_args))
        scored = _concatenate(sorted(tf.io.gfile.glob(os.path.join(parts_dir, "predictions*"))),
                              output)
        rejected = _concatenate(sorted(tf.io.gfile.glob(os.path.join(parts_dir, "rejects*"))),
                                rejects_path(output))
    finally:
        tf.io.gfile.rmtree(parts_dir)
    return BulkResult(output, rejects_path(output), scored, rejected, time.time() - started)


def format_result(result: BulkResult) -> str:
    rate = result.scored / result.seconds if result.seconds else 0.0
    return (f"scored {result.scored} images in {result.seconds:.1f} s ({rate:.1f} images/s): "
            f"{result.predictions_path}\n{result.rejected} files rejected (not images or "
            f"undecodable): {result.rejects_path}")


def command(args) -> int:
    """`finetune predict --bulk` from its parsed arguments; the exit code."""
    # Imported here, not above: Beam workers import this module for its DoFns and need no TFX.
    from tfx_finetune.pipeline.local_runner import beam_worker_args

    problem = ("--output, --beam-workers and --beam-arg go with --bulk" if not args.bulk else
               "predict --bulk takes one FOLDER" if len(args.inputs) != 1 else
               "predict --bulk needs --output FILE.jsonl" if not args.output else
               "predict --bulk writes JSON lines: drop --json" if args.json else "")
    try:
        if problem:
            raise BulkPredictError(problem)
        result = run_bulk_predict(args.model, args.inputs[0], args.output, args.top_k,
                                  beam_worker_args(args.beam_workers) + args.beam_args)
    except BulkPredictError as e:
        print(f"finetune: predict: {e}", file=sys.stderr)
        return 2
    print(format_result(result))
    return 0
