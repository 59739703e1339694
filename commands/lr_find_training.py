"""The training side of `finetune lr-find` (`commands/lr_find.py` has the rules): the
pipeline's upstream as a partial run, what the Trainer's phase 1 fits (the head on the base's
features, or the whole model on images) stepped at each rate, and the curve and data written
at the end."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import Callable, Iterator, Tuple

import ml_metadata as mlmd
import tensorflow as tf
import tensorflow_transform as tft
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.pipeline import RunOptions
from tfx.types import artifact_utils
from tfx.utils import io_utils

from tfx_finetune.commands import console
from tfx_finetune.commands.lr_find import (DIVERGENCE_FACTOR, RULE, OUTPUT_DIR,
                                           LrFindError, Suggestion, Sweep,
                                           check_range, measured, schedule, suggest, sweep)
from tfx_finetune.components import history as history_lib
from tfx_finetune.components import (class_weights, head_on_features, model as model_lib,
                                     signatures, splits, trainer, trainer_inputs)
from tfx_finetune.components.trainer_config import CONSTANT_SCHEDULE, NO_MIX, TrainerConfig
from tfx_finetune.pipeline import local_runner, metadata_store, nodes
from tfx_finetune.pipeline.config import PipelineConfig
from tfx_finetune.pipeline.pipeline import create_pipeline
from tfx_finetune.reports import plotting, run_summary


def _latest_transform_execution(store: mlmd.MetadataStore,
                                pipeline_name: str) -> metadata_store_pb2.Execution:
    runs = store.get_contexts_by_type(metadata_store.PIPELINE_RUN_CONTEXT)
    node = store.get_context_by_type_and_name(
        metadata_store.NODE_CONTEXT, metadata_store.node_context_name(pipeline_name, nodes.TRANSFORM))
    if not runs or node is None:
        raise LrFindError(f"no {nodes.TRANSFORM} execution recorded for {pipeline_name}")
    in_run = {e.id for e in store.get_executions_by_context(max(runs, key=lambda c: c.id).id)}
    executions = [e for e in store.get_executions_by_context(node.id) if e.id in in_run]
    if not executions:
        raise LrFindError(f"the latest run of {pipeline_name} has no {nodes.TRANSFORM} execution")
    return max(executions, key=lambda e: e.id)


def run_upstream(config: PipelineConfig) -> Tuple[str, list]:
    """Runs `create_pipeline(config)` up to and including Transform (a partial run: the nodes
    after it are skipped; cached nodes are reused) under the workspace lock.

    Returns:
      The Transform graph's URI and the Examples artifacts Transform read.

    Raises:
      WorkspaceBusyError: when a run holds the workspace.
      IngestionError, DataValidationError: when the data does not get past the gate.
    """
    connection = metadata_store.connection_config(config)
    with local_runner.workspace_lock(config.workspace):
        with local_runner.progress_lines(console.progress):
            LocalDagRunner().run(create_pipeline(config, connection),
                                 run_options=RunOptions(to_nodes=[nodes.TRANSFORM]))
        store = mlmd.MetadataStore(connection)
        execution = _latest_transform_execution(store, config.pipeline_name)
        outputs = run_summary.artifacts(store, execution.id, metadata_store_pb2.Event.OUTPUT)
        inputs = run_summary.artifacts(store, execution.id, metadata_store_pb2.Event.INPUT)
    [examples_type] = store.get_artifact_types_by_id([inputs[nodes.EXAMPLES][0].type_id])
    examples = artifact_utils.deserialize_artifacts(examples_type, inputs[nodes.EXAMPLES])
    return outputs[nodes.TRANSFORM_GRAPH][0].uri, examples


@contextlib.contextmanager
def training_split(hp: TrainerConfig, transform_graph_uri: str, examples: list,
                   batch_size: int) -> Iterator[Tuple[tf.data.Dataset, int]]:
    """The Trainer's cached input (shuffled batches of `batch_size`) of the training split and
    the number of classes; the input's cache is removed on exit."""
    transform_output = tft.TFTransformOutput(transform_graph_uri)
    files = [io_utils.all_files_pattern(uri)
             for uri in artifact_utils.get_split_uris(examples, splits.TRAIN)]
    with trainer_inputs.cached_inputs([(files, True)], transform_output, batch_size,
                                      hp.seed) as (train,):
        yield train, len(signatures.class_names(transform_output))


def phase1_fit(hp: TrainerConfig, train: tf.data.Dataset, num_classes: int, batch_size: int,
               steps: int) -> Tuple[tf.keras.Model, tf.data.Dataset, str]:
    """What the Trainer's phase 1 fits (`trainer.train_two_phases`), compiled for the sweep;
    call it inside the hardware's strategy scope.

    Returns:
      The model to step, its batches, and what it is (`lr_find.measured`): with phase 1 on
      features (`head_on_features.applies`), the head and batches of `batch_size` of the frozen
      base's features of the images of the first `steps` batches of `train`; else the whole
      model and `train`.
    """
    model = trainer.build_model(hp, num_classes)
    base = model_lib.get_base(model)
    on_features = head_on_features.applies(hp.phase1_on_features, base)
    fitted, batches = model, train
    if on_features:
        # The Trainer computes the whole split's; the sweep steps on no more images than
        # `steps` batches hold, so it computes theirs only.
        batches, _ = head_on_features.feature_batches(model, train.take(steps), batch_size,
                                                      hp.seed)
        fitted = head_on_features.head_model(model)
    # Phase 1's optimizer and loss at a rate the sweep sets step by step, on the training
    # batches as they are (unmixed).
    model_lib.compile_model(fitted, dataclasses.replace(
        trainer.phase_recipe(hp, 1, 1, base.trainable, on_features),
        schedule=CONSTANT_SCHEDULE, warmup_epochs=0, mix=NO_MIX), base)
    return fitted, batches, measured(on_features, hp.augment, base.trainable)


def phase1_train_step(hp: TrainerConfig, hardware: trainer.Hardware, train: tf.data.Dataset,
                      num_classes: int, steps: int) -> Tuple[Callable[[float], float], str]:
    """A function that trains what the Trainer's phase 1 fits (`phase1_fit`) one batch at a
    given rate and returns the batch loss, and what that is: the Trainer's model, compile
    settings, hardware (`trainer.set_up`, called before) and class weights, on `train`."""
    weights = class_weights.training_class_weights(hp, train)
    with hardware.strategy.scope():
        fitted, batches, trained = phase1_fit(hp, train, num_classes,
                                              hardware.global_batch_size, steps)
    # One stream of full batches: an epoch's short last batch would make a noisy point and
    # retrace the train step for its shape; its inputs open the next epoch's batch.
    stream = iter(batches.repeat().unbatch().batch(hardware.global_batch_size,
                                                   drop_remainder=True))

    def train_step(rate: float) -> float:
        fitted.optimizer.learning_rate.assign(rate)
        inputs, labels = next(stream)
        return float(fitted.train_on_batch(inputs, labels, class_weight=weights,
                                           return_dict=True)[history_lib.LOSS])

    return train_step, trained


def _plot(result: Sweep, suggestion: Suggestion, path: str) -> None:
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(result.rates, result.losses, color="tab:blue", alpha=0.3, label="loss per step")
    ax.plot(result.rates, result.smoothed, color="tab:blue", label="smoothed loss")
    ax.plot([suggestion.lowest_rate], [min(result.smoothed)], "o", color="tab:blue",
            label=f"lowest smoothed loss, at {suggestion.lowest_rate:.1e}")
    ax.axvline(suggestion.rate, color="tab:red", linestyle="--",
               label=f"suggested {suggestion.rate:.1e} (a tenth)")
    ax.set_xscale("log")
    low = min(result.losses)
    high = min(max(result.losses), 1.2 * max(result.smoothed))  # a last spike is cut off
    pad = 0.05 * (high - low) or 0.1
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(f"phase-1 learning-rate range test\n{result.measured}", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(result: Sweep, suggestion: Suggestion, config: PipelineConfig,
                  out_dir: str) -> Tuple[str, str]:
    """Writes `lr_find.png` and `lr_find.json` to `out_dir`; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    png, data = os.path.join(out_dir, "lr_find.png"), os.path.join(out_dir, "lr_find.json")
    _plot(result, suggestion, png)
    # The whole Trainer config the sweep built and fed its model with; the sweep sets the
    # learning rate itself, and trains no epochs and no phase 2.
    trained = config.trainer_config().to_custom_config()
    with open(data, "w", encoding="utf-8") as f:
        json.dump({"suggested_learning_rate": suggestion.rate, "rule": RULE,
                   "lowest_smoothed_loss_rate": suggestion.lowest_rate,
                   "warning": suggestion.warning,
                   "divergence_factor": DIVERGENCE_FACTOR,
                   "stop_reason": result.stop_reason, "model": trained,
                   **dataclasses.asdict(result)}, f, indent=2)
    return png, data


def _print_progress(total: int) -> Callable[[int, float, float, float], None]:
    every = max(1, total // 10)

    def progress(index: int, rate: float, loss: float, recent: float) -> None:
        if index % every == 0 or index == total - 1:
            console.progress(f"[{time.strftime('%H:%M:%S')}] step {index + 1}/{total}  "
                             f"lr {rate:.1e}  loss {loss:.4f}  (recent mean {recent:.4f})")

    return progress


def lr_find(config: PipelineConfig, min_lr: float, max_lr: float,
            steps: int) -> Tuple[Sweep, Suggestion, str, str]:
    """The whole command: checks the range, runs the upstream, sweeps, writes the outputs.

    Returns:
      The sweep, the suggestion, and the paths of the PNG and the JSON.
    """
    check_range(min_lr, max_lr, steps)
    transform_graph_uri, examples = run_upstream(config)
    console.progress(f"[{time.strftime('%H:%M:%S')}] building the Trainer's phase-1 model "
                     f"({config.backbone} with a new head) and its training batches")
    hp = config.trainer_config()
    hardware = trainer.set_up(hp)
    with training_split(hp, transform_graph_uri, examples,
                        hardware.global_batch_size) as (train, num_classes):
        train_step, trained = phase1_train_step(hp, hardware, train, num_classes, steps)
        console.progress(f"[{time.strftime('%H:%M:%S')}] sweeping the rate from "
                         f"{min_lr:.1e} to {max_lr:.1e} over {steps} steps of the {trained} "
                         "(the first step compiles the training graph)")
        result = dataclasses.replace(
            sweep(train_step, schedule(min_lr, max_lr, steps), _print_progress(steps)),
            measured=trained)
    if result.stop_reason:
        console.progress(f"[{time.strftime('%H:%M:%S')}] stopped after "
                         f"{len(result.losses)} steps: {result.stop_reason}")
    suggestion = suggest(result)
    png, data = write_outputs(result, suggestion, config,
                              os.path.join(config.workspace, OUTPUT_DIR))
    return result, suggestion, png, data
