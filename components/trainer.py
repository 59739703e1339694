"""The Trainer's `run_fn`: the two-phase fine-tune, composed of small functions."""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from tfx_finetune.components import history as history_lib
from tfx_finetune.components import (class_weights, features, head_on_features,
                                     model as model_lib, recipe, signatures, splits, tflite,
                                     warmup)
from tfx_finetune.components.trainer_config import (CONSTANT_SCHEDULE, NO_MIX, NO_TFLITE,
                                                     TrainerConfig)

SHUFFLE_BUFFER = 10_000
# The shuffle buffer holds decoded images: at most this many bytes of them (1,700 at 224 px).
SHUFFLE_BUFFER_BYTES = 256 * 2**20
TRANSFORM_BATCH = 256
# Eval images in the TF Serving warm-up requests beside the model (one batch per signature).
WARMUP_IMAGES = 8
# Decoded, resized images (uint8) are cached in memory up to this size, beyond it on local disk.
CACHE_BUDGET_BYTES = 2 * 2**30
# glibc's mallopt parameters (malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


@dataclasses.dataclass(frozen=True)
class Hardware:
    """Where training runs: the strategy, the global batch size and the precision policy."""

    strategy: tf.distribute.Strategy
    global_batch_size: int
    precision_policy: str


class MissingGpuError(RuntimeError):
    """The Trainer was asked for GPUs the process cannot see; the message says what to check."""


def configure_hardware(gpus: Sequence[Any], batch_size: int, required_gpus: int = 0
                       ) -> Hardware:
    """MirroredStrategy over several GPUs (global batch scaled by replicas) and mixed
    precision on GPUs; the default strategy in float32 on CPU.

    Args:
      gpus: the visible GPUs (`tf.config.list_physical_devices("GPU")`).
      batch_size: the per-replica batch size from the config.
      required_gpus: the GPUs the run asked for (`finetune compile --gpu-count`).

    Raises:
      MissingGpuError: when fewer than `required_gpus` GPUs are visible: a pod that was given
        no GPU (or a TensorFlow without CUDA) would otherwise train for hours on CPU.
    """
    if len(gpus) < required_gpus:
        raise MissingGpuError(
            f"the Trainer asked for {required_gpus} GPU(s) and TensorFlow sees {len(gpus)}: "
            "check that the pod got its nvidia.com/gpu limit on a GPU node (kubectl describe "
            "pod), that the NVIDIA device plugin runs there, and that the Trainer's image has "
            "a CUDA build of TensorFlow (--gpu-image); to train on CPU on purpose, compile "
            "with --gpu-count 0")
    if len(gpus) > 1:
        strategy: tf.distribute.Strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    policy = "mixed_float16" if gpus else "float32"
    return Hardware(strategy, batch_size * strategy.num_replicas_in_sync, policy)


def set_up(hp: TrainerConfig) -> Hardware:
    """What every training from `hp` starts with (`run_fn`, `finetune lr-find`): seeds Python,
    NumPy and TensorFlow, chooses the strategy and batch size for the visible GPUs, and sets
    the precision policy, before any model is built."""
    tf.keras.utils.set_random_seed(hp.seed)
    hardware = configure_hardware(tf.config.list_physical_devices("GPU"), hp.batch_size,
                                  hp.required_gpus)
    tf.keras.mixed_precision.set_global_policy(hardware.precision_policy)
    return hardware


def build_model(hp: TrainerConfig, num_classes: int) -> tf.keras.Model:
    """`model.build_model` with the config's backbone, size, weights, head and augmentation;
    call it inside the hardware's strategy scope."""
    return model_lib.build_model(hp.backbone, num_classes, hp.image_size, hp.weights,
                                 hp.head_units, hp.dropout, hp.augment, hp.alpha,
                                 head=hp.head)


def phase_recipe(hp: TrainerConfig, phase: int, steps_per_epoch: int,
                 from_scratch: bool = False, on_features: bool = False) -> recipe.PhaseRecipe:
    """How phase 1 or 2 trains. The base's rate factor applies to phase 2 of a pretrained
    base (from scratch, every layer learns from the start at one rate). Mixing applies to
    images only, not to a phase 1 `on_features`."""
    first = phase == 1
    return recipe.PhaseRecipe(
        learning_rate=hp.phase1_learning_rate if first else hp.phase2_learning_rate,
        epochs=hp.phase1_epochs if first else hp.phase2_epochs,
        steps_per_epoch=steps_per_epoch, schedule=hp.lr_schedule,
        warmup_epochs=hp.warmup_epochs, weight_decay=hp.weight_decay,
        base_rate_factor=1.0 if first or from_scratch else hp.base_learning_rate_factor,
        label_smoothing=hp.label_smoothing, mix=NO_MIX if on_features else hp.mix,
        mix_alpha=hp.mix_alpha)


def batches_per_epoch(dataset: tf.data.Dataset) -> int:
    """The number of batches in `dataset`, counted when tf.data cannot tell (a cached input
    is then filled one epoch early, which costs no more than that first epoch would)."""
    count = int(dataset.cardinality())
    if count >= 0:
        return count
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def _image_shape(tf_transform_output: tft.TFTransformOutput) -> List[int]:
    spec = tf_transform_output.transformed_feature_spec()
    return list(spec[features.transformed_name(features.IMAGE_KEY)].shape)


def input_fn(file_patterns: List[str], tf_transform_output: tft.TFTransformOutput,
             batch_size: int, shuffle: bool, seed: int, cache_file: str = "") -> tf.data.Dataset:
    """(image_xf, label_xf) batches from raw ExampleGen records through the Transform graph.

    Transform does not materialise its output (no float pixels on disk); the graph runs here,
    in parallel over large batches, in the first epoch only: its output is cached as uint8
    pixels (a quarter of float32; Transform's float pixels rounded, at most half a grey level
    off), in memory with `cache_file=""`, else in that local file. Every later epoch reads
    the cache, so a large photo is decoded once. The shuffle buffer holds at most
    `SHUFFLE_BUFFER_BYTES` of images (ExampleGen writes the examples in an order that already
    mixes the classes). Batches are float32 in [0, 255], as the model expects.
    """
    files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
    raw_spec = tf_transform_output.raw_feature_spec()
    image_xf = features.transformed_name(features.IMAGE_KEY)
    label_xf = features.transformed_name(features.LABEL_KEY)

    def transform(serialized):
        transformed = tf_transform_output.transform_raw_features(
            tf.io.parse_example(serialized, raw_spec), drop_unused_features=True)
        pixels = tf.cast(tf.clip_by_value(tf.round(transformed[image_xf]), 0, 255), tf.uint8)
        return pixels, transformed[label_xf]

    dataset = (splits.records(files)
               .batch(TRANSFORM_BATCH)
               .map(transform, num_parallel_calls=tf.data.AUTOTUNE)
               .unbatch()
               .cache(cache_file))
    if shuffle:
        image_bytes = int(np.prod(_image_shape(tf_transform_output)))
        buffer = max(1, min(SHUFFLE_BUFFER, SHUFFLE_BUFFER_BYTES // image_bytes))
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return (dataset.batch(batch_size)
            .map(lambda x, y: (tf.cast(x, tf.float32), y),
                 num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def first_records(file_patterns: List[str], count: int) -> List[bytes]:
    """The first `count` serialized examples of the files, in file order."""
    return splits.first_records(
        sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)), count)


def transformed_images(file_patterns: List[str], tf_transform_output: tft.TFTransformOutput,
                       count: int) -> np.ndarray:
    """The Transform's float pixels [N, size, size, 3] of the first `count` examples (ExampleGen
    writes each split in an order that mixes the classes, so these cover them)."""
    records = first_records(file_patterns, count)
    if not records:
        return np.zeros([0] + _image_shape(tf_transform_output), np.float32)
    transformed = tf_transform_output.transform_raw_features(
        tf.io.parse_example(records, tf_transform_output.raw_feature_spec()),
        drop_unused_features=True)
    return transformed[features.transformed_name(features.IMAGE_KEY)].numpy()


def record_count(file_patterns: List[str]) -> int:
    files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
    return int(splits.records(files).reduce(
        tf.constant(0, tf.int64), lambda count, _: count + 1))


def return_freed_buffers_to_the_system() -> None:
    """Makes glibc hand large freed buffers back to the system at once.

    By default glibc raises its mmap threshold each time a large buffer is freed (up to
    32 MB), so the first epoch's stream of decoded photos and image batches is then served
    from heap arenas (one per thread) that fragment and never shrink: the process grew with
    the number of images cached to disk (bench/README.md, input_memory.py). A fixed 128 KiB
    threshold and two arenas keep it flat. Process-wide; nothing happens without glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
    mallopt(_M_ARENA_MAX, 2)


@contextlib.contextmanager
def cached_inputs(split_patterns: Sequence[Tuple[List[str], bool]],
                  tf_transform_output: tft.TFTransformOutput, batch_size: int, seed: int,
                  budget_bytes: int = CACHE_BUDGET_BYTES) -> Iterator[List[tf.data.Dataset]]:
    """One `input_fn` dataset per (file patterns, shuffle) split, cached in memory when the
    decoded images of all the splits fit `budget_bytes`, else in files of a temporary local
    directory that is removed on exit, whatever happens. Memory then stays flat whatever the
    data size (the directory needs the decoded size on disk: 150 KB an image at 224 px).
    """
    return_freed_buffers_to_the_system()
    image_bytes = int(np.prod(_image_shape(tf_transform_output)))
    needed = record_count([p for patterns, _ in split_patterns for p in patterns]) * image_bytes
    directory = None if needed <= budget_bytes else tempfile.mkdtemp(prefix="trainer-cache-")
    if directory:
        logging.info("decoded images: %.1f GB, over the %.1f GB memory budget: cached in %s",
                     needed / 1e9, budget_bytes / 1e9, directory)
    try:
        yield [input_fn(patterns, tf_transform_output, batch_size, shuffle, seed,
                        cache_file=os.path.join(directory, str(i)) if directory else "")
               for i, (patterns, shuffle) in enumerate(split_patterns)]
    finally:
        if directory:
            shutil.rmtree(directory)


class _RecordEpochFacts(tf.keras.callbacks.Callback):
    """Adds what each epoch trained with to its logs (and so to the history): the optimizer's
    learning rate, the number of trainable parameters and the epoch's wall time."""

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[history_lib.LEARNING_RATE] = float(tf.keras.backend.get_value(
                self.model.optimizer.learning_rate))
            logs[history_lib.TRAINABLE_PARAMS] = int(sum(
                np.prod(w.shape) for w in self.model.trainable_weights))
            logs[history_lib.EPOCH_SECONDS] = time.perf_counter() - self._started


def _callbacks(hp: TrainerConfig, log_dir: str) -> list:
    callbacks = [
        _RecordEpochFacts(),
        tf.keras.callbacks.EarlyStopping(monitor=history_lib.VAL_ACCURACY,
                                         patience=hp.early_stopping_patience,
                                         restore_best_weights=True),
        tf.keras.callbacks.TensorBoard(log_dir=log_dir),
    ]
    if hp.reduce_lr_on_plateau:
        callbacks.append(tf.keras.callbacks.ReduceLROnPlateau(
            monitor=history_lib.VAL_LOSS, factor=0.2,
            patience=max(1, hp.early_stopping_patience - 1)))
    return callbacks


def train_two_phases(model: tf.keras.Model, train: tf.data.Dataset, val: tf.data.Dataset,
                     hp: TrainerConfig, log_dir: str,
                     weights: Optional[Dict[int, float]] = None) -> Dict[str, Dict[str, list]]:
    """Phase 1 trains the head on the frozen base (`phase1_on_features`: on its features, see
    `head_on_features`); phase 2 unfreezes the top base layers and recompiles at the phase-2
    rate, continuing the epoch count. Each phase has its own schedule, optimizer, loss and
    mixing (`phase_recipe`), stops early on validation accuracy and ends with its best
    weights. From scratch (weights="none"), both phases train every layer.

    Returns:
      Per-phase Keras history {"phase1": {...}, "phase2": {...}}, and phase 1's features_seconds.
    """
    base = model_lib.get_base(model)
    from_scratch = base.trainable
    num_classes = model.output_shape[-1]
    fitted, train1, val1, seconds = model, train, val, 0.0
    if head_on_features.applies(hp.phase1_on_features, base):
        fitted, train1, val1, seconds = head_on_features.phase1_inputs(
            model, train, val, hp.batch_size * tf.distribute.get_strategy().num_replicas_in_sync,
            hp.seed)
    scheduled = hp.lr_schedule != CONSTANT_SCHEDULE or hp.warmup_epochs
    steps = batches_per_epoch(train) if scheduled else 1  # a pass when tf.data cannot tell
    phase1_steps = batches_per_epoch(train1) if scheduled and train1 is not train else steps
    phase1_recipe = phase_recipe(hp, 1, phase1_steps, from_scratch, fitted is not model)
    train1, val1 = recipe.mixed(train1, val1, phase1_recipe, num_classes)
    model_lib.compile_model(fitted, phase1_recipe, base)
    logging.info("phase 1: head only%s, up to %d epochs at lr %g (%s)",
                 f" on features computed in {seconds:.1f} s" if fitted is not model else "",
                 hp.phase1_epochs, hp.phase1_learning_rate, hp.lr_schedule)
    phase1 = fitted.fit(train1, validation_data=val1, epochs=hp.phase1_epochs, verbose=2,
                        class_weight=weights,
                        callbacks=_callbacks(hp, os.path.join(log_dir, history_lib.PHASE1)))
    history = {history_lib.PHASE1: {**phase1.history, history_lib.FEATURES_SECONDS: [seconds]}}
    if hp.phase2_epochs and (hp.unfreeze_layers or hp.unfreeze_from):
        if from_scratch:  # every layer trains already
            unfrozen = sum(1 for layer in base.layers if layer.trainable and layer.weights)
        else:
            unfrozen = model_lib.unfreeze_top_layers(model, hp.unfreeze_layers,
                                                     hp.unfreeze_from)
        phase2_recipe = phase_recipe(hp, 2, steps, from_scratch)
        model_lib.compile_model(model, phase2_recipe)  # trainable changed
        logging.info("phase 2: %d base layers with weights unfrozen, up to %d epochs at lr %g "
                     "(%s; base layers at %g x)", unfrozen, hp.phase2_epochs,
                     hp.phase2_learning_rate, hp.lr_schedule, phase2_recipe.base_rate_factor)
        start = len(phase1.history[history_lib.LOSS])
        train2, val2 = recipe.mixed(train, val, phase2_recipe, num_classes)
        phase2 = model.fit(train2, validation_data=val2, initial_epoch=start,
                           epochs=start + hp.phase2_epochs, verbose=2, class_weight=weights,
                           callbacks=_callbacks(hp, os.path.join(log_dir, history_lib.PHASE2)))
        history[history_lib.PHASE2] = phase2.history
    return history


def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer entry point (referred to as `tfx_finetune.components.trainer.run_fn`)."""
    hp = TrainerConfig.from_custom_config(fn_args.custom_config)
    hardware = set_up(hp)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    with cached_inputs([(fn_args.train_files, True), (fn_args.eval_files, False)],
                       tf_transform_output, hardware.global_batch_size, hp.seed
                       ) as (train, val):
        weights = class_weights.training_class_weights(hp, train)
        if weights:
            logging.info("imbalanced classes: training with class weights %s", weights)
        num_classes = len(signatures.class_names(tf_transform_output))
        with hardware.strategy.scope():
            model = build_model(hp, num_classes)
            history = train_two_phases(model, train, val, hp, fn_args.model_run_dir, weights)
    with tf.io.gfile.GFile(history_lib.history_path(fn_args.model_run_dir), "w") as f:
        json.dump(history, f, indent=2, default=float)
    # save_traces=False: no per-layer call traces (every layer here has a config to rebuild
    # from); the serving signatures are traced in full regardless.
    model.save(fn_args.serving_model_dir, save_format="tf", save_traces=False,
               signatures=signatures.make_signatures(model, tf_transform_output))
    warmup.write_warmup_requests(fn_args.serving_model_dir,
                                 first_records(fn_args.eval_files, WARMUP_IMAGES))
    if hp.tflite != NO_TFLITE:
        # Beside Format-Serving in the Model artifact: the TFLiteCheck evaluates it, the
        # TFLitePusher publishes it.
        tflite.convert(
            model, hp.image_size, hp.tflite,
            tflite.tflite_dir(os.path.dirname(fn_args.serving_model_dir)),
            signatures.class_names(tf_transform_output),
            transformed_images(fn_args.train_files, tf_transform_output,
                               tflite.REPRESENTATIVE_IMAGES))
