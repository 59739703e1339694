"""The `finetune` parser: every subcommand, compile and submit through `kubeflow/cli.py`."""
from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import os
import sys
import time
import warnings
from typing import Optional, Sequence

import tfx_finetune.components  # noqa: F401  (fixes the Keras version before TensorFlow loads)
from tfx_finetune.pipeline import config as config_lib
from tfx_finetune.pipeline import config_checks, console, demo
from tfx_finetune.pipeline.formatting import number

# Entry-point group of the functions that add subcommands to `finetune`.
COMMANDS_GROUP = "tfx_finetune.commands"

# Flags with a name of their own; every other config field is `--<field-with-dashes>`.
_SHORT_FLAGS = {"data_dir": "--data"}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML file of config fields")
    for field in dataclasses.fields(config_lib.PipelineConfig):
        flag = _SHORT_FLAGS.get(field.name, "--" + field.name.replace("_", "-"))
        default = field.default
        if isinstance(default, bool):
            # `--no-<field>` too, so a YAML that switches a field on can be overridden back.
            # default=None: an absent flag leaves the YAML's value (make_config skips None).
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=None, help=f"(default: {default})")
            continue
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(flag, dest=field.name, metavar="VALUE",
                            help=f"(default: {shown})")


def _worker_count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: use 0 (Beam in this process) or a number "
                                         "of worker processes")
    return int(text)


def _add_beam_workers_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--beam-workers", type=_worker_count, default=0, metavar="N",
        help="Beam worker processes for ingestion, statistics, Transform and evaluation "
             "(default: 0, Beam runs in this process, in memory, which suits laptop-sized "
             "data). N > 0 starts N processes (multi-processing DirectRunner): for large "
             "folders, with N at most the machine's cores. A run with another N than the last "
             "runs the Beam components again: their cache key includes the Beam arguments")


def _add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose", action="store_true",
        help="print everything (TensorFlow, TFX, Beam, Keras) on the console; by default the "
             "console shows progress and the summary, the rest goes to "
             "<workspace>/logs/<time>-<command>.log")


def _log_path(args: argparse.Namespace, config: config_lib.PipelineConfig) -> Optional[str]:
    """The log file of a long command, or None with --verbose (everything on the console)."""
    return None if args.verbose else console.log_path(config.workspace, args.command)


def _stopped(command: str, error: Exception, log: Optional[str]) -> int:
    """Reports a run stopped by the data or a busy workspace (not a crash); the exit code."""
    print(f"finetune: {command} stopped: {error}", file=sys.stderr)
    if log:
        print(f"full log: {log}", file=sys.stderr)
    return 1


def _stopping_errors() -> tuple:
    """The errors by which the data or a busy workspace stops a run (not a crash): commands
    report them with `_stopped`. Imported on call, inside the log: TensorFlow's start-up
    lines belong there."""
    from tfx_finetune.components.data_gate.executor import DataValidationError
    from tfx_finetune.components.image_example_gen.errors import IngestionError
    from tfx_finetune.pipeline.local_runner import WorkspaceBusyError

    return IngestionError, DataValidationError, WorkspaceBusyError


def _overrides(args: argparse.Namespace) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config_lib.PipelineConfig)}


def _run(config: config_lib.PipelineConfig, args: argparse.Namespace) -> int:
    from tfx_finetune.pipeline import run_summary, up_to_date

    started = time.time()
    recorded = up_to_date.recorded_summary(config)
    if recorded:
        print("nothing changed since the last run (config, data, schema, weights, code and "
              "workspace): every component would come from the cache, so the pipeline is not "
              "started. Its summary:")
        print(run_summary.format_summary(run_summary.RunSummary.from_dict(recorded), config))
        print(f"  wall time: {time.time() - started:.1f} s")
        return 0
    log = _log_path(args, config)
    with console.to_log_file(log):
        # Imported inside: TensorFlow's start-up lines belong in the log.
        stopping_errors = _stopping_errors()
        from tfx_finetune.pipeline import local_runner

        config_checks.check_weights(config)  # before ingestion, statistics and Transform run
        try:
            summary = local_runner.run(config, local_runner.beam_worker_args(args.beam_workers))
        except stopping_errors as e:
            summary, stopped = None, e
    if summary is None:
        return _stopped("run", stopped, log)
    up_to_date.record(config, summary.to_json())
    print(run_summary.format_summary(summary, config))
    print(f"  wall time of the run: {time.time() - started:.1f} s")
    if log:
        print(f"  full log: {log}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    return _run(config_lib.make_config(_overrides(args), args.config), args)


def _demo_config(args: argparse.Namespace, prepare: bool = True) -> config_lib.PipelineConfig:
    """The demo's config with the flags applied; with `prepare`, writes the digits and the
    backbone if missing."""
    overrides = _overrides(args)
    base = demo.demo_config(overrides.pop("workspace") or "workspace")
    config = config_lib.make_config(overrides, args.config, base=base)
    if prepare:
        demo.prepare(config)
    return config


def cmd_demo(args: argparse.Namespace) -> int:
    return _run(_demo_config(args), args)


def cmd_lr_find(args: argparse.Namespace) -> int:
    from tfx_finetune.pipeline.lr_find import check_range

    check_range(args.min_lr, args.max_lr, args.steps)
    config = (_demo_config(args) if args.demo
              else config_lib.make_config(_overrides(args), args.config))
    started = time.time()
    log = _log_path(args, config)
    with console.to_log_file(log):
        # Imported inside: TensorFlow's start-up lines belong in the log.
        stopping_errors = _stopping_errors()
        from tfx_finetune.pipeline import lr_find

        config_checks.check_weights(config)  # before ingestion, statistics and Transform run
        try:
            _, suggestion, png, data = lr_find.lr_find(config, args.min_lr, args.max_lr,
                                                       args.steps)
            stopped = None
        except (*stopping_errors, lr_find.LrFindError) as e:
            stopped = e
    if stopped:
        return _stopped("lr-find", stopped, log)
    print(lr_find.format_suggestion(suggestion, png, data))
    print(f"  wall time: {time.time() - started:.1f} s")
    if log:
        print(f"  full log: {log}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tfx_finetune.pipeline import compare

    # The demo's variants each get their backbone pretrained as they come (`prepare` below).
    config = (_demo_config(args, prepare=False) if args.demo
              else config_lib.make_config(_overrides(args), args.config))
    if args.list:
        variants = compare.recorded_variants(config)
        for v in variants:
            print(f"{v['compare_id']}  {v['backbone']:<20} unfreeze {v['unfreeze']:<4} "
                  f"test accuracy {number(v['test_accuracy'])}  (run {v['run_id']})")
        if not variants:
            print(f"no compare recorded in {config.metadata_path}")
        return 0
    if not args.backbones or not args.unfreeze:
        raise config_checks.ConfigError("compare needs --backbones and --unfreeze (or --list)")
    backbones, depths = compare.parse_backbones(args.backbones), compare.parse_depths(args.unfreeze)
    log = _log_path(args, config)
    with console.to_log_file(log):
        # Imported inside: TensorFlow's start-up lines belong in the log.
        stopping_errors = _stopping_errors()
        from tfx_finetune.pipeline import local_runner

        try:
            result = compare.run_compare(config, backbones, depths,
                                         local_runner.beam_worker_args(args.beam_workers),
                                         prepare=demo.prepare if args.demo else None)
            stopped = None
        except stopping_errors as e:
            stopped = e
    if stopped:
        return _stopped("compare", stopped, log)
    with open(os.path.join(result.out_dir, "results.md")) as f:
        print(f.read())
    print(f"table: {result.out_dir}/results.md and results.csv; plot: "
          f"{result.out_dir}/accuracy_vs_unfreeze.png")
    if log:
        print(f"full log: {log}")
    if result.best:
        depth = result.best.unfreeze
        print(f"to publish the best variant: finetune {'demo' if args.demo else 'run'} "
              f"[same flags] --backbone {result.best.backbone} --unfreeze-layers {depth}")
    return 0 if result.best else 1


def cmd_demo_data(args: argparse.Namespace) -> int:
    out_dir = demo.demo_data_dir(args.workspace)
    written = demo.write_digits(out_dir)
    print(f"wrote {written} images to {out_dir}" if written else f"{out_dir} already exists")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    if args.bulk or args.output or args.beam_workers or args.beam_args:
        from tfx_finetune.pipeline import bulk_predict

        return bulk_predict.command(args)
    from tfx_finetune.pipeline import predict

    print(predict.run_predict(args.model, args.inputs, args.top_k, args.json))
    return 0


def cmd_serve_config(args: argparse.Namespace) -> int:
    from tfx_finetune.pipeline import predict

    config = config_lib.make_config(_overrides(args), args.config)
    print(predict.serve_config(config.serving_dir, args.rest_port, args.grpc_port))
    return 0


def cmd_infer_schema(args: argparse.Namespace) -> int:
    from tfx_finetune.pipeline import run_summary, schema_tool

    config = config_lib.make_config(_overrides(args), args.config)
    summary = run_summary.summarize(config)
    if not summary.statistics_uri:
        raise FileNotFoundError(f"the latest run in {config.workspace} has no statistics")
    text = schema_tool.infer_schema_text(summary.statistics_uri)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.output}; review it (schemas/README.md), then set schema_path to it")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune", description="Fine-tune pretrained Keras image models with TFX.")
    sub = parser.add_subparsers(dest="command", required=True)
    pipeline_commands = [
        ("run", cmd_run, "run the pipeline on an image folder <root>/<class>/<image>"),
        ("demo", cmd_demo, "offline demo: scikit-learn digits on a backbone pretrained on MNIST "
                           "(creates both under the workspace if missing), then the full "
                           "pipeline")]
    for name, func, help_text in pipeline_commands:
        command = sub.add_parser(name, help=help_text)
        _add_config_flags(command)
        _add_beam_workers_flag(command)
        _add_verbose_flag(command)
        command.set_defaults(func=func)
    comp = sub.add_parser(
        "compare", help="train and evaluate backbones × unfreeze depths on your data (shared "
                        "upstream, nothing published); writes a table, a plot, the best variant")
    comp.add_argument("--backbones", metavar="A,B,…", help="comma list of backbone names")
    comp.add_argument("--unfreeze", metavar="N,…", help="comma list of phase-2 depths: layer "
                                                        "counts, 0 (head only) or all")
    comp.add_argument("--demo", action="store_true",
                      help="on the offline demo data, pretraining missing backbones on MNIST")
    comp.add_argument("--list", action="store_true",
                      help="list the compare variants recorded in the workspace's ML Metadata")
    _add_config_flags(comp)
    _add_beam_workers_flag(comp)
    _add_verbose_flag(comp)
    comp.set_defaults(func=cmd_compare)
    data = sub.add_parser("demo-data", help="write scikit-learn's digits as PNG class folders")
    data.add_argument("--workspace", default="workspace")
    data.set_defaults(func=cmd_demo_data)
    pred = sub.add_parser("predict", help="classify images with a published model")
    pred.add_argument("--model", required=True,
                      help="a .tflite file, a version directory, or a serving or tflite base dir "
                           "(newest version is used)")
    pred.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                      help="image files or folders; <folder>/<class>/<image> counts as labelled")
    pred.add_argument("--top-k", type=int, default=3)
    pred.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pred.add_argument("--bulk", action="store_true", help="score one FOLDER (recursively, any "
                      "size) with Beam's RunInference into --output, rejects beside it")
    pred.add_argument("--output", metavar="FILE.jsonl", help="--bulk: the JSON-lines file")
    pred.add_argument("--beam-workers", type=_worker_count, default=0, metavar="N",
                      help="--bulk: N DirectRunner worker processes (default 0: in memory)")
    pred.add_argument("--beam-arg", dest="beam_args", action="append", default=[],
                      metavar="--OPT=V", help="--bulk: a Beam pipeline option (repeatable)")
    pred.set_defaults(func=cmd_predict)
    serve = sub.add_parser("serve-config", help="print the TF Serving command, models.config "
                                                "and example requests for published models")
    _add_config_flags(serve)
    serve.add_argument("--rest-port", type=int, default=8501)
    serve.add_argument("--grpc-port", type=int, default=8500)
    serve.set_defaults(func=cmd_serve_config)
    lr = sub.add_parser("lr-find", help="learning-rate range test for phase 1: loss-vs-rate "
                                         "curve and a suggested phase1_learning_rate")
    _add_config_flags(lr)
    _add_verbose_flag(lr)
    lr.add_argument("--demo", action="store_true",
                    help="start from the demo's config, as `finetune demo` does")
    lr.add_argument("--min-lr", type=float, default=1e-6, metavar="RATE",
                    help="first rate of the sweep (default: 1e-6)")
    lr.add_argument("--max-lr", type=float, default=1.0, metavar="RATE",
                    help="last rate of the sweep, at most 1 (default: 1)")
    lr.add_argument("--steps", type=int, default=100,
                    help="phase-1 training steps (batches) of the sweep (default: 100)")
    lr.set_defaults(func=cmd_lr_find)
    infer = sub.add_parser("infer-schema", help="write the schema TFDV infers from the latest "
                                                "run's statistics, to curate")
    _add_config_flags(infer)
    infer.add_argument("--output", required=True, metavar="FILE")
    infer.set_defaults(func=cmd_infer_schema)
    # More subcommands (`compile`, `submit`) come from packages above this one, which register
    # an `add_commands(subparsers)` function under COMMANDS_GROUP (setup.py): pipeline/ never
    # imports kubeflow/.
    for entry_point in importlib.metadata.entry_points(group=COMMANDS_GROUP):
        entry_point.load()(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    # TensorFlow's C++ start-up notices (CUDA probing, CPU features) drown the progress lines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Google client libraries warn about the Python and grpc versions TFX 1.16 pins, once per
    # imported module: dozens of lines of noise on every command.
    warnings.filterwarnings("ignore", category=FutureWarning, module="google")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (config_checks.ConfigError, FileNotFoundError) as e:
        print(f"finetune: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
