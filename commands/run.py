"""`finetune run` and `finetune demo`: run the pipeline, then summarise the run and write its
report, model card and `run_summary.json`."""
from __future__ import annotations

import argparse
import datetime
import os
import time
from typing import List, Optional

from tfx_finetune.commands import console, demo, options
from tfx_finetune.pipeline import config_checks
from tfx_finetune.pipeline.config import PipelineConfig
from tfx_finetune.reports import run_summary

RUN_SUMMARY_FILE = "run_summary.json"


def run(config: PipelineConfig,
        beam_pipeline_args: Optional[List[str]] = None) -> run_summary.RunSummary:
    """Runs the pipeline to completion (cached components are reused), with progress lines on
    the terminal; summarises it and writes the run report and `run_summary.json`.

    Raises:
      WorkspaceBusyError: when another run is using the same workspace.
    """
    from tfx_finetune.pipeline import local_runner

    local_runner.run(config, beam_pipeline_args, progress=console.progress)
    summary = run_summary.summarize(config)
    summary.report_path = write_report(config, summary)
    with open(os.path.join(config.workspace, RUN_SUMMARY_FILE), "w") as f:
        f.write(summary.to_json())
    return summary


def write_report(config: PipelineConfig, summary: run_summary.RunSummary) -> str:
    """Writes the run's model card and report into reports/<run>/ (setting
    `summary.model_card_path`) and returns the report's path."""
    from tfx_finetune.components import history as history_lib
    from tfx_finetune.components.labels import vocabulary
    from tfx_finetune.reports import model_card, prediction_analysis, run_report

    class_names = vocabulary(summary.model_dir) if summary.model_dir else []
    split_counts = (run_report.split_label_counts(summary.statistics_uri)
                    if summary.statistics_uri else {})
    # Read once: the report's evaluation table and the card's per-class figures are one.
    evaluation = (run_report.confusion_matrix(summary.evaluation_uri, len(class_names))
                  if summary.evaluation_uri and class_names else None)
    analysis = (prediction_analysis.analyse_test_split(summary.model_dir, summary.examples_uri,
                                                       class_names)
                if summary.model_dir and summary.examples_uri else None)
    out_dir = os.path.join(config.workspace, "reports",
                           run_report.safe_run_dir_name(summary.run_id))
    card = model_card.build_model_card(config, summary, class_names, split_counts, evaluation,
                                       datetime.date.today())
    summary.model_card_path = model_card.write_model_card(card, out_dir)
    return run_report.write_report(
        summary, out_dir,
        history_lib.read(summary.history_path) if summary.history_path else None,
        evaluation, class_names, split_counts, run_summary.blessing_text(summary, config),
        analysis, card)


def _run_command(config: PipelineConfig, args: argparse.Namespace) -> int:
    """Runs the pipeline unless nothing changed since the last run; prints the summary."""
    from tfx_finetune.pipeline import up_to_date

    started = time.time()
    recorded = up_to_date.recorded_summary(config)
    if recorded:
        print("nothing changed since the last run (config, data, schema, weights, code and "
              "workspace): every component would come from the cache, so the pipeline is not "
              "started. Its summary:")
        print(run_summary.format_summary(run_summary.RunSummary.from_dict(recorded), config))
        print(f"  wall time: {time.time() - started:.1f} s")
        return 0
    log = options.log_path(args, config)
    with console.logged("run", log):
        from tfx_finetune.pipeline import local_runner

        config_checks.check_weights(config)  # before ingestion, statistics and Transform run
        summary = run(config, local_runner.beam_worker_args(args.beam_workers))
    up_to_date.record(config, summary.to_json())
    print(run_summary.format_summary(summary, config))
    print(f"  wall time of the run: {time.time() - started:.1f} s")
    console.print_log_path(log)
    return 0


def run_command(args: argparse.Namespace) -> int:
    return _run_command(options.make_config(args), args)


def demo_command(args: argparse.Namespace) -> int:
    return _run_command(demo.config_from_args(args), args)


def add_parsers(subparsers) -> None:
    """`run` and `demo`."""
    for name, func, help_text in [
            ("run", run_command, "run the pipeline on an image folder <root>/<class>/<image>"),
            ("demo", demo_command, "offline demo: scikit-learn digits on a backbone pretrained "
                                   "on MNIST (creates both under the workspace if missing), "
                                   "then the full pipeline")]:
        parser = subparsers.add_parser(name, help=help_text)
        options.add_long_command_flags(parser)
        parser.set_defaults(func=func)
