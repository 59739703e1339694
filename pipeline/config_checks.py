"""What is wrong with a pipeline config: each field's validation, and the weights check
that runs before a command starts work."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Collection

from tfx_finetune.components import backbones
from tfx_finetune.components.image_example_gen.options import INPUT_FORMATS
from tfx_finetune.components.labels import LabelNamesError, read_label_names
from tfx_finetune.components.trainer_config import (LR_SCHEDULES, MIXES, TFLITE_MODES,
                                                     UNFREEZE_ALL)

if TYPE_CHECKING:
    from tfx_finetune.pipeline.config import PipelineConfig


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what to do."""


def fail(field: str, value: Any, expected: str) -> None:
    raise ConfigError(f"config field '{field}' = {value!r} is invalid: {expected}")


def validate(c: PipelineConfig, recipes: Collection[str]) -> None:
    """Raises ConfigError naming the first invalid field and what it expects."""
    _validate_names(c)
    _validate_recipe(c, recipes)
    if c.backbone not in backbones.BACKBONES:
        fail("backbone", c.backbone, f"choose one of {', '.join(sorted(backbones.BACKBONES))}")
    _validate_counts(c)
    _validate_alpha(c)
    _validate_training(c)
    _validate_data_and_blessing(c)


def _validate_names(c: PipelineConfig) -> None:
    """Paths, names and the input: non-empty, a model name fit for a directory."""
    for name in ("data_dir", "workspace", "model_name", "pipeline_name", "schema_path", "weights",
                 "intended_use", "limitations"):
        if not isinstance(getattr(c, name), str) or not getattr(c, name).strip():
            fail(name, getattr(c, name), "expected a non-empty string")
    if not c.model_name.replace("-", "").replace("_", "").isalnum():
        fail("model_name", c.model_name, "use letters, digits, '-' and '_' only (it names a directory)")
    if c.input_format not in INPUT_FORMATS:
        fail("input_format", c.input_format, "choose " + ", ".join(INPUT_FORMATS))
    if c.label_names_file:
        try:
            read_label_names(c.label_names_file)
        except LabelNamesError as e:
            raise ConfigError(f"config field 'label_names_file' = {c.label_names_file!r} is "
                              f"invalid: {e}") from e


def _validate_counts(c: PipelineConfig) -> None:
    """Whole numbers: sizes, epochs, limits, the unfreeze depth."""
    positive_ints = ("image_size", "head_units", "batch_size", "phase1_epochs",
                     "max_image_bytes", "max_image_pixels", "min_images_per_class")
    for name in positive_ints:
        value = getattr(c, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            fail(name, value, "expected a whole number >= 1")
    if c.unfreeze_layers != UNFREEZE_ALL and (
            not isinstance(c.unfreeze_layers, int) or c.unfreeze_layers < 0):
        fail("unfreeze_layers", c.unfreeze_layers,
             "expected a whole number >= 0, or all (-1) for every base layer")
    for name in ("phase2_epochs", "seed", "keep_versions", "early_stopping_patience",
                 "warmup_epochs", "required_gpus", "tuner_trials"):
        value = getattr(c, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            fail(name, value, "expected a whole number >= 0")
    _validate_tuner(c)


def _validate_tuner(c: PipelineConfig) -> None:
    """The Tuner searches phase 2's rate, depth and epochs: phase 2 must be on and its depth
    the one unfreeze_layers sets."""
    if not c.tuner_trials:
        return
    if not c.phase2_epochs or not c.unfreeze_layers:
        fail("tuner_trials", c.tuner_trials,
             "the Tuner searches phase 2's rate, unfreezing depth and epochs: set "
             "phase2_epochs and unfreeze_layers above 0, or tuner_trials: 0")
    if c.unfreeze_from:
        fail("tuner_trials", c.tuner_trials,
             f"the Tuner searches unfreeze_layers, which unfreeze_from ({c.unfreeze_from!r}) "
             "overrides: leave unfreeze_from empty, or tuner_trials: 0")


def _validate_training(c: PipelineConfig) -> None:
    """What the backbone needs, the rates, augmentation, class weights, dropout."""
    if c.image_size < backbones.BACKBONES[c.backbone].min_size:
        fail("image_size", c.image_size,
             f"{c.backbone} needs images of at least {backbones.BACKBONES[c.backbone].min_size} pixels")
    if not isinstance(c.phase1_learning_rate, (int, float)) or not 0 < c.phase1_learning_rate < 1:
        fail("phase1_learning_rate", c.phase1_learning_rate,
             "expected a number between 0 and 1 (exclusive)")
    if not isinstance(c.phase2_learning_rate, (int, float)) or not 0 <= c.phase2_learning_rate < 1:
        fail("phase2_learning_rate", c.phase2_learning_rate,
             "expected a number in [0, 1); 0 means the phase-1 rate / 100")
    augment = [a.strip() for a in c.augment.split(",") if a.strip()]
    if set(augment) - set(backbones.AUGMENTATIONS):
        fail("augment", c.augment, f"a comma list of {', '.join(backbones.AUGMENTATIONS)}")
    if c.class_weights not in ("auto", "none"):
        fail("class_weights", c.class_weights, "choose auto (weights when imbalanced) or none")
    if not 0 <= c.dropout < 1:
        fail("dropout", c.dropout, "expected a number in [0, 1)")


def _validate_data_and_blessing(c: PipelineConfig) -> None:
    """The splits, the data limits and the thresholds a model is blessed and published by."""
    if (len(c.split_ratios) != 3 or not all(isinstance(r, int) and r > 0 for r in c.split_ratios)):
        fail("split_ratios", c.split_ratios, "expected three whole numbers > 0 for train, eval, test")
    for name in ("max_reject_fraction", "max_label_drift", "min_example_count_ratio"):
        if not 0 <= getattr(c, name) <= 1:
            fail(name, getattr(c, name), "expected a fraction in [0, 1]")
    if not 0 < c.min_accuracy <= 1:
        fail("min_accuracy", c.min_accuracy,
             "expected a number in (0, 1]: blessing needs a value threshold")
    for name in ("max_accuracy_drop", "tflite_max_accuracy_drop"):
        if not 0 <= getattr(c, name) < 1:
            fail(name, getattr(c, name), "expected a number in [0, 1)")
    if c.tflite not in TFLITE_MODES:
        fail("tflite", c.tflite,
             f"choose one of {', '.join(TFLITE_MODES)} (none: no TFLite model)")


def _validate_recipe(c: PipelineConfig, recipes: Collection[str]) -> None:
    if c.recipe not in recipes:
        fail("recipe", c.recipe, f"choose one of {', '.join(recipes)}")
    if c.head not in backbones.HEADS:
        fail("head", c.head, f"choose one of {', '.join(backbones.HEADS)}")
    if c.lr_schedule not in LR_SCHEDULES:
        fail("lr_schedule", c.lr_schedule, f"choose one of {', '.join(LR_SCHEDULES)}")
    if c.reduce_lr_on_plateau and (c.lr_schedule != "constant" or c.warmup_epochs):
        fail("reduce_lr_on_plateau", c.reduce_lr_on_plateau,
             "a scheduled rate cannot also be lowered on plateaus; set lr_schedule: constant "
             "and warmup_epochs: 0 (or recipe: seed)")
    if not 0 <= c.weight_decay < 1:
        fail("weight_decay", c.weight_decay, "expected a number in [0, 1); 0 means Adam")
    if not 0 < c.base_learning_rate_factor <= 1:
        fail("base_learning_rate_factor", c.base_learning_rate_factor,
             "expected a number in (0, 1]: the base layers' phase-2 rate over the head's")
    if not 0 <= c.label_smoothing < 1:
        fail("label_smoothing", c.label_smoothing, "expected a number in [0, 1)")
    if c.mix not in MIXES:
        fail("mix", c.mix, f"choose one of {', '.join(MIXES)}")
    if not 0 < c.mix_alpha <= 10:
        fail("mix_alpha", c.mix_alpha, "expected a number in (0, 10]: the Beta distribution's "
                                       "parameter (1: every mixing ratio equally likely)")


def _validate_alpha(c: PipelineConfig) -> None:
    widths = backbones.BACKBONES[c.backbone].alphas
    if isinstance(c.alpha, bool) or not isinstance(c.alpha, (int, float)):
        fail("alpha", c.alpha, "expected a number (the MobileNets' width multiplier)")
    if not widths and c.alpha != backbones.FULL_WIDTH:
        with_widths = ", ".join(sorted(n for n, b in backbones.BACKBONES.items() if b.alphas))
        fail("alpha", c.alpha, f"{c.backbone} has no width multiplier: leave alpha at "
                               f"{backbones.FULL_WIDTH} (only {with_widths} take one)")
    if widths and c.alpha not in widths:
        fail("alpha", c.alpha, f"{c.backbone} comes in widths "
                               f"{', '.join(map(str, widths))} (keras.applications)")


def check_weights(config: PipelineConfig) -> None:
    """Builds the base the Trainer will build from a weights file (backbone, alpha, image
    size), so that weights which do not fit stop a command before ingestion, statistics and
    Transform run rather than inside the Trainer. "imagenet" and "none" read no file here.

    Not part of the validation in `__post_init__`: it imports TensorFlow and builds a model
    (seconds), and configs are made often (every compare variant, every flag override).

    Raises:
      ConfigError: a one-line message naming the backbone and alpha the file does not fit
        (and the ones it fits, when a MobileNet width does), or why a full model is refused.
      FileNotFoundError: when the weights file does not exist.
    """
    weights = config.backbone_weights
    if weights in (backbones.IMAGENET_WEIGHTS, backbones.NO_WEIGHTS):
        return
    import tensorflow as tf

    from tfx_finetune.components import model as model_lib

    try:
        model_lib.build_base(config.backbone, config.image_size, weights, config.alpha)
    except model_lib.WeightsError as e:
        raise ConfigError(str(e)) from e
    finally:
        # The local Trainer runs in this process: it gets the layer names (e.g. for
        # `unfreeze_from`) it would get without this check, which Keras numbers per session.
        tf.keras.backend.clear_session()
