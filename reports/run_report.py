"""The run report: Markdown and PNGs under <workspace>/reports/<run>/ for humans to read."""
from __future__ import annotations

import io
import math
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfx_finetune.components import history as history_lib
from tfx_finetune.components import signatures, splits
from tfx_finetune.components.label_counts import class_counts, statistics_path
from tfx_finetune.reports import plotting, tuning
from tfx_finetune.reports.formatting import number
from tfx_finetune.reports.prediction_analysis import Prediction, PredictionAnalysis
from tfx_finetune.reports.run_summary import (BASELINE_MODEL_NAME, RunSummary, TFLiteResult,
                                              tflite_text)


def class_order(names: Sequence[str]) -> List[str]:
    """`names` as a person looks them up: by name, numbers in their numeric order ("2" before
    "10"), not in the label vocabulary's frequency order."""
    def key(name: str):
        return [int(part) if i % 2 else part.casefold()
                for i, part in enumerate(re.split(r"(\d+)", name))]

    return sorted(names, key=lambda name: (key(name), name))


def confusion_matrix(evaluation_uri: str, num_classes: int) -> Tuple[np.ndarray, int]:
    """[actual, predicted] counts in vocabulary order from TFMA's MultiClassConfusionMatrixPlot
    (overall slice), and the count of examples whose actual label is not in the vocabulary
    (label -1: a class the Trainer never saw), which no row of the matrix may absorb."""
    import tensorflow_model_analysis as tfma

    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    unknown = 0
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
                count = int(round(entry.num_weighted_examples))
                if not 0 <= entry.actual_class_id < num_classes:
                    unknown += count
                elif 0 <= entry.predicted_class_id < num_classes:
                    matrix[entry.actual_class_id, entry.predicted_class_id] += count
    return matrix, unknown


def sorted_matrix(matrix: np.ndarray, names: Sequence[str]) -> Tuple[np.ndarray, List[str]]:
    """`matrix` (rows and columns in the order of `names`) reordered by `class_order`."""
    position = {name: i for i, name in enumerate(names)}
    order = [position[name] for name in class_order(names)]
    return matrix[np.ix_(order, order)], [names[i] for i in order]


def per_class_table(matrix: np.ndarray, names: List[str]) -> List[Tuple[str, int, float, float]]:
    """(class, support, precision, recall) per class, in the order of `names`; NaN where
    undefined. Recall is the class's accuracy: the share of its test images predicted as it."""
    rows = []
    for i, name in enumerate(names):
        predicted, actual = matrix[:, i].sum(), matrix[i, :].sum()
        precision = matrix[i, i] / predicted if predicted else float("nan")
        recall = matrix[i, i] / actual if actual else float("nan")
        rows.append((name, int(actual), float(precision), float(recall)))
    return rows


def classes_missing_from_splits(split_counts: Dict[str, Dict[str, int]],
                                class_names: Sequence[str]) -> Dict[str, List[str]]:
    """{split: the classes with no image in it} for eval and test, sorted by `class_order`;
    splits where every class has images are left out."""
    known = set(class_names).union(*split_counts.values())
    missing = {}
    for split in (splits.EVAL, splits.TEST):
        absent = [c for c in known if not split_counts.get(split, {}).get(c)]
        if absent and split in split_counts:
            missing[split] = class_order(absent)
    return missing


def split_label_counts(statistics_uri: str) -> Dict[str, Dict[str, int]]:
    """{split: {class: count}} from StatisticsGen's output (the label's rank histogram)."""
    import tensorflow_data_validation as tfdv

    counts: Dict[str, Dict[str, int]] = {}
    for split in splits.SPLIT_NAMES:
        path = statistics_path(statistics_uri, split)
        if os.path.exists(path):
            counts[split] = class_counts(tfdv.load_stats_binary(path))
    return counts


def _plot_confidence(analysis: PredictionAnalysis, path: str) -> None:
    plt = plotting.pyplot()
    edges, right, wrong = analysis.histogram()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(edges[:-1], right, width=np.diff(edges), align="edge", label="correct",
           color="tab:green", edgecolor="white")
    ax.bar(edges[:-1], wrong, width=np.diff(edges), align="edge", bottom=right, label="wrong",
           color="tab:red", edgecolor="white")
    ax.set_xlabel("confidence (top class probability)")
    ax.set_ylabel("test images")
    ax.set_title("Confidence of the test-split predictions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_mistakes(mistakes: List[Prediction], path: str) -> None:
    from PIL import Image

    plt = plotting.pyplot()
    cols = min(5, len(mistakes))
    rows = math.ceil(len(mistakes) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, mistake in zip(axes.flat, mistakes):
        ax.imshow(np.asarray(Image.open(io.BytesIO(mistake.image)).convert("RGB")),
                  interpolation="nearest")
        ax.set_title(f"true {mistake.label}\npredicted {mistake.predicted}\n"
                     f"confidence {mistake.confidence:.3f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _prediction_lines(analysis: Optional[PredictionAnalysis], out_dir: str) -> List[str]:
    """The report's prediction analysis section; writes its PNGs into `out_dir`."""
    lines = ["## Prediction analysis (test split)", ""]
    if analysis is None:
        return lines + ["Not analysed: no trained model."]
    if not analysis.count:
        return lines + ["The test split is empty: nothing to analyse."]
    _plot_confidence(analysis, os.path.join(out_dir, "confidence_histogram.png"))
    lines += [f"The candidate model's `{signatures.SERVING_EXAMPLES}` signature over the "
              f"{analysis.count} test examples: accuracy {number(analysis.accuracy, 3)}.", "",
              analysis.confidence_line(), "",
              "![confidence histogram](confidence_histogram.png)", "",
              "### Most confident mistakes", ""]
    if not analysis.mistakes:
        return lines + ["No mistakes on the test split."]
    _plot_mistakes(analysis.mistakes, os.path.join(out_dir, "mistakes.png"))
    lines += ["| image | true | predicted | confidence |", "|---|---|---|---|"]
    lines += [f"| {m.path} | {m.label} | {m.predicted} | {m.confidence:.3f} |"
              for m in analysis.mistakes]
    return lines + ["", "![most confident mistakes](mistakes.png)"]


def _plot_confusion(matrix: np.ndarray, names: List[str], path: str) -> None:
    plt = plotting.pyplot()

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
    plt = plotting.pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    start = 0
    for phase, values in history.items():
        epochs = range(start + 1, start + 1 + len(values.get(history_lib.LOSS, [])))
        for ax, metric in zip(axes, (history_lib.ACCURACY, history_lib.LOSS)):
            ax.plot(epochs, values.get(metric, []), "-o", label=f"{phase} train")
            ax.plot(epochs, values.get(history_lib.VAL_PREFIX + metric, []), "--o",
                    label=f"{phase} validation")
            ax.set_title(metric)
            ax.set_xlabel("epoch")
        start += len(values.get(history_lib.LOSS, []))
        if phase != list(history)[-1]:
            for ax in axes:
                ax.axvline(start + 0.5, color="grey", linestyle=":")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _data_lines(class_names: Sequence[str],
                split_counts: Dict[str, Dict[str, int]]) -> List[str]:
    """The report's data section: images per split and class, and the classes a split lacks."""
    shown = class_order(set(class_names).union(*split_counts.values()))
    lines = ["## Data", "", "| split | " + " | ".join(shown) + " | total |",
             "|---|" + "---|" * (len(shown) + 1)]
    for split, counts in split_counts.items():
        lines.append(f"| {split} | " + " | ".join(str(counts.get(c, 0)) for c in shown)
                     + f" | {sum(counts.values())} |")
    missing = classes_missing_from_splits(split_counts, class_names)
    for split, absent in missing.items():
        lines += ["", f"No {split} images for class(es) {', '.join(absent)}: the {split} "
                      f"figures below say nothing about them. Add images to these classes."]
    return lines


def _evaluation_lines(summary: RunSummary, matrix: np.ndarray, unknown: int,
                      class_names: List[str], out_dir: str) -> List[str]:
    """The report's evaluation section from the confusion matrix (vocabulary order); writes
    confusion_matrix.png."""
    matrix, names = sorted_matrix(matrix, class_names)
    _plot_confusion(matrix, names, os.path.join(out_dir, "confusion_matrix.png"))
    accuracy = float("nan") if summary.test_accuracy is None else summary.test_accuracy
    lines = [f"Accuracy: {number(accuracy, 3)}", ""]
    if unknown:
        lines += [f"{unknown} test examples have a label the model was not trained on; they "
                  "are in the accuracy but in no row below.", ""]
    lines += ["| class | support | precision | recall (accuracy on the class) |",
              "|---|---|---|---|"]
    lines += [f"| {name} | {support} | {number(precision, 3)} | {number(recall, 3)} |"
              for name, support, precision, recall in per_class_table(matrix, names)]
    return lines + ["", "![confusion matrix](confusion_matrix.png)"]


def _model_card_lines(card: Optional[dict], path: Optional[str]) -> List[str]:
    """The report's model card section: the card's text fields as the card holds them. Its
    per-class figures are the evaluation table's, so they are not shown twice."""
    lines = ["## Model card", ""]
    if card is None:
        return lines + ["Not written."]
    details, parameters = card["model_details"], card["model_parameters"]
    version = details["version"]
    lines += [f"`{os.path.basename(path or '')}` beside this report, in the Model Card "
              f"Toolkit's schema v{card['schema_version']}.", "",
              f"- **{details['name']}**, version {version['name']} ({version['date']}): "
              f"{version['diff']}",
              f"- {details['overview']}", f"- {details['documentation']}",
              f"- architecture: {parameters['model_architecture']}",
              f"- input: {parameters['input_format']}",
              f"- output: {parameters['output_format']}", "", "### Data", ""]
    lines += [f"- {d['name']}: {d['description']}" for d in parameters["data"]]
    lines += ["", "### Quantitative analysis", ""]
    metrics = card["quantitative_analysis"]["performance_metrics"]
    overall = [m for m in metrics if "slice" not in m]
    if not overall:
        lines.append("Not evaluated.")
    for metric in overall:
        interval = metric.get("confidence_interval")
        lines.append(f"- {metric['type']} on the test split: {metric['value']}" + (
            f" (95 % interval {interval['lower_bound']} to {interval['upper_bound']})"
            if interval else ""))
    if len(metrics) > len(overall):
        lines.append("- per class: precision and recall as in the evaluation table above")
    considerations = card["considerations"]
    lines += ["", "### Intended use", ""]
    lines += [f"- {u['description']}" for u in considerations["use_cases"]]
    lines += ["", "### Limitations", ""]
    return lines + [f"- {u['description']}" for u in considerations["limitations"]]


def _tflite_lines(tflite: Optional[TFLiteResult]) -> List[str]:
    """The report's TFLite section: the TFLite model against the SavedModel on the test split,
    and whether it was published; nothing without a TFLite model."""
    if not tflite:
        return []
    lines = ["", f"## TFLite ({tflite.mode})", ""]
    evaluation = tflite.evaluation
    if evaluation:
        lines += [f"The TFLite interpreter (one thread, one image at a time) and the SavedModel "
                  f"on the same {evaluation.images} test images:", "",
                  "| accuracy | SavedModel accuracy | top-1 agreement | size | latency |",
                  "|---|---|---|---|---|",
                  f"| {evaluation.accuracy:.4f} | {evaluation.savedmodel_accuracy:.4f} | "
                  f"{evaluation.top1_agreement:.4f} | {evaluation.size_bytes / 2**20:.2f} MiB | "
                  f"{evaluation.latency_ms:.2f} ms/image |", ""]
    return lines + [f"- {tflite_text(tflite)}"]


def write_report(summary: RunSummary, out_dir: str, history: Optional[dict],
                 evaluation: Optional[Tuple[np.ndarray, int]], class_names: List[str],
                 split_counts: Dict[str, Dict[str, int]], blessing_reason: str,
                 analysis: Optional[PredictionAnalysis] = None,
                 model_card: Optional[dict] = None) -> str:
    """Writes report.md (+ confusion_matrix.png, training_curves.png, confidence_histogram.png,
    mistakes.png) and returns its path.

    Args:
      evaluation: the test split's confusion matrix in vocabulary order and the count of
        examples whose label is outside the vocabulary (`confusion_matrix`); None when the
        run was not evaluated.
      class_names: the model's label vocabulary, in its order (classes are shown sorted by
        `class_order`).
      split_counts: {split: {class: images}}.
      analysis: the candidate's test-split predictions.
      model_card: the run's model card (`reports.model_card`), written to
        `summary.model_card_path`.
    """
    os.makedirs(out_dir, exist_ok=True)
    lines = [f"# Run {summary.run_id}", ""] + _data_lines(class_names, split_counts)
    lines += ["", "## Training", ""]
    if history:
        _plot_history(history, os.path.join(out_dir, "training_curves.png"))
        for phase, values in history.items():
            val = values.get(history_lib.VAL_ACCURACY) or [float("nan")]
            epochs = len(values.get(history_lib.LOSS, []))
            lines.append(f"- {phase}: {epochs} epochs, best validation "
                         f"accuracy {number(max(val), 3)}")
        lines += ["", "![training curves](training_curves.png)"]
    else:
        lines.append("Trainer output not found.")
    if summary.tuning:
        lines += tuning.report_lines(summary.tuning)
    lines += ["", "## Evaluation (test split)", ""]
    if evaluation is not None and class_names:
        lines += _evaluation_lines(summary, *evaluation, class_names, out_dir)
    else:
        lines.append("Not evaluated.")
    lines += [""] + _prediction_lines(analysis, out_dir)
    lines += ["", "## Blessing and publishing", "", f"- {blessing_reason}",
              f"- serving check: {summary.serving_check or 'not run'}",
              f"- pushed: {summary.pushed_to or 'nothing'}"
              + ("" if summary.new_version or not summary.pushed_to
                 else " (identical model already serving; nothing new published)")]
    lines += _tflite_lines(summary.tflite)
    lines += [""] + _model_card_lines(model_card, summary.model_card_path)
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def safe_run_dir_name(run_id: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]", "-", run_id)
