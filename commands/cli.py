"""The `finetune` parser and entry point: `run`, `demo`, `demo-data`, `compare`, `lr-find`,
`predict` (with `--bulk`), `serve-config` and `infer-schema` from this folder's modules,
`compile` and `submit` from `kubeflow/cli.py`."""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import warnings
from typing import Optional, Sequence

import tfx_finetune.components  # noqa: F401  (fixes the Keras version before TensorFlow loads)
from tfx_finetune.commands import compare, console, demo, lr_find, predict, run, schema_tool
from tfx_finetune.pipeline import config_checks

# Entry-point group of the functions that add subcommands to `finetune`.
COMMANDS_GROUP = "tfx_finetune.commands"


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand; each module adds its own and sets `func`, its handler, which returns
    the exit code. The modules import TensorFlow, TFX and Beam only when a handler runs."""
    parser = argparse.ArgumentParser(
        prog="finetune", description="Fine-tune pretrained Keras image models with TFX.")
    sub = parser.add_subparsers(dest="command", required=True)
    run.add_parsers(sub)
    compare.add_parser(sub)
    demo.add_data_parser(sub)
    predict.add_parsers(sub)
    lr_find.add_parser(sub)
    schema_tool.add_parser(sub)
    # More subcommands (`compile`, `submit`) come from packages above this one, which register
    # an `add_commands(subparsers)` function under COMMANDS_GROUP (setup.py): commands/ never
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
    except console.Stopped:
        return 1  # `console.logged` has said why
    except (config_checks.ConfigError, FileNotFoundError) as e:
        print(f"finetune: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
