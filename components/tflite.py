"""TFLite: conversion with TFX's TFLite rewriter, the interpreter's predictions, and the test-split
evaluation against the SavedModel that decides whether a TFLite model may be published.

What the TFLite model takes: float32 pixels [1, size, size, 3], RGB in [0, 255], decoded and
resized exactly as the Transform does (`pixels`, i.e. `preprocessing.decode_and_resize`:
bilinear, no antialiasing); the backbone's own normalisation is inside the model. It does not
take encoded image bytes like `serving_default`: decoding JPEG/PNG/GIF/BMP is no TFLite builtin
op, and TensorFlow's own ops (Flex) would add several MB of runtime to every app and rule out
the integer-only kernels int8 is for. Apps decode with the platform's image API instead.
It answers `probabilities` [1, classes]; `labels.txt` beside it names class i on line i.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Iterable, List, Sequence

import numpy as np
import tensorflow as tf
from tfx.components.trainer.rewriting import rewriter
from tfx.components.trainer.rewriting.tflite_rewriter import TFLiteRewriter

from tfx_finetune.components import features, preprocessing, signatures
from tfx_finetune.components.tflite_check import TFLiteEvaluation
from tfx_finetune.components.trainer_config import NO_TFLITE, TFLITE_MODES

CONVERSIONS = tuple(mode for mode in TFLITE_MODES if mode != NO_TFLITE)
# Beside the SavedModel's `Format-Serving` in the Trainer's Model artifact.
TFLITE_DIR = "Format-TFLite"
MODEL_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
# Train images that calibrate int8 activation ranges (TFLite's guide: a few hundred).
REPRESENTATIVE_IMAGES = 200
EVALUATION_BATCH = 64


def tflite_dir(model_uri: str) -> str:
    """Where the Trainer writes `model.tflite` and `labels.txt` in its Model artifact."""
    return os.path.join(model_uri, TFLITE_DIR)


def _save_pixel_model(model: tf.keras.Model, image_size: int, path: str) -> None:
    """Saves a SavedModel whose `serving_default` is `model` on float pixels.

    Only the function and the model's variables are saved, not the Keras model: the model
    carries the Transform layer (`signatures.make_signatures`), whose vocabulary asset the
    rewriter deletes from its copy before converting.
    """
    module = tf.Module()
    module.model_variables = list(model.variables)

    @tf.function(input_signature=[
        tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=INPUT_NAME)])
    def serve(image):
        return {OUTPUT_NAME: tf.cast(model(image, training=False), tf.float32)}

    module.serve = serve
    tf.saved_model.save(module, path, signatures={
        tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY: serve})


def _rewriter(mode: str, representative: np.ndarray) -> TFLiteRewriter:
    """TFX's TFLiteRewriter for `mode`: float32 as is; float16 weights; int8 weights and
    activations calibrated on `representative`, with float32 input and output (so every mode
    takes the same pixels) and float kernels only where an op has no int8 one."""
    options = {}
    if mode == "float16":
        options = dict(quantization_optimizations=[tf.lite.Optimize.DEFAULT],
                       quantization_supported_types=[tf.float16])
    elif mode == "int8":
        if not len(representative):
            raise ValueError("int8 conversion needs representative train images; the train "
                             "split is empty")
        options = dict(quantization_optimizations=[tf.lite.Optimize.DEFAULT],
                       # The converter calls this for a fresh generator of input lists.
                       representative_dataset=lambda: ([image[np.newaxis]]
                                                       for image in representative))
    # The pixel model has no assets of ours (the labels go to labels.txt): nothing to copy.
    return TFLiteRewriter(name=f"tflite_{mode}", filename=MODEL_FILE,
                          copy_assets=False, copy_assets_extra=False,
                          signature_key=tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY,
                          **options)


def convert(model: tf.keras.Model, image_size: int, mode: str, out_dir: str,
            class_names: Sequence[str], representative: np.ndarray) -> str:
    """Converts `model` to `<out_dir>/model.tflite` (+ `labels.txt`) with TFX's TFLiteRewriter.

    TFX 1.16 ships the rewriter without a `converters.rewrite_saved_model` helper, so its
    `perform_rewrite` is called here. It has what every mode needs (optimizations, supported
    types, a representative dataset); what it lacks is not needed: its other keyword
    arguments never reach the converter and `quantization_enable_full_integer` only checks
    that a dataset is given, so it makes no integer-only input or output, which the shared
    float input rules out anyway.

    Args:
      mode: float32, float16 or int8.
      class_names: in label-index order.
      representative: float32 [N, size, size, 3] train pixels (used by int8 only).

    Returns:
      The path of model.tflite.
    """
    if mode not in CONVERSIONS:
        raise ValueError(f"TFLite mode {mode!r}: choose one of {', '.join(CONVERSIONS)}")
    source = tempfile.mkdtemp(prefix="tflite-source-")
    try:
        _save_pixel_model(model, image_size, source)
        _rewriter(mode, representative).perform_rewrite(
            rewriter.ModelDescription(rewriter.ModelType.SAVED_MODEL, source),
            rewriter.ModelDescription(rewriter.ModelType.TFLITE_MODEL, out_dir))
    finally:
        shutil.rmtree(source)
    with tf.io.gfile.GFile(os.path.join(out_dir, LABELS_FILE), "w") as f:
        f.write("".join(f"{name}\n" for name in class_names))
    return os.path.join(out_dir, MODEL_FILE)


def pixels(image_bytes: Sequence[bytes], image_size: int) -> np.ndarray:
    """What a caller feeds the TFLite model: encoded images decoded and resized by the
    Transform's own function, float32 [N, size, size, 3] in [0, 255]."""
    return preprocessing.decode_and_resize(tf.constant(list(image_bytes)), image_size).numpy()


class TFLiteClassifier:
    """A TFLite model file and its `labels.txt`, run by the TFLite interpreter, one image at a
    time (as on a device). One thread: a per-image latency that other load moves least."""

    def __init__(self, path: str, num_threads: int = 1):
        with tf.io.gfile.GFile(path, "rb") as f:
            content = f.read()
        self.size_bytes = len(content)
        self.interpreter = tf.lite.Interpreter(model_content=content, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        labels = os.path.join(os.path.dirname(path), LABELS_FILE)
        if not tf.io.gfile.exists(labels):
            raise FileNotFoundError(f"{labels} is missing: a TFLite model's class names are "
                                    "in the labels.txt published beside it (line i: class i)")
        with tf.io.gfile.GFile(labels) as f:
            self.labels: List[str] = [line.rstrip("\n") for line in f]

    @property
    def image_size(self) -> int:
        return int(self._input["shape"][1])

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities of one float32 [size, size, 3] image."""
        self.interpreter.set_tensor(self._input["index"],
                                    image[np.newaxis].astype(np.float32, copy=False))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output["index"])[0]


def evaluate(tflite_path: str, saved_model_dir: str,
             serialized_examples: Iterable[bytes]) -> TFLiteEvaluation:
    """Runs both models on the examples: the SavedModel through `serving_examples`, the TFLite
    model on the pixels of the SavedModel's own Transform graph (`transform_features`), so
    both see the same preprocessing. Latency is the median interpreter call per image: the
    first calls (delegate set-up) and other processes' interruptions do not move it.

    Raises:
      ValueError: when there are no examples.
    """
    loaded = tf.saved_model.load(saved_model_dir)
    transform = loaded.signatures[signatures.TRANSFORM_FEATURES]
    serve = loaded.signatures[signatures.SERVING_EXAMPLES]
    classifier = TFLiteClassifier(tflite_path)
    image_xf = features.transformed_name(features.IMAGE_KEY)
    label_xf = features.transformed_name(features.LABEL_KEY)
    labels, saved_top1, tflite_top1, seconds = [], [], [], []
    batch: List[bytes] = []

    def run(batch: List[bytes]) -> None:
        examples = tf.constant(batch)
        transformed = transform(examples=examples)
        labels.extend(transformed[label_xf].numpy().reshape(-1).tolist())
        saved_top1.extend(np.argmax(serve(examples=examples)["probabilities"].numpy(), -1))
        for image in transformed[image_xf].numpy():
            started = time.perf_counter()
            tflite_top1.append(int(np.argmax(classifier.probabilities(image))))
            seconds.append(time.perf_counter() - started)

    for example in serialized_examples:
        batch.append(example)
        if len(batch) == EVALUATION_BATCH:
            run(batch)
            batch = []
    if batch:
        run(batch)
    if not labels:
        raise ValueError("no test examples to evaluate the TFLite model on")
    labels_a, saved_a, tflite_a = map(np.asarray, (labels, saved_top1, tflite_top1))
    return TFLiteEvaluation(
        images=len(labels), accuracy=float(np.mean(tflite_a == labels_a)),
        savedmodel_accuracy=float(np.mean(saved_a == labels_a)),
        top1_agreement=float(np.mean(tflite_a == saved_a)),
        size_bytes=classifier.size_bytes, latency_ms=1000 * float(np.median(seconds)))


def judge(evaluation: TFLiteEvaluation, max_accuracy_drop: float) -> str:
    """"" when the TFLite model may be published, else the reason it may not."""
    drop = evaluation.savedmodel_accuracy - evaluation.accuracy
    # A tolerance for the float sums: a drop of exactly the margin is allowed.
    if drop > max_accuracy_drop + 1e-9:
        return (f"TFLite accuracy {evaluation.accuracy:.4f} is {drop:.4f} below the "
                f"SavedModel's {evaluation.savedmodel_accuracy:.4f} on {evaluation.images} "
                f"test images; the margin is tflite_max_accuracy_drop={max_accuracy_drop}")
    return ""
