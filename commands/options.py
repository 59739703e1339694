"""The flags several subcommands share: config fields, Beam workers, --verbose; and the config
and log file they give."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Optional

from tfx_finetune.commands import console
from tfx_finetune.pipeline import config as config_lib

# Flags with a name of their own; every other config field is `--<field-with-dashes>`.
_SHORT_FLAGS = {"data_dir": "--data"}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` and one flag per `PipelineConfig` field."""
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


def worker_count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: use 0 (Beam in this process) or a number "
                                         "of worker processes")
    return int(text)


def add_beam_workers_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--beam-workers", type=worker_count, default=0, metavar="N",
        help="Beam worker processes for ingestion, statistics, Transform and evaluation "
             "(default: 0, Beam runs in this process, in memory, which suits laptop-sized "
             "data). N > 0 starts N processes (multi-processing DirectRunner): for large "
             "folders, with N at most the machine's cores. A run with another N than the last "
             "runs the Beam components again: their cache key includes the Beam arguments")


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose", action="store_true",
        help="print everything (TensorFlow, TFX, Beam, Keras) on the console; by default the "
             "console shows progress and the summary, the rest goes to "
             "<workspace>/logs/<time>-<command>.log")


def add_long_command_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of a command that runs the pipeline: config fields, Beam workers, --verbose."""
    add_config_flags(parser)
    add_beam_workers_flag(parser)
    add_verbose_flag(parser)


def overrides(args: argparse.Namespace) -> dict:
    """The config fields given as flags (None where a flag is absent)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config_lib.PipelineConfig)}


def make_config(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """The config of `--config` with the flags applied."""
    return config_lib.make_config(overrides(args), args.config)


def log_path(args: argparse.Namespace, config: config_lib.PipelineConfig) -> Optional[str]:
    """The log file of a long command, or None with --verbose (everything on the console)."""
    return None if args.verbose else console.log_path(config.workspace, args.command)
