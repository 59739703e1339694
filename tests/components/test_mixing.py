"""MixUp and CutMix (`recipe.mixed`): what each does to images and targets, and where the
Trainer applies them."""
import numpy as np
import pytest
import tensorflow as tf

from tfx_finetune.components import model as model_lib, recipe, trainer
from tfx_finetune.pipeline.config import ConfigError, make_config

CLASSES = 4
# Image i of the batch is filled with VALUES[i] and is of class i.
VALUES = np.array([10.0, 20.0, 40.0, 80.0], np.float32)


def _batch():
    images = np.broadcast_to(VALUES[:, None, None, None], (CLASSES, 6, 8, 3)).copy()
    return tf.constant(images), tf.one_hot(np.arange(CLASSES), CLASSES)


def _draws(mix, alpha=1.0, count=20):
    tf.random.set_seed(0)
    return [[t.numpy() for t in mix(*_batch(), alpha)] for _ in range(count)]


def test_mixup_mixes_each_image_and_its_target_in_one_proportion():
    mixed_any = False
    for images, targets in _draws(recipe.mixup):
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
        assert ((targets > 1e-6).sum(axis=1) <= 2).all()  # itself and one partner
        # Every pixel is the targets' mixture of the images' values.
        np.testing.assert_allclose(images, np.broadcast_to(
            (targets @ VALUES)[:, None, None, None], images.shape), rtol=1e-5)
        mixed_any |= bool((targets.max(axis=1) < 1 - 1e-6).any())
    assert mixed_any


def test_cutmix_pastes_a_box_and_mixes_the_targets_by_its_pixels():
    pasted_any = False
    for images, targets in _draws(recipe.cutmix):
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
        for i in range(CLASSES):
            own = np.isclose(images[i, :, :, 0], VALUES[i])
            partner = [k for k in np.flatnonzero(targets[i] > 1e-6) if k != i]
            if own.all():  # nothing pasted, or pasted from itself
                assert targets[i, i] == pytest.approx(1.0)
                continue
            pasted_any = True
            (k,) = partner
            assert np.isclose(images[i, :, :, 0][~own], VALUES[k]).all()  # no blending
            rows, cols = np.nonzero(~own)
            box = np.zeros_like(own)
            box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
            np.testing.assert_array_equal(~own, box)  # one rectangle
            assert targets[i, k] == pytest.approx((~own).mean(), rel=1e-5)
    assert pasted_any


def _partner_shares(alpha):
    tf.random.set_seed(1)
    images, targets = tf.zeros((2, 2, 2, 3)), tf.one_hot([0, 1], 2)
    shares = [float(recipe.mixup(images, targets, alpha)[1][0, 0]) for _ in range(200)]
    return np.array([s for s in shares if s < 1 - 1e-6])  # the draws that mixed


def test_mix_alpha_is_the_beta_distributions_parameter():
    # Beta(0.2, 0.2) puts most ratios near 0 or 1; Beta(8, 8) near 0.5.
    assert np.mean(np.abs(_partner_shares(0.2) - 0.5)) > 0.3
    assert np.mean(np.abs(_partner_shares(8.0) - 0.5)) < 0.12


def _labelled(n=8):
    images = np.random.default_rng(0).uniform(0, 255, (n, 6, 6, 3)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((images, np.arange(n) % CLASSES)).batch(4)


def test_mixed_gives_probability_targets_to_train_and_one_hot_to_val():
    train, val = _labelled(), _labelled()
    phase = recipe.plain_phase(1e-3, mix="cutmix", mix_alpha=1.0)
    mixed_train, one_hot_val = recipe.mixed(train, val, phase, CLASSES)
    for (_, targets), (_, labels) in zip(mixed_train, train):
        assert targets.shape == (len(labels), CLASSES)
        np.testing.assert_allclose(targets.numpy().sum(axis=1), 1.0, rtol=1e-6)
    for (images, targets), (raw, labels) in zip(one_hot_val, val):
        np.testing.assert_array_equal(images, raw)  # validation is not mixed
        np.testing.assert_array_equal(targets, tf.one_hot(labels, CLASSES))
    assert recipe.mixed(train, val, recipe.plain_phase(1e-3), CLASSES) == (train, val)


def test_the_loss_of_a_mixing_phase_takes_probability_targets():
    probabilities = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    mixing = recipe.loss(recipe.plain_phase(1e-3, mix="mixup"))
    plain = recipe.loss(recipe.plain_phase(1e-3))
    assert float(mixing(tf.one_hot([0, 2], 3), probabilities)) == pytest.approx(
        float(plain(tf.constant([0, 2]), probabilities)), rel=1e-6)
    halves = tf.constant([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])
    assert float(mixing(halves, probabilities)) == pytest.approx(
        -np.mean([0.5 * np.log(0.7) + 0.5 * np.log(0.2), 0.5 * np.log(0.1) + 0.5 * np.log(0.8)]),
        rel=1e-5)


def test_config_validates_mixing():
    hp = make_config({"mix": "cutmix", "mix_alpha": 0.4}).trainer_config()
    assert (hp.mix, hp.mix_alpha) == ("cutmix", 0.4)
    assert make_config({"recipe": "seed"}).mix == "none"
    with pytest.raises(ConfigError, match="'mix' = 'cutout'.*none, mixup, cutmix"):
        make_config({"mix": "cutout"})
    with pytest.raises(ConfigError, match="mix_alpha"):
        make_config({"mix": "mixup", "mix_alpha": 0})


def test_mixing_applies_to_image_phases_only():
    hp = make_config({"mix": "mixup", "mix_alpha": 0.4}).trainer_config()
    on_features = trainer.phase_recipe(hp, 1, 7, on_features=True)
    on_images, second = trainer.phase_recipe(hp, 1, 7), trainer.phase_recipe(hp, 2, 7)
    assert on_features.mix == "none"
    assert (on_images.mix, second.mix, second.mix_alpha) == ("mixup", "mixup", 0.4)


@pytest.mark.slow
def test_trainer_mixes_phase_2_images_and_not_phase_1_features(tmp_path, monkeypatch):
    weights = str(tmp_path / "base.weights.h5")
    model_lib.build_base("mobilenet_v3_small", 32, "none").save_weights(weights)
    hp = make_config({"weights": weights, "image_size": 32, "head_units": 8, "batch_size": 4,
                      "phase1_epochs": 2, "phase2_epochs": 2, "unfreeze_layers": 5,
                      "augment": "", "mix": "cutmix"}).trainer_config()
    seen = []

    def spy(train, val, phase, num_classes):
        train, val = mixed(train, val, phase, num_classes)
        seen.append((phase.mix, next(iter(train))[1].shape, next(iter(val))[1].shape))
        return train, val

    mixed = recipe.mixed
    monkeypatch.setattr(recipe, "mixed", spy)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (12, 32, 32, 3)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((images, np.arange(12) % 3)).batch(4)
    model = trainer.build_model(hp, 3)
    history = trainer.train_two_phases(model, data, data, hp, str(tmp_path / "logs"))
    # Phase 1 fits the head on features with integer labels; phase 2 the mixed images.
    assert seen == [("none", (4,), (4,)), ("cutmix", (4, 3), (4, 3))]
    assert len(history["phase2"]["val_accuracy"]) == 2
    assert all(np.isfinite(history["phase2"]["loss"]))
