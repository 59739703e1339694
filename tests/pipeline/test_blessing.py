"""The Evaluator's blessing rules, checked with TFMA's own validator on our EvalConfig."""
import dataclasses

import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.utils import config_util

from tfx_finetune.pipeline.config import ConfigError, PipelineConfig
from tfx_finetune.pipeline.pipeline import eval_config


def _validate(accuracy: float, config=PipelineConfig(min_accuracy=0.8), slice_key=()):
    """A first run: no baseline, so TFX's Evaluator applies the config as "rubber stamp"."""
    first_run_config = config_util.update_eval_config_with_defaults(
        eval_config(config), has_baseline=False, rubber_stamp=True)
    key = tfma.metrics.MetricKey(name="sparse_categorical_accuracy")
    return metrics_validator.validate_metrics((slice_key, {key: accuracy}), first_run_config)


def test_value_threshold_decides_a_first_blessing():
    assert _validate(0.85).validation_ok
    assert not _validate(0.75).validation_ok


def test_blessing_is_judged_on_the_whole_test_split_not_per_class():
    assert _validate(0.5, slice_key=(("label", "3"),)).validation_ok


def test_nan_accuracy_is_not_blessed():
    assert not _validate(float("nan")).validation_ok


def test_every_config_has_a_value_threshold():
    thresholds = [t.threshold for spec in eval_config(PipelineConfig()).metrics_specs
                  for m in spec.metrics for t in m.per_slice_thresholds]
    assert thresholds and all(t.HasField("value_threshold") for t in thresholds)
    with pytest.raises(ConfigError, match="value threshold"):
        dataclasses.replace(PipelineConfig(), min_accuracy=0.0)
