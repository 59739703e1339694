import json

import pytest

from tfx_finetune.components.trainer_config import TrainerConfig
from tfx_finetune.pipeline.config import PipelineConfig


def test_the_trainer_config_survives_the_json_custom_config_round_trip():
    config = PipelineConfig(weights="none", augment="flip,rotation").trainer_config()
    carried = json.loads(json.dumps(config.to_custom_config()))
    assert TrainerConfig.from_custom_config(carried) == config
    assert config.augment == ("flip", "rotation")


def test_whole_numbers_carried_as_floats_come_back_as_ints():
    carried = PipelineConfig(weights="none").trainer_config().to_custom_config()
    carried.update(batch_size=32.0, seed=7.0, phase1_epochs=5.0)
    rebuilt = TrainerConfig.from_custom_config(carried)
    assert (rebuilt.batch_size, rebuilt.seed, rebuilt.phase1_epochs) == (32, 7, 5)
    assert all(type(v) is int for v in (rebuilt.batch_size, rebuilt.seed, rebuilt.phase1_epochs))
    with pytest.raises(ValueError, match="whole number"):
        TrainerConfig.from_custom_config(dict(carried, batch_size=32.5))


def test_a_custom_config_from_another_version_says_to_recompile():
    carried = PipelineConfig(weights="none").trainer_config().to_custom_config()
    del carried["seed"]
    carried["warmup"] = 3
    with pytest.raises(ValueError, match=r"missing \[.seed.\], unknown \[.warmup.\]\): recompile"):
        TrainerConfig.from_custom_config(carried)
