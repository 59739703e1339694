"""Model building (base, weights, head, augmentation) and the compile and unfreeze steps."""
from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

import tensorflow as tf
from tensorflow.python.autograph.core import config as autograph_config

from tfx_finetune.components import backbones, features, recipe
from tfx_finetune.components.history import ACCURACY
from tfx_finetune.components.backbones import AUGMENTATIONS, BACKBONES, HEADS


def _skip_autograph_of_keras_internals() -> None:
    """Stops AutoGraph from converting `tf_keras`' own code when Keras traces a model.

    TensorFlow never converts the `keras` package (Keras 2 lived there up to TF 2.15), but its
    rules do not name `tf_keras`, where the same code lives now. Every `fit`, `evaluate` and
    signature trace then re-parses Keras' internals call by call, which makes the first
    training step several times slower (figures in bench/README.md). Layers and models
    written by users (our own code included) are still converted.
    """
    autograph_config.CONVERSION_RULES = (
        (autograph_config.DoNotConvert("tf_keras"),) + tuple(autograph_config.CONVERSION_RULES))


_skip_autograph_of_keras_internals()


def resolve_weights(weights: str) -> Optional[str]:
    """Maps the config's `weights` value to what keras.applications accepts.

    Raises:
      FileNotFoundError: when a weights path does not exist.
    """
    if weights == backbones.NO_WEIGHTS:
        return None
    if weights == backbones.IMAGENET_WEIGHTS:
        return backbones.IMAGENET_WEIGHTS
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"weights file {weights} does not exist: pass weights=imagenet (needs internet), "
            "weights=none, the path of a weights file saved for this backbone, or a full "
            "Keras model file (.keras)")
    return weights


class WeightsError(ValueError):
    """The weights cannot become the base; the message is one line saying what to pass."""


def _reason(error: Exception) -> str:
    """The first line of a Keras error: its cause, without the advice that follows."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def load_base_model(path: str, image_size: int) -> tf.keras.Model:
    """Loads a full `.keras` model file as the base, in Keras safe mode.

    Safe mode refuses to deserialise Python code (Lambda layers), so a model file cannot run
    code on load. Other full-model formats (HDF5, SavedModel) are refused for that reason.

    Raises:
      WeightsError: for an unsafe or unloadable file, or an input size other than
        `image_size`.
    """
    if not path.endswith(".keras"):
        raise WeightsError(f"{path}: full models must be .keras files (loaded in safe mode); "
                           "HDF5 and SavedModel files can carry code and are not loaded")
    try:
        base = tf.keras.models.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError) as e:
        # Keras names the refused layer in the first sentence and then suggests turning safe
        # mode off, which this project never does (a model file must not run code on load).
        if "safe_mode" in str(e):
            raise WeightsError(
                f"full model {path} is refused by Keras safe mode: "
                f"{_reason(e).split('. ')[0].rstrip('.')}. Rebuild the base without Python "
                "code (no Lambda layers), or pass its weights file (save_weights) with the "
                "matching --backbone and --alpha") from e
        raise WeightsError(f"full model {path} cannot be loaded: {_reason(e)}") from e
    size = tuple(base.input_shape[1:3])
    if size not in ((image_size, image_size), (None, None)):
        raise WeightsError(f"{path} takes {size} inputs but image_size is {image_size}: "
                           f"pass --image-size {size[0]}")
    return base


def _loads(backbone: str, alpha: float, image_size: int, path: str) -> bool:
    """Whether the weights file `path` loads into `backbone` at width `alpha`."""
    try:
        BACKBONES[backbone].build(image_size, path, alpha)
    except Exception:  # Keras' error is the answer (no fit); the caller reports its own.
        return False
    return True


def fitting_width(path: str, image_size: int, backbone: str,
                  alpha: float) -> Optional[Tuple[str, float]]:
    """The backbone with a width multiplier, and its alpha, whose base the weights file
    `path` loads into, once it did not load into `backbone` at `alpha`: `backbone`'s other
    widths are tried first, then the other MobileNets'.

    Each try builds a base (about a second), so this runs only after a load failed.

    Returns:
      (backbone name, alpha), or None when no width of any MobileNet fits.
    """
    order = [backbone] + sorted(name for name in BACKBONES if name != backbone)
    for name in order:
        for width in BACKBONES[name].alphas:
            if (name, width) != (backbone, alpha) and _loads(name, width, image_size, path):
                return name, width
    return None


def _mismatch_message(path: str, backbone: str, alpha: float, image_size: int,
                      error: Exception) -> str:
    """One line: what the file does not fit, Keras' reason, and what to pass instead."""
    spec = BACKBONES[backbone]
    width = f" alpha {alpha}" if spec.alphas else ""
    head = (f"weights file {path} does not fit {backbone}{width} at {image_size} px "
            f"({_reason(error)})")
    fit = fitting_width(path, image_size, backbone, alpha)
    if fit is None:
        saved_from = (f"{spec.application}(include_top=False, alpha={alpha})" if spec.alphas
                      else f"{spec.application}(include_top=False)")
        return (f"{head}: it fits no width of any MobileNet either; pass a weights file saved "
                f"from {saved_from}")
    name, fit_alpha = fit
    if name == backbone:
        return f"{head}: the file fits alpha {fit_alpha}; pass --alpha {fit_alpha}"
    return (f"{head}: the file fits {name} alpha {fit_alpha}; pass --backbone {name} "
            f"--alpha {fit_alpha}")


def build_base(backbone: str, image_size: int, weights: str,
               alpha: float = backbones.FULL_WIDTH) -> tf.keras.Model:
    """Builds the pretrained base without its top at width `alpha`, all layers frozen.

    Raises:
      FileNotFoundError: when a weights path does not exist.
      WeightsError: when a weights file does not fit the backbone at `alpha` (naming the
        backbone and alpha it fits, when one does), or a full model is refused.
      RuntimeError: when ImageNet weights cannot be downloaded (no internet), saying where
        to put the file instead.
    """
    resolved = resolve_weights(weights)
    if resolved and resolved.endswith(".keras"):
        base = load_base_model(resolved, image_size)
    else:
        spec = BACKBONES[backbone]
        try:
            base = spec.build(image_size, resolved, alpha)
        except Exception as e:
            if resolved is None:
                raise
            if resolved != backbones.IMAGENET_WEIGHTS:
                raise WeightsError(
                    _mismatch_message(resolved, backbone, alpha, image_size, e)) from e
            raise RuntimeError(
                f"could not get ImageNet weights for {spec.application} ({e}). Without "
                "internet, download the '..._notop' weights file on a connected machine, copy "
                "it here and pass weights=<path to the file> (Keras caches downloads in "
                "~/.keras/models/).") from e
    base.trainable = False
    return base


def prepare_for_training_from_scratch(base: tf.keras.Model) -> None:
    """Makes a randomly initialised base fully trainable with learnable BatchNorm statistics.

    BatchNorm momentum is lowered to 0.9: with Keras' 0.999 the moving statistics stay near
    their initial values for the first few hundred steps, so inference-mode accuracy stays at
    chance however well the model trains.
    """
    base.trainable = True
    for layer in base.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = 0.9


def augmentation(names: Sequence[str]) -> Optional[tf.keras.Sequential]:
    """Train-only augmentation layers (inactive at inference, so serving is unaffected)."""
    unknown = set(names) - set(AUGMENTATIONS)
    if unknown:
        raise ValueError(f"unknown augmentation(s) {sorted(unknown)}; use {AUGMENTATIONS}")
    layers = {
        "flip": lambda: tf.keras.layers.RandomFlip("horizontal"),
        "rotation": lambda: tf.keras.layers.RandomRotation(0.05),
        "zoom": lambda: tf.keras.layers.RandomZoom(0.1),
        "translation": lambda: tf.keras.layers.RandomTranslation(0.1, 0.1),
        "contrast": lambda: tf.keras.layers.RandomContrast(0.2),
        "brightness": lambda: tf.keras.layers.RandomBrightness(0.2, value_range=(0, 255)),
    }
    if not names:
        return None
    return tf.keras.Sequential([layers[n]() for n in names], name="augmentation")


def build_model(backbone: str, num_classes: int, image_size: int, weights: str,
                head_units: int, dropout: float, augment: Sequence[str] = (),
                alpha: float = backbones.FULL_WIDTH, *, head: str) -> tf.keras.Model:
    """Phase-1 model: frozen base (at width `alpha`) + GAP, then the head: "dense" is
    Dense(head_units, relu) → Dropout → softmax, "linear" is Dropout → softmax.

    The input is the Transform output: float32 RGB in [0, 255]; optional augmentation, then
    the backbone's own normalisation, are the first steps inside the model. With
    weights="none" there is nothing to preserve: the whole model trains from the start, with
    BatchNorm learning its statistics (`prepare_for_training_from_scratch`).
    """
    base = build_base(backbone, image_size, weights, alpha)
    from_scratch = weights == backbones.NO_WEIGHTS
    if from_scratch:
        prepare_for_training_from_scratch(base)
    inputs = tf.keras.Input((image_size, image_size, 3),
                            name=features.transformed_name(features.IMAGE_KEY))
    x = inputs
    augmenter = augmentation(augment)
    if augmenter is not None:
        x = augmenter(x)
    x = BACKBONES[backbone].normalize(x)
    if from_scratch:
        x = base(x)
    else:
        x = base(x, training=False)  # keep BatchNorm in inference mode after unfreezing
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; use one of {HEADS}")
    if head == "dense":
        x = tf.keras.layers.Dense(head_units, activation="relu", name="head_dense")(x)
    x = tf.keras.layers.Dropout(dropout, name="head_dropout")(x)
    # float32 output keeps softmax numerically safe under a mixed-precision policy.
    outputs = tf.keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                    name="probabilities")(x)
    return tf.keras.Model(inputs, outputs, name=f"{backbone}_finetune")


def compile_model(model: tf.keras.Model, phase: recipe.PhaseRecipe,
                  base: Optional[tf.keras.Model] = None) -> None:
    """(Re)compiles for a phase: its optimizer (rate schedule, weight decay, the base's rate
    factor) and loss; needed after every change of `trainable`. `base` is the pretrained
    base when `model` does not hold it (the head alone, `head_on_features`)."""
    base = get_base(model) if base is None else base
    model.compile(optimizer=recipe.optimizer(phase, base),
                  loss=recipe.loss(phase), metrics=[ACCURACY])


def get_base(model: tf.keras.Model) -> tf.keras.Model:
    """The pretrained base: the nested model inside the fine-tune model that is not the
    augmentation block."""
    return next(layer for layer in model.layers
                if isinstance(layer, tf.keras.Model) and layer.name != "augmentation")


def unfreeze_top_layers(model: tf.keras.Model, count: int, from_layer: str = "") -> int:
    """Phase 2: makes the last `count` base layers (every one when `count` is negative, or all
    from `from_layer` on) trainable, BatchNorm layers excepted.

    Returns:
      The number of base layers with weights left trainable.

    Raises:
      ValueError: when `from_layer` is not a layer of the base.
    """
    base = get_base(model)
    names = [layer.name for layer in base.layers]
    if from_layer:
        if from_layer not in names:
            raise ValueError(f"unfreeze_from={from_layer!r} is not a layer of the base; "
                             f"its last layers are {names[-5:]}")
        cutoff = names.index(from_layer)
    else:
        cutoff = 0 if count < 0 else len(base.layers) - count  # negative: every layer
    base.trainable = True
    for index, layer in enumerate(base.layers):
        is_batch_norm = isinstance(layer, tf.keras.layers.BatchNormalization)
        layer.trainable = index >= cutoff and not is_batch_norm
    return sum(1 for layer in base.layers if layer.trainable and layer.weights)
