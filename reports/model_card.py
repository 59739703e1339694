"""The run's model card: model_card.json in the Model Card Toolkit's schema, from the report's data."""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfx_finetune.components import backbones, signatures, splits
from tfx_finetune.components.trainer_config import NO_MIX
from tfx_finetune.pipeline.config import PipelineConfig
from tfx_finetune.pipeline.config_checks import UNFREEZE_ALL
from tfx_finetune.reports.formatting import number
from tfx_finetune.reports.run_report import (class_order, classes_missing_from_splits,
                                              per_class_table, sorted_matrix)
from tfx_finetune.reports.run_summary import RunSummary, blessing_text
from tfx_finetune.reports.significance import accuracy_interval

# The Model Card Toolkit's newest JSON schema, which its own `json_utils` validates against:
# tensorflow/model-card-toolkit, model_card_toolkit/schema/v0.0.2/model_card.schema.json
# (read at commit 74d7e6d8d3163b830711b226491ccd976a2d7018). The Toolkit itself cannot be
# installed beside TFX 1.16 (it pins TensorFlow Model Analysis < 0.42), so the card is written
# here as plain JSON in that schema; every key below is one the schema defines.
SCHEMA_VERSION = "0.0.2"
FILE_NAME = "model_card.json"
_SPLIT_ROLES = {
    splits.TRAIN: "trains the head (phase 1) and the unfrozen top of the base (phase 2)",
    splits.EVAL: "validation: early stopping and the best epoch of each phase",
    splits.TEST: "held out: the quantitative analysis and the blessing",
}


def class_slice(name: str) -> str:
    """The `slice` of a per-class performance metric."""
    return f"class {name}"


def counts_text(counts: Dict[str, int]) -> str:
    """Images per class, classes in `class_order`: "0: 12, 1: 9"."""
    return ", ".join(f"{name}: {counts[name]}" for name in class_order(counts))


def _version(summary: RunSummary, config: PipelineConfig, date: datetime.date) -> dict:
    """The published version, if any; a run that published nothing names its pipeline run."""
    if not summary.pushed_to:
        why = (blessing_text(summary, config) if not summary.blessed
               else f"serving check: {summary.serving_check or 'not run'}")
        return {"name": f"unpublished candidate of run {summary.run_id}",
                "date": date.isoformat(), "diff": f"not published ({why})"}
    version = os.path.basename(summary.pushed_to.rstrip("/"))
    diff = (f"published by run {summary.run_id}" if summary.new_version else
            f"identical to the serving version {version}: run {summary.run_id} published "
            "nothing new")
    return {"name": version, "date": date.isoformat(), "diff": diff}


def _architecture(config: PipelineConfig, classes: int) -> str:
    depth = ("every base layer" if config.unfreeze_layers == UNFREEZE_ALL
             else f"the top {config.unfreeze_layers} base layers")
    phase2 = (f"phase 2 trained {depth} (BatchNorm frozen) for up to "
              f"{config.phase2_epochs} epochs at learning rate "
              f"{config.effective_phase2_learning_rate:g}, the base at "
              f"{config.base_learning_rate_factor:g} x that rate"
              if config.phase2_epochs and config.unfreeze_layers else "no phase 2")
    hidden = f"Dense({config.head_units}, relu) -> " if config.head == "dense" else ""
    # From scratch (weights "none") nothing is frozen, so phase 1 trains on the images.
    on_features = (" on the frozen base features, computed once" if config.phase1_on_features
                   and config.weights != backbones.NO_WEIGHTS else "")
    mixing = (f", {config.mix} of the training images (Beta alpha {config.mix_alpha:g})"
              if config.mix != NO_MIX else "")
    optimizer = (f"AdamW (weight decay {config.weight_decay:g} on the head)"
                 if config.weight_decay else "Adam")
    return (f"{config.backbone} (keras.applications, alpha {config.alpha}) at "
            f"{config.image_size}x{config.image_size} px, base weights {config.backbone_weights}; "
            f"head GlobalAveragePooling2D -> {hidden}Dropout({config.dropout:g}) -> "
            f"Dense({classes}, softmax); recipe {config.recipe}: {optimizer}, "
            f"{config.lr_schedule} learning rate after {config.warmup_epochs} warm-up epoch(s), "
            f"label smoothing {config.label_smoothing:g}, augmentation "
            f"{config.augment or 'none'}{mixing}; phase 1 trained the head{on_features}"
            f" for up to {config.phase1_epochs} epochs at learning rate "
            f"{config.phase1_learning_rate:g}; {phase2}")


def _trained_architecture(config: PipelineConfig, summary: RunSummary, classes: int) -> str:
    """`_architecture` as the Trainer trained it: with a Tuner, its best values."""
    if not summary.tuning:
        return _architecture(config, classes)
    tuned = dataclasses.replace(config, **summary.tuning.best)
    return (f"{_architecture(tuned, classes)} (phase 2's rate, depth and epochs chosen by the "
            f"Tuner from {len(summary.tuning.trials)} trials on the eval split)")


def _datasets(config: PipelineConfig, split_counts: Dict[str, Dict[str, int]]) -> List[dict]:
    source = (f"{config.data_dir} ({config.input_format} input, split "
              f"{'/'.join(map(str, config.split_ratios))} by a hash of each image's path)")
    datasets = []
    for split in (s for s in splits.SPLIT_NAMES if s in split_counts):
        counts = split_counts[split]
        datasets.append({"name": f"{split} split", "description": (
            f"{number(sum(counts.values()))} image(s) of {source}; {_SPLIT_ROLES[split]}. "
            f"Images per class: {counts_text(counts)}")})
    return datasets


def _metrics(summary: RunSummary, evaluation: Optional[Tuple[np.ndarray, int]],
             class_names: Sequence[str]) -> List[dict]:
    """Overall accuracy (with its 95 % Wilson interval) and the report's per-class precision
    and recall (recall is the class's accuracy), from the same confusion matrix."""
    if evaluation is None or summary.test_accuracy is None:
        return []
    matrix, unknown = evaluation
    accuracy = {"type": "accuracy", "value": number(summary.test_accuracy)}
    total = int(matrix.sum()) + unknown
    if total:
        low, high = accuracy_interval(int(np.trace(matrix)), total)
        accuracy["confidence_interval"] = {"lower_bound": number(low),
                                           "upper_bound": number(high)}
    metrics = [accuracy]
    for name, _, precision, recall in per_class_table(*sorted_matrix(matrix, class_names)):
        metrics += [{"type": "precision", "value": number(precision), "slice": class_slice(name)},
                    {"type": "recall", "value": number(recall), "slice": class_slice(name)}]
    return metrics


def _limitations(config: PipelineConfig, class_names: Sequence[str],
                 split_counts: Dict[str, Dict[str, int]]) -> List[dict]:
    """The configured text, then what this run's data leaves unmeasured."""
    limitations = [{"description": config.limitations}]
    for split, absent in classes_missing_from_splits(split_counts, class_names).items():
        limitations.append({"description": f"No {split} images for class(es) "
                                           f"{', '.join(absent)}: the {split} figures say "
                                           "nothing about them."})
    return limitations


def build_model_card(config: PipelineConfig, summary: RunSummary, class_names: Sequence[str],
                     split_counts: Dict[str, Dict[str, int]],
                     evaluation: Optional[Tuple[np.ndarray, int]],
                     date: datetime.date) -> dict:
    """The model card of one run, as a dict in Model Card Toolkit schema v0.0.2.

    Args:
      class_names: the model's label vocabulary, in its order.
      split_counts: {split: {class: images}}, as in the report's data table.
      evaluation: the report's confusion matrix (vocabulary order) and the count of test
        examples with a label outside the vocabulary (`run_report.confusion_matrix`); None
        when the run was not evaluated.
      date: the day of the run.
    """
    classes = class_order(class_names)
    details = {
        "name": config.model_name,
        "overview": (f"{config.backbone} fine-tuned by tfx-finetune to classify images into "
                     f"{len(classes)} classes: {', '.join(classes)}."),
        "documentation": (f"Trained by pipeline run {summary.run_id} of pipeline "
                          f"{config.pipeline_name}. Blessing: {blessing_text(summary, config)}. "
                          f"Serving check: {summary.serving_check or 'not run'}."),
        "version": _version(summary, config, date),
    }
    if summary.pushed_to or summary.model_dir:
        details["path"] = summary.pushed_to or summary.model_dir
    return {
        "schema_version": SCHEMA_VERSION,
        "model_details": details,
        "model_parameters": {
            "model_architecture": _trained_architecture(config, summary, len(classes)),
            "data": _datasets(config, split_counts),
            "input_format": (f"{signatures.SERVING_DEFAULT}: encoded images (JPEG, PNG, GIF "
                             f"or BMP) as bytes; {signatures.SERVING_EXAMPLES}: serialized "
                             "tf.Example with the image bytes in the `image` feature"),
            "output_format": "probabilities (one per class), class_id, class_name",
        },
        "quantitative_analysis": {
            "performance_metrics": _metrics(summary, evaluation, class_names)},
        "considerations": {
            "use_cases": [{"description": config.intended_use}],
            "limitations": _limitations(config, class_names, split_counts),
        },
    }


def write_model_card(card: dict, out_dir: str) -> str:
    """Writes `card` to <out_dir>/model_card.json and returns the file's path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, FILE_NAME)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(card, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return path
