"""Examples per class, read from StatisticsGen's output (the label's rank histogram)."""
from __future__ import annotations

import os
from typing import Dict

from tensorflow_metadata.proto.v0 import statistics_pb2

from tfx_finetune.components import features
from tfx_finetune.components.splits import split_dir

STATS_FILE = "FeatureStats.pb"


def statistics_path(statistics_uri: str, split: str) -> str:
    """Where StatisticsGen writes the statistics of `split` under its artifact's URI."""
    return os.path.join(split_dir(statistics_uri, split), STATS_FILE)


def class_counts(stats: statistics_pb2.DatasetFeatureStatisticsList) -> Dict[str, int]:
    """Examples per class, from the label feature's rank histogram ({} without one)."""
    for dataset in stats.datasets:
        for feature in dataset.features:
            if list(feature.path.step) == [features.LABEL_KEY]:
                return {b.label: int(b.sample_count)
                        for b in feature.string_stats.rank_histogram.buckets}
    return {}
