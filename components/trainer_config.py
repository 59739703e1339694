"""The Trainer's typed configuration: what `run_fn` trains with, and its `custom_config` form."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Tuple

from tfx_finetune.components import typed_dict

# Learning-rate schedules of a phase (`components.recipe.learning_rate`).
CONSTANT_SCHEDULE = "constant"
COSINE_SCHEDULE = "cosine"
LR_SCHEDULES = (CONSTANT_SCHEDULE, COSINE_SCHEDULE)

# Train-only mixing of each image batch with itself (`components.recipe.mixed`): none, MixUp
# (Zhang et al., ICLR 2018) or CutMix (Yun et al., ICCV 2019).
NO_MIX = "none"
MIXES = (NO_MIX, "mixup", "cutmix")

# The Trainer's TFLite conversions (`components.tflite`); here, because the pipeline config
# validates against them without importing TensorFlow.
NO_TFLITE = "none"
TFLITE_MODES = (NO_TFLITE, "float32", "float16", "int8")

# `unfreeze_layers: all` (or -1): phase 2 unfreezes every base layer (BatchNorm excepted).
UNFREEZE_ALL = -1


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """The hyperparameters of one fine-tune, as `run_fn` and `finetune lr-find` use them.

    The pipeline config (`tfx_finetune.pipeline.config.PipelineConfig.trainer_config`) makes
    it; no field has a default here, so every value comes from there. `weights` is the
    resolved weights setting ("imagenet", "none" or a file path) and `weights_sha256` that
    file's digest ("" for no file). `phase2_learning_rate` is the rate phase 2 really uses.
    `augment` names the augmentations in order. `unfreeze_layers` is a count or -1 (all).
    `recipe` names the preset the other fields started from (for the record); `head`,
    `lr_schedule`, `warmup_epochs`, `weight_decay`, `base_learning_rate_factor` and
    `label_smoothing` are what `components.recipe` trains each phase with;
    `phase1_on_features` trains phase 1 on the frozen base's features (`head_on_features`);
    `mix` mixes the training images of the phases that train on images (`MIXES`), with a
    mixing ratio drawn per batch from Beta(`mix_alpha`, `mix_alpha`).
    `tflite` is the TFLite conversion after training (`TFLITE_MODES`). `required_gpus`:
    training stops with an error when fewer GPUs are visible (0: none needed).
    """

    backbone: str
    alpha: float
    weights: str
    weights_sha256: str
    image_size: int
    recipe: str
    head: str
    head_units: int
    dropout: float
    batch_size: int
    phase1_on_features: bool
    phase1_epochs: int
    phase1_learning_rate: float
    phase2_epochs: int
    phase2_learning_rate: float
    unfreeze_layers: int
    unfreeze_from: str
    early_stopping_patience: int
    reduce_lr_on_plateau: bool
    lr_schedule: str
    warmup_epochs: int
    weight_decay: float
    base_learning_rate_factor: float
    label_smoothing: float
    augment: Tuple[str, ...]
    mix: str
    mix_alpha: float
    class_weights: str
    tflite: str
    required_gpus: int
    seed: int

    def to_custom_config(self) -> Dict[str, Any]:
        """The JSON-serialisable dict the Trainer carries as `custom_config`."""
        return typed_dict.plain(self)

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any]) -> "TrainerConfig":
        """Rebuilds the config from `custom_config` with the field types (`typed_dict.rebuild`).

        Raises:
          ValueError: when `custom_config` does not fit, naming what to do.
        """
        return typed_dict.rebuild(cls, custom_config, "the Trainer's custom_config")
