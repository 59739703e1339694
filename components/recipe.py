"""How each fine-tune phase optimises: learning-rate schedule, optimizer, per-layer rates, loss.

Library code where tf_keras 2.16 has it: `CosineDecay` with its linear warm-up
(`warmup_target`, `warmup_steps`), `AdamW` and its `exclude_from_weight_decay`, and
`CategoricalCrossentropy(label_smoothing=...)`. Written here only what tf_keras lacks: a
per-layer learning rate (`LayerRateMixin`), label smoothing for integer labels (the sparse
loss takes no smoothing), and MixUp and CutMix (`mixed`: KerasCV and the TF Model Garden
have them, but neither is in our lock).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Union

import tensorflow as tf

from tfx_finetune.components.trainer_config import CONSTANT_SCHEDULE, NO_MIX

Rate = Union[float, tf.keras.optimizers.schedules.LearningRateSchedule]


@dataclasses.dataclass(frozen=True)
class PhaseRecipe:
    """How one phase trains.

    Attributes:
      learning_rate: the peak rate (the rate throughout with the constant schedule).
      epochs: the most epochs the phase runs (the cosine decays over all of them).
      steps_per_epoch: optimizer steps in an epoch.
      schedule: "constant", or "cosine": a cosine decay to 0 at the phase's last epoch.
      warmup_epochs: epochs of linear warm-up from 0 at the phase's start.
      weight_decay: AdamW's decoupled weight decay, applied to the layers outside the base
        (0: Adam).
      base_rate_factor: the base layers' rate as a fraction of the head's (1: one rate).
      label_smoothing: the share of each target spread evenly over the classes.
      mix: how the phase mixes its training images (`mixed`); its targets are then
        probability vectors, and so are its validation targets (one-hot). Keras' class
        weights then go by each target's largest share.
      mix_alpha: the parameter of the Beta distribution the mixing ratios come from.
    """

    learning_rate: float
    epochs: int
    steps_per_epoch: int
    schedule: str
    warmup_epochs: int
    weight_decay: float
    base_rate_factor: float
    label_smoothing: float
    mix: str
    mix_alpha: float


def plain_phase(learning_rate: float, **fields) -> PhaseRecipe:
    """A phase of one epoch of one step at `learning_rate` with every option off (constant
    rate, no warm-up, decay, smoothing or mixing, one rate for all layers), then `fields`.
    The Trainer's phases come from its config (`trainer.phase_recipe`), not from here."""
    return PhaseRecipe(**{**dict(
        learning_rate=learning_rate, epochs=1, steps_per_epoch=1, schedule=CONSTANT_SCHEDULE,
        warmup_epochs=0, weight_decay=0.0, base_rate_factor=1.0, label_smoothing=0.0,
        mix=NO_MIX, mix_alpha=1.0), **fields})


def learning_rate(phase: PhaseRecipe) -> Rate:
    """The phase's rate. tf_keras' CosineDecay gives both schedules their linear warm-up from
    0 (at most all but the last epoch): then "cosine" decays to 0 at the phase's last step and
    "constant" stays at the peak (its `alpha` of 1). Without warm-up, "constant" is a float,
    which ReduceLROnPlateau can lower.
    """
    warmup_epochs = min(phase.warmup_epochs, phase.epochs - 1)
    if phase.schedule == CONSTANT_SCHEDULE and warmup_epochs <= 0:
        return phase.learning_rate
    warmup_steps = max(0, warmup_epochs) * phase.steps_per_epoch
    return tf.keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(1, phase.epochs * phase.steps_per_epoch - warmup_steps),
        alpha=1.0 if phase.schedule == CONSTANT_SCHEDULE else 0.0,
        warmup_target=phase.learning_rate, warmup_steps=warmup_steps)


class LayerRateMixin:
    """Makes a tf_keras optimizer step some variables at a fraction of its learning rate.

    Adam's and AdamW's step is proportional to the learning rate, and their moment estimates
    do not depend on it: scaling the change the library's own `update_step` made to a
    variable is exactly that variable's step at the scaled rate. tf_keras has no per-variable
    rate (TF Addons' MultiOptimizer, its old home, is not maintained for TF 2.16).
    """

    def set_slow_variables(self, variables: Iterable[tf.Variable], factor: float) -> None:
        """`variables` step at `factor` × the learning rate; call before the first step."""
        self._slow_keys = {self._var_key(v) for v in variables}
        self._slow_factor = factor

    def update_step(self, gradient, variable):
        if self._var_key(variable) not in getattr(self, "_slow_keys", ()):
            return super().update_step(gradient, variable)
        before = tf.identity(variable)
        super().update_step(gradient, variable)
        variable.assign(before + self._slow_factor * (variable - before))


class LayerRateAdam(LayerRateMixin, tf.keras.optimizers.Adam):
    """Adam with per-variable rates (`LayerRateMixin`)."""


class LayerRateAdamW(LayerRateMixin, tf.keras.optimizers.AdamW):
    """AdamW with per-variable rates (`LayerRateMixin`)."""


def optimizer(phase: PhaseRecipe, base: tf.keras.layers.Layer) -> tf.keras.optimizers.Optimizer:
    """Adam, or AdamW with `weight_decay` on the variables outside the base only: decaying
    the pretrained base towards zero would pull it away from what it learned. The base's
    trainable weights step at `base_rate_factor` × the rate.
    """
    rate = learning_rate(phase)
    if phase.weight_decay:
        opt = LayerRateAdamW(learning_rate=rate, weight_decay=phase.weight_decay)
        opt.exclude_from_weight_decay(var_list=base.weights)
    else:
        opt = LayerRateAdam(learning_rate=rate)
    if phase.base_rate_factor != 1.0:
        opt.set_slow_variables(base.trainable_weights, phase.base_rate_factor)
    return opt


class SmoothedSparseCrossentropy(tf.keras.losses.Loss):
    """Cross-entropy of integer labels with label smoothing: the labels are made one-hot
    over the model's classes and passed to tf_keras' CategoricalCrossentropy, whose
    `label_smoothing` does the smoothing (target 1 - s + s/K for the true class, s/K else).
    """

    def __init__(self, label_smoothing: float, name: str = "smoothed_crossentropy"):
        super().__init__(name=name)
        self.label_smoothing = label_smoothing
        self._crossentropy = tf.keras.losses.CategoricalCrossentropy(
            label_smoothing=label_smoothing, reduction=tf.keras.losses.Reduction.NONE)

    def call(self, y_true, y_pred):
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        return self._crossentropy(tf.one_hot(labels, tf.shape(y_pred)[-1]), y_pred)

    def get_config(self):
        return {"label_smoothing": self.label_smoothing, "name": self.name}


def loss(phase: PhaseRecipe) -> tf.keras.losses.Loss:
    """Sparse cross-entropy, smoothed when the phase asks for it; with mixing, cross-entropy
    of the probability-vector targets (`mixed`), smoothed the same way."""
    if phase.mix != NO_MIX:
        return tf.keras.losses.CategoricalCrossentropy(label_smoothing=phase.label_smoothing)
    if phase.label_smoothing:
        return SmoothedSparseCrossentropy(phase.label_smoothing)
    return tf.keras.losses.SparseCategoricalCrossentropy()


def _beta(alpha: float) -> tf.Tensor:
    """One draw of Beta(alpha, alpha): X / (X + Y) of two Gamma(alpha) draws (TensorFlow has
    no Beta sampler)."""
    x, y = tf.random.gamma([], alpha), tf.random.gamma([], alpha)
    return x / (x + y)


def mixup(images: tf.Tensor, targets: tf.Tensor, alpha: float) -> tuple:
    """MixUp (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018): every
    image and its target become ratio × themselves + (1 - ratio) × those of another image of
    the batch; one ratio per batch, drawn from Beta(alpha, alpha)."""
    ratio = _beta(alpha)
    partner = tf.random.shuffle(tf.range(tf.shape(images)[0]))
    return (ratio * images + (1 - ratio) * tf.gather(images, partner),
            ratio * targets + (1 - ratio) * tf.gather(targets, partner))


def cutmix(images: tf.Tensor, targets: tf.Tensor, alpha: float) -> tuple:
    """CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
    Localizable Features", ICCV 2019): a box of another image of the batch is pasted into each
    image, and the targets mix in proportion to the pixels pasted. The box covers 1 - ratio of
    the image (ratio ~ Beta(alpha, alpha), one per batch) around a uniformly drawn centre,
    clipped at the borders, so the pasted share is measured after clipping."""
    ratio = _beta(alpha)
    partner = tf.random.shuffle(tf.range(tf.shape(images)[0]))
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    side = tf.sqrt(1.0 - ratio)
    half_h = tf.cast(side * tf.cast(height, tf.float32), tf.int32) // 2
    half_w = tf.cast(side * tf.cast(width, tf.float32), tf.int32) // 2
    centre_y = tf.random.uniform([], 0, height, tf.int32)
    centre_x = tf.random.uniform([], 0, width, tf.int32)
    rows, cols = tf.range(height)[:, tf.newaxis], tf.range(width)[tf.newaxis, :]
    inside = ((rows >= centre_y - half_h) & (rows < centre_y + half_h)
              & (cols >= centre_x - half_w) & (cols < centre_x + half_w))
    box = tf.cast(inside, images.dtype)[tf.newaxis, :, :, tf.newaxis]
    pasted = tf.reduce_mean(tf.cast(inside, targets.dtype))
    return (images * (1 - box) + tf.gather(images, partner) * box,
            (1 - pasted) * targets + pasted * tf.gather(targets, partner))


def mixed(train: tf.data.Dataset, val: tf.data.Dataset, phase: PhaseRecipe,
          num_classes: int) -> tuple:
    """(train, val) as the phase trains on them: unchanged without mixing; else the training
    batches mixed (`mixup` or `cutmix`) with probability-vector targets, and the validation
    batches with one-hot targets, unmixed (both go through the same compiled loss)."""
    if phase.mix == NO_MIX:
        return train, val
    mix = {"mixup": mixup, "cutmix": cutmix}[phase.mix]

    def one_hot(images, labels):
        return images, tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), num_classes)

    return (train.map(lambda x, y: mix(*one_hot(x, y), phase.mix_alpha),
                      num_parallel_calls=tf.data.AUTOTUNE),
            val.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE))
