"""The one typed configuration of a fine-tune run: defaults, YAML loading, CLI overrides, validation."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional, Tuple

import yaml

from tfx_finetune.components import backbones
from tfx_finetune.components.digest import file_digest
from tfx_finetune.components.image_example_gen.options import INPUT_FORMATS, IngestionOptions
from tfx_finetune.components.labels import LabelNamesError, read_label_names
from tfx_finetune.components.trainer_config import (LR_SCHEDULES, NO_TFLITE, TFLITE_MODES,
                                                     TrainerConfig)

# The curated schema shipped with the project (schemas/ sits beside the packages).
DEFAULT_SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "schemas", "image_classification.pbtxt")


# The model card's considerations (`pipeline.model_card`): true of every model this pipeline
# makes, so a card is never silent; a user's config says who uses the model and for what.
DEFAULT_INTENDED_USE = ("Classifying images like those it was trained on (same source, "
                        "framing and resolution) into the classes of its training data.")
DEFAULT_LIMITATIONS = (
    "It knows only its training classes: an image of anything else still gets one of them, "
    "possibly with high confidence. Its figures come from a test split of the same image "
    "collection as its training data; on images from another source it can do worse.")

# `unfreeze_layers: all` (or -1): phase 2 unfreezes every base layer (BatchNorm excepted).
UNFREEZE_ALL = -1
# In `weights`, replaced by the backbone's name: one setting for runs over several backbones.
BACKBONE_PLACEHOLDER = "{backbone}"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what to do."""


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything a run needs. Derive variants with `dataclasses.replace`.

    `data_dir` is an image folder (`input_format: folder`), a CSV manifest of `path,label`
    rows (`csv`) or a folder of TFRecord files (`tfrecord`, with `image_feature` and
    `label_feature` naming the features). `label_names_file` names integer labels (label
    indices, e.g. in CSV or TFRecord input): line i is the class name of label i. `weights`
    is "imagenet" (downloaded by Keras; needs internet), "none" (random initialisation) or a
    path to a weights file for the chosen backbone, in which "{backbone}" stands for the
    backbone's name. `alpha` is the width multiplier of the MobileNets (one of the widths
    keras.applications publishes ImageNet weights for; 1.0 for every other backbone) and
    must match a weights file, which `check_weights` verifies before a run.
    `tflite` also exports a TFLite model (none, float32, float16 or int8), published beside
    the SavedModel unless its test accuracy falls more than `tflite_max_accuracy_drop` below
    the SavedModel's.
    `unfreeze_layers` is a count or -1 (`all`). `keep_versions` keeps only the newest K
    published versions (0 keeps all). `recipe` names the preset of the training fields in
    `RECIPE_FIELDS` the run started from: `make_config` (YAML, command line) applies it; in
    Python, start from `PipelineConfig(**RECIPES[name], recipe=name, ...)`. `intended_use` and
    `limitations` are the model card's considerations, as text.
    """

    data_dir: str = "data"
    input_format: str = "folder"
    image_feature: str = "image"
    label_feature: str = "label"
    label_names_file: str = ""
    workspace: str = "workspace"
    model_name: str = "image_classifier"
    pipeline_name: str = "tfx-finetune"
    schema_path: str = DEFAULT_SCHEMA
    recipe: str = "default"
    backbone: str = "mobilenet_v3_small"
    alpha: float = backbones.FULL_WIDTH
    weights: str = "imagenet"
    image_size: int = 224
    head: str = "linear"
    head_units: int = 1024
    dropout: float = 0.2
    batch_size: int = 32
    phase1_on_features: bool = True
    phase1_epochs: int = 5
    phase1_learning_rate: float = 1e-2
    phase2_epochs: int = 5
    phase2_learning_rate: float = 3e-3
    unfreeze_layers: int = 100
    unfreeze_from: str = ""
    early_stopping_patience: int = 3
    reduce_lr_on_plateau: bool = False
    lr_schedule: str = "cosine"
    warmup_epochs: int = 1
    weight_decay: float = 1e-4
    base_learning_rate_factor: float = 0.1
    label_smoothing: float = 0.1
    augment: str = "flip,zoom,rotation"
    class_weights: str = "auto"
    split_ratios: Tuple[int, int, int] = (80, 10, 10)
    max_image_bytes: int = 20 * 2**20
    max_image_pixels: int = 40_000_000
    max_reject_fraction: float = 0.01
    min_images_per_class: int = 5
    max_label_drift: float = 0.1
    min_example_count_ratio: float = 0.5
    accept_data_changes: bool = False
    min_accuracy: float = 0.8
    max_accuracy_drop: float = 0.02
    keep_versions: int = 0
    tflite: str = NO_TFLITE
    tflite_max_accuracy_drop: float = 0.01
    seed: int = 42
    intended_use: str = DEFAULT_INTENDED_USE
    limitations: str = DEFAULT_LIMITATIONS

    def __post_init__(self):
        _validate(self)

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.workspace, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.workspace, "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        """TF Serving model base directory: versions appear under <serving_dir>/<model_name>/."""
        return os.path.join(self.workspace, "serving")

    @property
    def model_base_dir(self) -> str:
        return os.path.join(self.serving_dir, self.model_name)

    @property
    def tflite_base_dir(self) -> str:
        """Published TFLite versions: <workspace>/tflite/<model_name>/<version>/model.tflite."""
        return os.path.join(self.workspace, "tflite", self.model_name)

    @property
    def accepted_statistics_dir(self) -> str:
        """Where the DataGate publishes the statistics it accepted, for the next run's
        comparison (`components.published`)."""
        return os.path.join(self.workspace, "accepted_statistics", self.pipeline_name)

    def ingestion_options(self) -> IngestionOptions:
        """The image ExampleGen's options."""
        fields = {f.name for f in dataclasses.fields(IngestionOptions)} - {"label_names"}
        # The names themselves, not the path: the executor may run where the file is not
        # (Kubeflow), and ingestion's cache key then follows the file's content.
        names = read_label_names(self.label_names_file) if self.label_names_file else []
        return IngestionOptions(**{k: getattr(self, k) for k in fields},
                                label_names=tuple(names))

    def trainer_config(self) -> TrainerConfig:
        """The hyperparameters `run_fn` receives (as `to_custom_config()`) through the
        Trainer's custom_config."""
        weights = self.backbone_weights
        fields = {f.name for f in dataclasses.fields(TrainerConfig)}
        return TrainerConfig(**{
            **{k: getattr(self, k) for k in fields & set(FIELDS)},
            "weights": weights,
            # The Trainer's cache key holds its parameters, not file contents: without the
            # digest, weights replaced in place under the same name would reuse the old model.
            "weights_sha256": file_digest(weights) if os.path.isfile(weights) else "",
            "phase2_learning_rate": self.effective_phase2_learning_rate,
            "augment": tuple(a.strip() for a in self.augment.split(",") if a.strip()),
        })

    @property
    def backbone_weights(self) -> str:
        """`weights` with "{backbone}" replaced by the backbone's name."""
        return self.weights.replace(BACKBONE_PLACEHOLDER, self.backbone)

    @property
    def effective_phase2_learning_rate(self) -> float:
        """The phase-2 rate; 0 in the config means the phase-1 rate ÷ 100."""
        return self.phase2_learning_rate or self.phase1_learning_rate / 100


FIELDS = {f.name: f for f in dataclasses.fields(PipelineConfig)}

# The fields a `recipe` sets. "default" is the benchmarked default (bench/README.md,
# transfer_flowers); "seed" is the recipe of the source documents: GAP → Dense(1024, relu)
# → Dropout → softmax, Adam at a constant rate, the top 10 base layers unfrozen at the
# phase-1 rate ÷ 100, no augmentation, no label smoothing.
RECIPE_FIELDS = ("head", "head_units", "dropout", "phase1_on_features", "phase1_learning_rate",
                 "phase2_learning_rate", "unfreeze_layers", "lr_schedule", "warmup_epochs",
                 "weight_decay", "base_learning_rate_factor", "label_smoothing", "augment")
RECIPES = {
    "default": {name: FIELDS[name].default for name in RECIPE_FIELDS},
    "seed": {"head": "dense", "head_units": 1024, "dropout": 0.2, "phase1_on_features": False,
             "phase1_learning_rate": 1e-3, "phase2_learning_rate": 0.0,
             "unfreeze_layers": 10, "lr_schedule": "constant", "warmup_epochs": 0,
             "weight_decay": 0.0, "base_learning_rate_factor": 1.0, "label_smoothing": 0.0,
             "augment": ""},
}


def _fail(field: str, value: Any, expected: str) -> None:
    raise ConfigError(f"config field '{field}' = {value!r} is invalid: {expected}")


def _validate(c: PipelineConfig) -> None:
    for name in ("data_dir", "workspace", "model_name", "pipeline_name", "schema_path", "weights",
                 "intended_use", "limitations"):
        if not isinstance(getattr(c, name), str) or not getattr(c, name).strip():
            _fail(name, getattr(c, name), "expected a non-empty string")
    if not c.model_name.replace("-", "").replace("_", "").isalnum():
        _fail("model_name", c.model_name, "use letters, digits, '-' and '_' only (it names a directory)")
    _validate_recipe(c)
    if c.backbone not in backbones.BACKBONES:
        _fail("backbone", c.backbone, f"choose one of {', '.join(sorted(backbones.BACKBONES))}")
    if c.input_format not in INPUT_FORMATS:
        _fail("input_format", c.input_format, "choose folder, csv or tfrecord")
    if c.label_names_file:
        try:
            read_label_names(c.label_names_file)
        except LabelNamesError as e:
            raise ConfigError(f"config field 'label_names_file' = {c.label_names_file!r} is "
                              f"invalid: {e}") from e
    positive_ints = ("image_size", "head_units", "batch_size", "phase1_epochs",
                     "max_image_bytes", "max_image_pixels", "min_images_per_class")
    for name in positive_ints:
        value = getattr(c, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            _fail(name, value, "expected a whole number >= 1")
    if c.unfreeze_layers != UNFREEZE_ALL and (
            not isinstance(c.unfreeze_layers, int) or c.unfreeze_layers < 0):
        _fail("unfreeze_layers", c.unfreeze_layers,
              "expected a whole number >= 0, or all (-1) for every base layer")
    for name in ("phase2_epochs", "seed", "keep_versions", "early_stopping_patience",
                 "warmup_epochs"):
        value = getattr(c, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            _fail(name, value, "expected a whole number >= 0")
    _validate_alpha(c)
    if c.image_size < backbones.BACKBONES[c.backbone].min_size:
        _fail("image_size", c.image_size,
              f"{c.backbone} needs images of at least {backbones.BACKBONES[c.backbone].min_size} pixels")
    if not isinstance(c.phase1_learning_rate, (int, float)) or not 0 < c.phase1_learning_rate < 1:
        _fail("phase1_learning_rate", c.phase1_learning_rate,
              "expected a number between 0 and 1 (exclusive)")
    if not isinstance(c.phase2_learning_rate, (int, float)) or not 0 <= c.phase2_learning_rate < 1:
        _fail("phase2_learning_rate", c.phase2_learning_rate,
              "expected a number in [0, 1); 0 means the phase-1 rate / 100")
    augment = [a.strip() for a in c.augment.split(",") if a.strip()]
    if set(augment) - set(backbones.AUGMENTATIONS):
        _fail("augment", c.augment, f"a comma list of {', '.join(backbones.AUGMENTATIONS)}")
    if c.class_weights not in ("auto", "none"):
        _fail("class_weights", c.class_weights, "choose auto (weights when imbalanced) or none")
    if not 0 <= c.dropout < 1:
        _fail("dropout", c.dropout, "expected a number in [0, 1)")
    if (len(c.split_ratios) != 3 or not all(isinstance(r, int) and r > 0 for r in c.split_ratios)):
        _fail("split_ratios", c.split_ratios, "expected three whole numbers > 0 for train, eval, test")
    for name in ("max_reject_fraction", "max_label_drift", "min_example_count_ratio"):
        if not 0 <= getattr(c, name) <= 1:
            _fail(name, getattr(c, name), "expected a fraction in [0, 1]")
    if not 0 < c.min_accuracy <= 1:
        _fail("min_accuracy", c.min_accuracy,
              "expected a number in (0, 1]: blessing needs a value threshold")
    for name in ("max_accuracy_drop", "tflite_max_accuracy_drop"):
        if not 0 <= getattr(c, name) < 1:
            _fail(name, getattr(c, name), "expected a number in [0, 1)")
    if c.tflite not in TFLITE_MODES:
        _fail("tflite", c.tflite,
              f"choose one of {', '.join(TFLITE_MODES)} (none: no TFLite model)")


def _validate_recipe(c: PipelineConfig) -> None:
    if c.recipe not in RECIPES:
        _fail("recipe", c.recipe, f"choose one of {', '.join(RECIPES)}")
    if c.head not in backbones.HEADS:
        _fail("head", c.head, f"choose one of {', '.join(backbones.HEADS)}")
    if c.lr_schedule not in LR_SCHEDULES:
        _fail("lr_schedule", c.lr_schedule, f"choose one of {', '.join(LR_SCHEDULES)}")
    if c.reduce_lr_on_plateau and (c.lr_schedule != "constant" or c.warmup_epochs):
        _fail("reduce_lr_on_plateau", c.reduce_lr_on_plateau,
              "a scheduled rate cannot also be lowered on plateaus; set lr_schedule: constant "
              "and warmup_epochs: 0 (or recipe: seed)")
    if not 0 <= c.weight_decay < 1:
        _fail("weight_decay", c.weight_decay, "expected a number in [0, 1); 0 means Adam")
    if not 0 < c.base_learning_rate_factor <= 1:
        _fail("base_learning_rate_factor", c.base_learning_rate_factor,
              "expected a number in (0, 1]: the base layers' phase-2 rate over the head's")
    if not 0 <= c.label_smoothing < 1:
        _fail("label_smoothing", c.label_smoothing, "expected a number in [0, 1)")


def _validate_alpha(c: PipelineConfig) -> None:
    widths = backbones.BACKBONES[c.backbone].alphas
    if isinstance(c.alpha, bool) or not isinstance(c.alpha, (int, float)):
        _fail("alpha", c.alpha, "expected a number (the MobileNets' width multiplier)")
    if not widths and c.alpha != backbones.FULL_WIDTH:
        with_widths = ", ".join(sorted(n for n, b in backbones.BACKBONES.items() if b.alphas))
        _fail("alpha", c.alpha, f"{c.backbone} has no width multiplier: leave alpha at "
                                f"{backbones.FULL_WIDTH} (only {with_widths} take one)")
    if widths and c.alpha not in widths:
        _fail("alpha", c.alpha, f"{c.backbone} comes in widths "
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


def _coerce(name: str, value: Any) -> Any:
    """Converts a YAML or command-line value to the field's type, naming the field on failure."""
    default = FIELDS[name].default
    try:
        if isinstance(default, tuple):
            parts = value.split(",") if isinstance(value, str) else list(value)
            return tuple(int(p) for p in parts)
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            return {"true": True, "yes": True, "1": True,
                    "false": False, "no": False, "0": False}[str(value).lower()]
        if name == "unfreeze_layers" and str(value).lower() == "all":
            return UNFREEZE_ALL
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError, KeyError):
        _fail(name, value, f"expected a value of type {type(default).__name__}")


def make_config(overrides: Optional[Mapping[str, Any]] = None, config_file: Optional[str] = None,
                base: Optional[PipelineConfig] = None) -> PipelineConfig:
    """Builds a config from defaults (or `base`), then a YAML file, then explicit overrides.
    A `recipe` named in either first sets the fields it presets (`RECIPES`); fields given
    beside it are applied on top.

    Raises:
      ConfigError: on an unknown field, an unreadable file or an invalid value.
    """
    values: dict = {}
    if config_file:
        try:
            with open(config_file, encoding="utf-8") as f:
                loaded = yaml.safe_load(f) or {}
        except OSError as e:
            raise ConfigError(f"cannot read config file {config_file}: {e.strerror}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {config_file} must hold a mapping of field: value")
        values.update(loaded)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if values.get("recipe") in RECIPES:  # the preset first, every field given on top of it
        values = {**RECIPES[values["recipe"]], **values}
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; "
                          f"known fields: {', '.join(FIELDS)}")
    coerced = {k: _coerce(k, v) for k, v in values.items()}
    return dataclasses.replace(base or PipelineConfig(), **coerced)
