"""The Trainer's `run_fn`: the two-phase fine-tune, composed of small functions (its input
pipeline is `trainer_inputs`)."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from typing import Any, Dict, Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from tfx_finetune.components import history as history_lib
from tfx_finetune.components import (class_weights, head_on_features, model as model_lib,
                                     recipe, signatures, tflite, tuner, warmup)
from tfx_finetune.components.trainer_config import (CONSTANT_SCHEDULE, NO_MIX, NO_TFLITE,
                                                     TrainerConfig)
from tfx_finetune.components.trainer_inputs import (cached_inputs, first_records,
                                                     transformed_images)

# Eval images in the TF Serving warm-up requests beside the model (one batch per signature).
WARMUP_IMAGES = 8


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


@dataclasses.dataclass(frozen=True)
class TrainingInputs:
    """What a fine-tune of `hp` trains on: the hardware, the train and eval datasets, the
    class weights (None: unweighted) and the number of classes."""

    hardware: Hardware
    train: tf.data.Dataset
    val: tf.data.Dataset
    weights: Optional[Dict[int, float]]
    num_classes: int


@contextlib.contextmanager
def training_inputs(fn_args: FnArgs, hp: TrainerConfig,
                    tf_transform_output: tft.TFTransformOutput) -> Iterator[TrainingInputs]:
    """`set_up(hp)` and the cached datasets of the train and eval files, for the Trainer and
    for the Tuner's trials (`components.tuner.search`)."""
    hardware = set_up(hp)
    with cached_inputs([(fn_args.train_files, True), (fn_args.eval_files, False)],
                       tf_transform_output, hardware.global_batch_size, hp.seed
                       ) as (train, val):
        weights = class_weights.training_class_weights(hp, train)
        if weights:
            logging.info("imbalanced classes: training with class weights %s", weights)
        yield TrainingInputs(hardware, train, val, weights,
                             len(signatures.class_names(tf_transform_output)))


def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer entry point (referred to as `tfx_finetune.components.trainer.run_fn`);
    with a Tuner upstream, its best values replace the config's (`tuner.with_best`)."""
    hp = tuner.with_best(TrainerConfig.from_custom_config(fn_args.custom_config),
                         fn_args.hyperparameters)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    with training_inputs(fn_args, hp, tf_transform_output) as inputs:
        with inputs.hardware.strategy.scope():
            model = build_model(hp, inputs.num_classes)
            history = train_two_phases(model, inputs.train, inputs.val, hp,
                                       fn_args.model_run_dir, inputs.weights)
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
