"""`finetune compare`: backbones × unfreeze depths through the same pipeline, in one table.

Every variant is the run's config with another `backbone` and `unfreeze_layers`, run through
`create_pipeline(..., publish=False)` under the pipeline name `<pipeline_name>-compare`: the
same DAG up to the Evaluator (value threshold only, nothing published). The variants share the
workspace, so ingestion, statistics, validation and Transform run once and are served from the
TFX cache for every later variant; only Trainer and Evaluator repeat. The compare pipeline has a
name of its own so that its models never become the baseline of `finetune run`.

Each variant's pipeline run is recorded in ML Metadata with the compare's id, the backbone, the
depth and the test accuracy as properties of its pipeline_run context (`recorded_variants`).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from typing import List, Optional, Sequence, Tuple

from tfx_finetune.components import backbones
from tfx_finetune.components.trainer_config import NO_TFLITE
from tfx_finetune.pipeline import console, plotting, run_summary, significance
from tfx_finetune.pipeline.config import PipelineConfig
from tfx_finetune.pipeline.config_checks import UNFREEZE_ALL, ConfigError, check_weights
from tfx_finetune.pipeline.formatting import number

COMPARE_SUFFIX = "-compare"
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


@dataclasses.dataclass
class Result:
    rows: List[Row]
    best: Optional[Row]
    out_dir: str


def parse_backbones(text: str) -> List[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in backbones.BACKBONES]
    if not names or unknown:
        raise ConfigError(f"--backbones {text!r}: unknown {', '.join(unknown) or '(empty)'}; "
                          f"choose from {', '.join(sorted(backbones.BACKBONES))}")
    return list(dict.fromkeys(names))


def parse_depths(text: str) -> List[int]:
    """`0,10,30,all` → [0, 10, 30, UNFREEZE_ALL]; 0 is the head only (no phase 2)."""
    depths = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        if part == "all":
            depths.append(UNFREEZE_ALL)
        elif part.isdigit():
            depths.append(int(part))
        else:
            raise ConfigError(f"--unfreeze {text!r}: {part!r} is not a layer count >= 0 or 'all'")
    if not depths:
        raise ConfigError("--unfreeze is empty: give layer counts and/or 'all', e.g. 0,10,all")
    return list(dict.fromkeys(depths))


def depth_text(depth: int) -> str:
    return "all" if depth == UNFREEZE_ALL else str(depth)


def variant_configs(base: PipelineConfig, names: Sequence[str],
                    depths: Sequence[int]) -> List[PipelineConfig]:
    """Every variant's config, validated before anything runs (e.g. an image size too small
    for a backbone is refused here, naming the field). No TFLite conversion: a compare
    publishes nothing, so nothing would evaluate or publish it."""
    return [dataclasses.replace(base, backbone=name, unfreeze_layers=depth, tflite=NO_TFLITE,
                                pipeline_name=base.pipeline_name + COMPARE_SUFFIX)
            for name in names for depth in depths]


def _dir_mb(path: str) -> float:
    total = sum(os.path.getsize(os.path.join(root, f))
                for root, _, files in os.walk(path) for f in files)
    return round(total / 2**20, 2)


def _row(config: PipelineConfig, summary: run_summary.RunSummary) -> Row:
    row = Row(config.backbone, depth_text(config.unfreeze_layers), run_id=summary.run_id,
              phase1_val_accuracy=summary.phase1_val_accuracy,
              phase2_val_accuracy=summary.phase2_val_accuracy,
              test_accuracy=summary.test_accuracy,
              cached=[c.node_id for c in summary.components if c.state == "cached"])
    if summary.history_path and os.path.exists(summary.history_path):
        with open(summary.history_path) as f:
            history = json.load(f)
        for phase in ("phase1", "phase2"):
            params = history.get(phase, {}).get("trainable_params")
            setattr(row, f"{phase}_trained_params", int(params[0]) if params else None)
        row.train_seconds = round(sum(
            sum(history.get(p, {}).get(key, []))
            for p in ("phase1", "phase2") for key in ("epoch_seconds", "features_seconds")), 1)
    if summary.model_dir:
        row.model_mb = _dir_mb(summary.model_dir)
        _add_test_answers(row, summary)
    return row


def _add_test_answers(row: Row, summary: run_summary.RunSummary) -> None:
    """The variant's answer on each test image, and its accuracy's 95 % interval."""
    from tfx_finetune.components.serving_check.executor import vocabulary
    from tfx_finetune.pipeline import prediction_analysis

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


def _record(config: PipelineConfig, row: Row, compare_id: str) -> None:
    """Marks the variant's pipeline_run context in ML Metadata, to be found later."""
    from tfx_finetune.pipeline.metadata_store import open_store

    store = open_store(config)
    context = store.get_context_by_type_and_name("pipeline_run", row.run_id)
    context.custom_properties["compare_id"].string_value = compare_id
    context.custom_properties["backbone"].string_value = row.backbone
    context.custom_properties["unfreeze"].string_value = row.unfreeze
    if row.test_accuracy is not None:
        context.custom_properties["test_accuracy"].double_value = row.test_accuracy
    store.put_contexts([context])


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


def run_compare(base: PipelineConfig, names: Sequence[str], depths: Sequence[int],
                beam_pipeline_args: Optional[List[str]] = None,
                prepare=None) -> Result:
    """Runs every variant (backbone-major order), then writes the table and the plot under
    `<workspace>/compare/<compare id>/`.

    A variant whose Trainer or Evaluator fails is reported in its row and the others go on;
    data problems (ingestion, the data gate) stop the whole compare, as they would stop a run.

    Args:
      prepare: called with each variant's config before it runs (the demo pretrains missing
        backbones there).

    Raises:
      ConfigError: for an invalid variant or weights that do not fit its backbone, before
        anything runs.
      FileNotFoundError: for a missing weights file (without `prepare`), before anything runs.
      WorkspaceBusyError: when another run holds the workspace.
    """
    from tfx_finetune.components.data_gate.executor import DataValidationError
    from tfx_finetune.components.image_example_gen.errors import IngestionError
    from tfx_finetune.pipeline import local_runner

    configs = variant_configs(base, names, depths)
    # One check per backbone (depths share its base). A file `prepare` has yet to make is
    # made for the variant's backbone and alpha, so it fits.
    for config in {c.backbone: c for c in configs}.values():
        if prepare is None or os.path.isfile(config.backbone_weights):
            check_weights(config)
    compare_id = time.strftime("%Y%m%d-%H%M%S")
    out_dir = os.path.join(base.workspace, "compare", compare_id)
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    with local_runner.workspace_lock(base.workspace):
        for index, config in enumerate(configs, 1):
            console.progress(f"[compare {index}/{len(configs)}] {config.backbone}, unfreeze "
                             f"{depth_text(config.unfreeze_layers)}")
            started = time.time()
            try:
                if prepare:
                    prepare(config)
                local_runner.run_pipeline(config, beam_pipeline_args, publish=False)
            except (IngestionError, DataValidationError):
                raise
            except Exception as e:  # a variant failing (e.g. out of memory) is a result too
                rows.append(Row(config.backbone, depth_text(config.unfreeze_layers),
                                error=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"))
                console.progress(f"[compare {index}/{len(configs)}] failed: {rows[-1].error}")
                continue
            rows.append(_row(config, run_summary.summarize(config)))
            _record(config, rows[-1], compare_id)
            console.progress(f"[compare {index}/{len(configs)}] test accuracy "
                             f"{number(rows[-1].test_accuracy)} in {time.time() - started:.0f} s")
    best = best_row(rows)
    write_table(rows, best, out_dir)
    plot(rows, [depth_text(d) for d in depths], os.path.join(out_dir, "accuracy_vs_unfreeze.png"))
    return Result(rows, best, out_dir)


def recorded_variants(config: PipelineConfig) -> List[dict]:
    """Every compare variant recorded in the workspace's ML Metadata, oldest first."""
    from tfx_finetune.pipeline.metadata_store import open_store

    store = open_store(config)
    found = []
    for context in sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id):
        props = context.custom_properties
        if "compare_id" not in props:
            continue
        found.append({"compare_id": props["compare_id"].string_value, "run_id": context.name,
                      "backbone": props["backbone"].string_value,
                      "unfreeze": props["unfreeze"].string_value,
                      "test_accuracy": (props["test_accuracy"].double_value
                                        if "test_accuracy" in props else None)})
    return found
