"""`finetune infer-schema`: a starting point for a curated schema, from a run's statistics."""
from __future__ import annotations

import argparse
import os

from google.protobuf import text_format

from tfx_finetune.commands import options
from tfx_finetune.components import features, splits
from tfx_finetune.components.label_counts import class_counts, statistics_path

HEADER = ("# proto-file: tensorflow_metadata/proto/v0/schema.proto\n"
          "# proto-message: Schema\n#\n"
          "# Inferred by `finetune infer-schema` from {source}.\n"
          "# Review before use: see schemas/README.md.\n\n")


def infer_schema_text(statistics_uri: str) -> str:
    """The schema TFDV infers from the train split, shaped the way the pipeline reads it.

    Raises:
      FileNotFoundError: when the run has no train statistics.
    """
    import tensorflow_data_validation as tfdv

    path = statistics_path(statistics_uri, splits.TRAIN)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no train statistics at {path}: run the pipeline first")
    statistics = tfdv.load_stats_binary(path)
    schema = tfdv.infer_schema(statistics)
    for name in (features.IMAGE_KEY, features.LABEL_KEY, features.PATH_KEY):
        feature = tfdv.get_feature(schema, name)
        # One value per example; the shape replaces any inferred value count (one oneof).
        feature.shape.ClearField("dim")
        feature.shape.dim.add().size = 1
        feature.presence.min_fraction = 1.0
        feature.ClearField("domain_info")
    # The value lists TFDV infers on small data (every path, every label): a curated schema
    # keeps only the label's domain, set below.
    schema.ClearField("string_domain")
    # Class names are strings even when they look like numbers ("0".."9").
    label = tfdv.get_feature(schema, features.LABEL_KEY)
    label.string_domain.name = features.LABEL_KEY
    label.string_domain.value.extend(sorted(class_counts(statistics)))
    return HEADER.format(source=path) + text_format.MessageToString(schema)


def command(args: argparse.Namespace) -> int:
    """`finetune infer-schema`: the schema of the latest run's statistics, into `--output`."""
    from tfx_finetune.reports import run_summary

    config = options.make_config(args)
    summary = run_summary.summarize(config)
    if not summary.statistics_uri:
        raise FileNotFoundError(f"the latest run in {config.workspace} has no statistics")
    text = infer_schema_text(summary.statistics_uri)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.output}; review it (schemas/README.md), then set schema_path to it")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("infer-schema", help="write the schema TFDV infers from the "
                                                        "latest run's statistics, to curate")
    options.add_config_flags(parser)
    parser.add_argument("--output", required=True, metavar="FILE")
    parser.set_defaults(func=command)
