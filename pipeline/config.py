"""The one typed configuration of a fine-tune run: defaults, recipes, YAML loading, CLI overrides
(validated by `config_checks`)."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional, Tuple

import yaml

from tfx_finetune.components import backbones
from tfx_finetune.components.digest import file_digest
from tfx_finetune.components.image_example_gen.options import IngestionOptions
from tfx_finetune.components.labels import read_label_names
from tfx_finetune.components.trainer_config import NO_MIX, NO_TFLITE, TrainerConfig
from tfx_finetune.pipeline.config_checks import UNFREEZE_ALL, ConfigError, fail, validate

# The curated schema shipped with the project (schemas/ sits beside the packages).
DEFAULT_SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "schemas", "image_classification.pbtxt")


# The model card's considerations (`reports.model_card`): true of every model this pipeline
# makes, so a card is never silent; a user's config says who uses the model and for what.
DEFAULT_INTENDED_USE = ("Classifying images like those it was trained on (same source, "
                        "framing and resolution) into the classes of its training data.")
DEFAULT_LIMITATIONS = (
    "It knows only its training classes: an image of anything else still gets one of them, "
    "possibly with high confidence. Its figures come from a test split of the same image "
    "collection as its training data; on images from another source it can do worse.")

# In `weights`, replaced by the backbone's name: one setting for runs over several backbones.
BACKBONE_PLACEHOLDER = "{backbone}"


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
    must match a weights file, which `config_checks.check_weights` verifies before a run.
    `tflite` also exports a TFLite model (none, float32, float16 or int8), published beside
    the SavedModel unless its test accuracy falls more than `tflite_max_accuracy_drop` below
    the SavedModel's. `required_gpus`: the Trainer stops with an error when it sees fewer GPUs
    (`finetune compile` sets it from `--gpu-count`; 0 trains wherever it runs).
    `tuner_trials` > 0 adds TFX's Tuner before the Trainer: that many trials of the whole
    fine-tune search phase 2's rate, unfreezing depth and epochs on the eval split, and the
    Trainer trains with the best (`components.tuner`).
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
    mix: str = NO_MIX
    mix_alpha: float = 1.0
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
    required_gpus: int = 0
    tuner_trials: int = 0
    seed: int = 42
    intended_use: str = DEFAULT_INTENDED_USE
    limitations: str = DEFAULT_LIMITATIONS

    def __post_init__(self):
        validate(self, RECIPES)

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
# phase-1 rate ÷ 100, no augmentation or mixing, no label smoothing.
RECIPE_FIELDS = ("head", "head_units", "dropout", "phase1_on_features", "phase1_learning_rate",
                 "phase2_learning_rate", "unfreeze_layers", "lr_schedule", "warmup_epochs",
                 "weight_decay", "base_learning_rate_factor", "label_smoothing", "augment",
                 "mix")
RECIPES = {
    "default": {name: FIELDS[name].default for name in RECIPE_FIELDS},
    "seed": {"head": "dense", "head_units": 1024, "dropout": 0.2, "phase1_on_features": False,
             "phase1_learning_rate": 1e-3, "phase2_learning_rate": 0.0,
             "unfreeze_layers": 10, "lr_schedule": "constant", "warmup_epochs": 0,
             "weight_decay": 0.0, "base_learning_rate_factor": 1.0, "label_smoothing": 0.0,
             "augment": "", "mix": NO_MIX},
}


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
        fail(name, value, f"expected a value of type {type(default).__name__}")


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
