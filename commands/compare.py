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

import argparse
import dataclasses
import os
import time
from typing import List, Optional, Sequence

from tfx_finetune.commands import console, options
from tfx_finetune.components import backbones
from tfx_finetune.components.trainer_config import NO_TFLITE
from tfx_finetune.pipeline.config import PipelineConfig
from tfx_finetune.pipeline.config_checks import UNFREEZE_ALL, ConfigError, check_weights
from tfx_finetune.reports import compare_table, run_summary
from tfx_finetune.reports.compare_table import Row, depth_text
from tfx_finetune.reports.formatting import number

COMPARE_SUFFIX = "-compare"


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


def variant_configs(base: PipelineConfig, names: Sequence[str],
                    depths: Sequence[int]) -> List[PipelineConfig]:
    """Every variant's config, validated before anything runs (e.g. an image size too small
    for a backbone is refused here, naming the field). No TFLite conversion: a compare
    publishes nothing, so nothing would evaluate or publish it. No Tuner: it would search the
    unfreezing depth each variant stands for."""
    return [dataclasses.replace(base, backbone=name, unfreeze_layers=depth, tflite=NO_TFLITE,
                                tuner_trials=0, pipeline_name=base.pipeline_name + COMPARE_SUFFIX)
            for name in names for depth in depths]


def _record(config: PipelineConfig, row: Row, compare_id: str) -> None:
    """Marks the variant's pipeline_run context in ML Metadata, to be found later."""
    from tfx_finetune.pipeline import metadata_store

    store = metadata_store.open_store(config)
    context = store.get_context_by_type_and_name(metadata_store.PIPELINE_RUN_CONTEXT, row.run_id)
    context.custom_properties["compare_id"].string_value = compare_id
    context.custom_properties["backbone"].string_value = row.backbone
    context.custom_properties["unfreeze"].string_value = row.unfreeze
    if row.test_accuracy is not None:
        context.custom_properties["test_accuracy"].double_value = row.test_accuracy
    store.put_contexts([context])


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
                local_runner.run_pipeline(config, beam_pipeline_args, publish=False,
                                          progress=console.progress)
            except (IngestionError, DataValidationError):
                raise
            except Exception as e:  # a variant failing (e.g. out of memory) is a result too
                rows.append(Row(config.backbone, depth_text(config.unfreeze_layers),
                                error=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"))
                console.progress(f"[compare {index}/{len(configs)}] failed: {rows[-1].error}")
                continue
            rows.append(compare_table.row(config, run_summary.summarize(config)))
            _record(config, rows[-1], compare_id)
            console.progress(f"[compare {index}/{len(configs)}] test accuracy "
                             f"{number(rows[-1].test_accuracy)} in {time.time() - started:.0f} s")
    best = compare_table.best_row(rows)
    compare_table.write_table(rows, best, out_dir)
    compare_table.plot(rows, [depth_text(d) for d in depths],
                       os.path.join(out_dir, "accuracy_vs_unfreeze.png"))
    return Result(rows, best, out_dir)


def recorded_variants(config: PipelineConfig) -> List[dict]:
    """Every compare variant recorded in the workspace's ML Metadata, oldest first."""
    from tfx_finetune.pipeline import metadata_store

    store = metadata_store.open_store(config)
    found = []
    for context in sorted(store.get_contexts_by_type(metadata_store.PIPELINE_RUN_CONTEXT),
                          key=lambda c: c.id):
        props = context.custom_properties
        if "compare_id" not in props:
            continue
        found.append({"compare_id": props["compare_id"].string_value, "run_id": context.name,
                      "backbone": props["backbone"].string_value,
                      "unfreeze": props["unfreeze"].string_value,
                      "test_accuracy": (props["test_accuracy"].double_value
                                        if "test_accuracy" in props else None)})
    return found


def command(args: argparse.Namespace) -> int:
    """`finetune compare`."""
    from tfx_finetune.commands import demo

    # The demo's variants each get their backbone pretrained as they come (`prepare` below).
    config = (demo.config_from_args(args, prepare_missing=False) if args.demo
              else options.make_config(args))
    if args.list:
        return _print_recorded(config)
    if not args.backbones or not args.unfreeze:
        raise ConfigError("compare needs --backbones and --unfreeze (or --list)")
    names, depths = parse_backbones(args.backbones), parse_depths(args.unfreeze)
    log = options.log_path(args, config)
    with console.logged("compare", log):
        from tfx_finetune.pipeline import local_runner

        result = run_compare(config, names, depths,
                             local_runner.beam_worker_args(args.beam_workers),
                             prepare=demo.prepare if args.demo else None)
    with open(os.path.join(result.out_dir, "results.md")) as f:
        print(f.read())
    print(f"table: {result.out_dir}/results.md and results.csv; plot: "
          f"{result.out_dir}/accuracy_vs_unfreeze.png")
    console.print_log_path(log, indent="")
    if result.best:
        print(f"to publish the best variant: finetune {'demo' if args.demo else 'run'} "
              f"[same flags] --backbone {result.best.backbone} "
              f"--unfreeze-layers {result.best.unfreeze}")
    return 0 if result.best else 1


def _print_recorded(config: PipelineConfig) -> int:
    variants = recorded_variants(config)
    for v in variants:
        print(f"{v['compare_id']}  {v['backbone']:<20} unfreeze {v['unfreeze']:<4} "
              f"test accuracy {number(v['test_accuracy'])}  (run {v['run_id']})")
    if not variants:
        print(f"no compare recorded in {config.metadata_path}")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="train and evaluate backbones × unfreeze depths on your data (shared "
                        "upstream, nothing published); writes a table, a plot, the best variant")
    parser.add_argument("--backbones", metavar="A,B,…", help="comma list of backbone names")
    parser.add_argument("--unfreeze", metavar="N,…", help="comma list of phase-2 depths: layer "
                                                          "counts, 0 (head only) or all")
    parser.add_argument("--demo", action="store_true",
                        help="on the offline demo data, pretraining missing backbones on MNIST")
    parser.add_argument("--list", action="store_true",
                        help="list the compare variants recorded in the workspace's ML Metadata")
    options.add_long_command_flags(parser)
    parser.set_defaults(func=command)
