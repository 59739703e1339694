"""The table and plot of `finetune compare`: one row per variant from its finished run, the
best variant and whether it can be told from the next."""
from __future__ import annotations

import csv
import dataclasses
import os
from typing import List, Optional, Sequence, Tuple

from tfx_finetune.components import history as history_lib
from tfx_finetune.pipeline.config import PipelineConfig
from tfx_finetune.pipeline.config_checks import UNFREEZE_ALL
from tfx_finetune.reports import plotting, run_summary, significance
from tfx_finetune.reports.formatting import number

COLUMNS = ("backbone", "unfreeze", "phase1_trained_params", "phase2_trained_params",
           "phase1_val_accuracy", "phase2_val_accuracy", "test_accuracy", "test_accuracy_low",
           "test_accuracy_high", "train_seconds", "model_mb", "run_id", "error")
# Below this p-value, McNemar's test tells the best variant from the next.
SIGNIFICANCE = 0.05


@dataclasses.dataclass
class Row:
    """One variant's results; `error` says why a variant has none."""

    backbone: str
    unfreeze: str
    phase1_trained_params: Optional[int] = None
    phase2_trained_params: Optional[int] = None
    phase1_val_accuracy: Optional[float] = None
    phase2_val_accuracy: Optional[float] = None
    test_accuracy: Optional[float] = None
    # The 95 % interval of the test accuracy (`significance.accuracy_interval`).
    test_accuracy_low: Optional[float] = None
    test_accuracy_high: Optional[float] = None
    train_seconds: Optional[float] = None
    model_mb: Optional[float] = None
    run_id: str = ""
    error: str = ""
    cached: List[str] = dataclasses.field(default_factory=list)
    # Right or wrong on each test image, in the same order for every variant (the paired test).
    test_correct: Tuple[bool, ...] = ()


def depth_text(depth: int) -> str:
    return "all" if depth == UNFREEZE_ALL else str(depth)


def _dir_mb(path: str) -> float:
    total = sum(os.path.getsize(os.path.join(root, f))
                for root, _, files in os.walk(path) for f in files)
    return round(total / 2**20, 2)


def row(config: PipelineConfig, summary: run_summary.RunSummary) -> Row:
    row = Row(config.backbone, depth_text(config.unfreeze_layers), run_id=summary.run_id,
              phase1_val_accuracy=summary.phase1_val_accuracy,
              phase2_val_accuracy=summary.phase2_val_accuracy,
              test_accuracy=summary.test_accuracy,
              cached=[c.node_id for c in summary.components if c.state == "cached"])
    history = history_lib.read(summary.history_path) if summary.history_path else None
    if history:
        row.phase1_trained_params = history_lib.trained_params(history, history_lib.PHASE1)
        row.phase2_trained_params = history_lib.trained_params(history, history_lib.PHASE2)
        row.train_seconds = round(history_lib.training_seconds(history), 1)
    if summary.model_dir:
        row.model_mb = _dir_mb(summary.model_dir)
        _add_test_answers(row, summary)
    return row


def _add_test_answers(row: Row, summary: run_summary.RunSummary) -> None:
    """The variant's answer on each test image, and its accuracy's 95 % interval."""
    from tfx_finetune.components.labels import vocabulary
    from tfx_finetune.reports import prediction_analysis

    analysis = prediction_analysis.analyse_test_split(
        summary.model_dir, summary.examples_uri, vocabulary(summary.model_dir), mistakes=0)
    if analysis.count:
        row.test_correct = analysis.correct
        row.test_accuracy_low, row.test_accuracy_high = significance.accuracy_interval(
            sum(analysis.correct), analysis.count)


def runner_up(rows: Sequence[Row], best: Optional[Row]) -> Optional[Row]:
    """The best of the other variants, by the same ranking."""
    return best_row([r for r in rows if r is not best]) if best else None


def separation_line(best: Row, second: Row) -> str:
    """Whether the best variant can be told apart from the next on the same test images."""
    p_value, disagreements = significance.mcnemar_p_value(best.test_correct,
                                                          second.test_correct)
    name = f"{second.backbone}, unfreeze {second.unfreeze}"
    head = (f"Next: {name} (test accuracy {second.test_accuracy:.4f}). On the "
            f"{len(best.test_correct)} test images the two disagree on {disagreements}; "
            f"McNemar's exact test gives p = {p_value:.3g}")
    if p_value < SIGNIFICANCE:
        return f"{head}: the best is better at the 5 % level."
    return (f"{head}: **the two cannot be told apart** at the 5 % level; more test images, "
            "or other criteria (training time, model size), should decide.")


def best_row(rows: Sequence[Row]) -> Optional[Row]:
    """Highest test accuracy; ties go to the better phase-2 (else phase-1) validation
    accuracy, then to fewer parameters trained."""
    scored = [r for r in rows if r.test_accuracy is not None]
    if not scored:
        return None

    def key(r: Row):
        val = r.phase2_val_accuracy if r.phase2_val_accuracy is not None else r.phase1_val_accuracy
        trained = r.phase2_trained_params or r.phase1_trained_params or 0
        return (r.test_accuracy, val or 0.0, -trained)

    return max(scored, key=key)


def _test_cell(row: Row) -> str:
    if row.test_accuracy_low is None:
        return number(row.test_accuracy)
    return (f"{number(row.test_accuracy)} ({row.test_accuracy_low:.3f}–"
            f"{row.test_accuracy_high:.3f})")


def write_table(rows: Sequence[Row], best: Optional[Row], out_dir: str) -> None:
    """results.csv (every column, raw values) and results.md (the same, formatted)."""
    with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(["" if getattr(row, c) is None else getattr(row, c) for c in COLUMNS])
    headers = ("backbone", "unfreeze", "params trained (phase 1 / 2)", "val acc phase 1",
               "val acc phase 2", "test acc (95 % interval)", "training s", "model MB")
    lines = ["# Backbone × unfreeze-depth comparison", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        if r.error:
            lines.append(f"| {r.backbone} | {r.unfreeze} | failed: {r.error} |" + " |" * 5)
            continue
        lines.append("| " + " | ".join([
            r.backbone, r.unfreeze,
            f"{number(r.phase1_trained_params)} / {number(r.phase2_trained_params)}",
            number(r.phase1_val_accuracy), number(r.phase2_val_accuracy), _test_cell(r),
            number(r.train_seconds), number(r.model_mb)]) + " |")
    lines += ["", "Unfreeze 0 trains the head only (no phase 2); 'all' unfreezes every base "
                  "layer except BatchNorm. Test accuracy is on the test split, which no variant "
                  "trains or early-stops on.", ""]
    if best:
        lines.append(f"**Best: {best.backbone}, unfreeze {best.unfreeze}** "
                     f"(test accuracy {best.test_accuracy:.4f}).")
        second = runner_up(rows, best)
        if second and best.test_correct and second.test_correct:
            lines += ["", separation_line(best, second)]
    lines.append("")
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines))


def plot(rows: Sequence[Row], depths: Sequence[str], path: str) -> None:
    """Test accuracy (solid, with its 95 % interval) and best validation accuracy (dashed)
    against unfreeze depth, one colour per backbone."""
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, name in enumerate(dict.fromkeys(r.backbone for r in rows)):
        colour = f"C{index}"
        mine = {r.unfreeze: r for r in rows if r.backbone == name and not r.error}
        xs = [i for i, d in enumerate(depths) if d in mine]
        accuracy = [mine[depths[i]].test_accuracy for i in xs]
        low = [mine[depths[i]].test_accuracy_low for i in xs]
        high = [mine[depths[i]].test_accuracy_high for i in xs]
        if all(v is not None for v in low + high):
            errors = [[a - lo for a, lo in zip(accuracy, low)],
                      [hi - a for a, hi in zip(accuracy, high)]]
        else:
            errors = None
        ax.errorbar(xs, accuracy, yerr=errors, fmt="-o", color=colour, capsize=4,
                    label=f"{name} test (95 % interval)")
        val = [mine[depths[i]].phase2_val_accuracy
               if mine[depths[i]].phase2_val_accuracy is not None
               else mine[depths[i]].phase1_val_accuracy for i in xs]
        ax.plot(xs, val, "--x", color=colour, alpha=0.6, label=f"{name} validation")
    ax.set_xticks(range(len(depths)), depths)
    ax.set_xlabel("base layers unfrozen in phase 2 (0: head only)")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy vs unfreeze depth")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
