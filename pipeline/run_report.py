"""The run report: Markdown and PNGs under <workspace>/reports/<run>/ for humans to read."""
from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np

from pipeline.report import BASELINE_MODEL_NAME, RunSummary, is_candidate_accuracy


def confusion_matrix(evaluation_uri: str, num_classes: int) -> np.ndarray:
    """[actual, predicted] counts from TFMA's MultiClassConfusionMatrixPlot (overall slice)."""
    import tensorflow_model_analysis as tfma

    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for plots in tfma.load_plots(evaluation_uri):
        if plots.slice_key.single_slice_keys:
            continue
        for key_and_value in plots.plot_keys_and_values:
            if key_and_value.key.model_name == BASELINE_MODEL_NAME:
                continue
            value = key_and_value.value
            if not value.HasField("multi_class_confusion_matrix_at_thresholds"):
                continue
            at_threshold = value.multi_class_confusion_matrix_at_thresholds.matrices[0]
            for entry in at_threshold.entries:
                if 0 <= entry.predicted_class_id < num_classes:
                    matrix[entry.actual_class_id, entry.predicted_class_id] += int(
                        round(entry.num_weighted_examples))
    return matrix


def per_class_table(matrix: np.ndarray, names: List[str]) -> List[Tuple[str, int, float, float]]:
    """(class, support, precision, recall) per class; NaN where undefined."""
    rows = []
    for i, name in enumerate(names):
        predicted, actual = matrix[:, i].sum(), matrix[i, :].sum()
        precision = matrix[i, i] / predicted if predicted else float("nan")
        recall = matrix[i, i] / actual if actual else float("nan")
        rows.append((name, int(actual), float(precision), float(recall)))
    return rows


def label_slice_accuracy(evaluation_uri: str) -> Dict[str, float]:
    """Test accuracy per `label` slice, from TFMA's sliced metrics."""
    import tensorflow_model_analysis as tfma

    result = {}
    for slice_metrics in tfma.load_metrics(evaluation_uri):
        keys = slice_metrics.slice_key.single_slice_keys
        if len(keys) != 1 or keys[0].column != "label":
            continue
        for key_and_value in slice_metrics.metric_keys_and_values:
            if is_candidate_accuracy(key_and_value.key):
                result[keys[0].bytes_value.decode()] = key_and_value.value.double_value.value
    return result


def split_label_counts(statistics_uri: str) -> Dict[str, Dict[str, int]]:
    """{split: {class: count}} from StatisticsGen's output (the label's rank histogram)."""
    import tensorflow_data_validation as tfdv

    counts: Dict[str, Dict[str, int]] = {}
    for split in ("train", "eval", "test"):
        path = os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb")
        if not os.path.exists(path):
            continue
        for dataset in tfdv.load_stats_binary(path).datasets:
            for feature in dataset.features:
                if feature.path.step == ["label"]:
                    counts[split] = {b.label: int(b.sample_count)
                                     for b in feature.string_stats.rank_histogram.buckets}
    return counts


def _plot_confusion(matrix: np.ndarray, names: List[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.5 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > matrix.max() / 2 else "black", fontsize=8)
    ax.set_title("Confusion matrix (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_history(history: Dict[str, Dict[str, list]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    start = 0
    for phase, values in history.items():
        epochs = range(start + 1, start + 1 + len(values.get("loss", [])))
        for ax, metric in zip(axes, ("accuracy", "loss")):
            ax.plot(epochs, values.get(metric, []), "-o", label=f"{phase} train")
            ax.plot(epochs, values.get(f"val_{metric}", []), "--o", label=f"{phase} validation")
            ax.set_title(metric)
            ax.set_xlabel("epoch")
        start += len(values.get("loss", []))
        if phase != list(history)[-1]:
            for ax in axes:
                ax.axvline(start + 0.5, color="grey", linestyle=":")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"


def write_report(summary: RunSummary, out_dir: str, history: Optional[dict],
                 evaluation_uri: Optional[str], class_names: List[str],
                 split_counts: Dict[str, Dict[str, int]], blessing_reason: str) -> str:
    """Writes report.md (+ confusion_matrix.png, training_curves.png) and returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    lines = [f"# Run {summary.run_id}", "", "## Data", "",
             "| split | " + " | ".join(class_names) + " | total |",
             "|---|" + "---|" * (len(class_names) + 1)]
    for split, counts in split_counts.items():
        lines.append(f"| {split} | " + " | ".join(str(counts.get(c, 0)) for c in class_names)
                     + f" | {sum(counts.values())} |")
    lines += ["", "## Training", ""]
    if history:
        _plot_history(history, os.path.join(out_dir, "training_curves.png"))
        for phase, values in history.items():
            val = values.get("val_accuracy") or [float("nan")]
            lines.append(f"- {phase}: {len(values.get('loss', []))} epochs, best validation "
                         f"accuracy {_fmt(max(val))}")
        lines += ["", "![training curves](training_curves.png)"]
    else:
        lines.append("Trainer output not found.")
    lines += ["", "## Evaluation (test split)", ""]
    if evaluation_uri and class_names:
        matrix = confusion_matrix(evaluation_uri, len(class_names))
        _plot_confusion(matrix, class_names, os.path.join(out_dir, "confusion_matrix.png"))
        sliced = label_slice_accuracy(evaluation_uri)
        lines += [f"Accuracy: {_fmt(summary.test_accuracy or float('nan'))}", "",
                  "| class | support | precision | recall | accuracy (label slice) |",
                  "|---|---|---|---|---|"]
        for name, support, precision, recall in per_class_table(matrix, class_names):
            lines.append(f"| {name} | {support} | {_fmt(precision)} | {_fmt(recall)} | "
                         f"{_fmt(sliced.get(name, float('nan')))} |")
        lines += ["", "![confusion matrix](confusion_matrix.png)"]
    else:
        lines.append("Not evaluated.")
    lines += ["", "## Blessing and publishing", "", f"- {blessing_reason}",
              f"- serving check: {summary.serving_check or 'not run'}",
              f"- pushed: {summary.pushed_to or 'nothing'}"
              + ("" if summary.new_version or not summary.pushed_to
                 else " (identical model already serving; nothing new published)")]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def safe_run_dir_name(run_id: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]", "-", run_id)


def load_history(path: str) -> Optional[dict]:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
