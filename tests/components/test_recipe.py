"""Each recipe option changes what it claims: rates per step, rates per layer, decay, targets."""
import numpy as np
import pytest
import tensorflow as tf

from tfx_finetune.components import model as model_lib, recipe, trainer
from tfx_finetune.pipeline.config import make_config


def _rates(phase, steps):
    rate = recipe.learning_rate(phase)
    return [float(rate(step)) for step in steps]


def test_cosine_schedule_warms_up_linearly_then_decays_to_zero_at_the_last_step():
    phase = recipe.plain_phase(1e-3, epochs=5, steps_per_epoch=10, schedule="cosine",
                               warmup_epochs=1)
    # 10 warm-up steps from 0 to the peak, then a half cosine over the other 40.
    assert _rates(phase, [0, 5, 10, 30, 50]) == pytest.approx([0, 5e-4, 1e-3, 5e-4, 0],
                                                              abs=1e-9)
    assert _rates(phase, [20])[0] == pytest.approx(1e-3 * (1 + np.cos(np.pi / 4)) / 2)


def test_constant_schedule_is_a_float_without_warm_up_and_flat_after_it():
    assert recipe.learning_rate(recipe.plain_phase(1e-3, epochs=5, steps_per_epoch=10)) == 1e-3
    warm = recipe.plain_phase(1e-3, epochs=5, steps_per_epoch=10, warmup_epochs=2)
    assert _rates(warm, [0, 10, 20, 35, 50]) == pytest.approx([0, 5e-4, 1e-3, 1e-3, 1e-3])


def test_warm_up_leaves_the_last_epoch_of_a_short_phase_at_the_peak():
    phase = recipe.plain_phase(1e-3, epochs=1, steps_per_epoch=4, schedule="constant",
                               warmup_epochs=1)
    assert recipe.learning_rate(phase) == 1e-3


def _two_layer_model():
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((3,))
    hidden = tf.keras.layers.Dense(4, name="base_layer")(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(2, name="head_layer")(hidden))


def _one_step(optimizer, model):
    x, y = tf.constant(np.arange(6, dtype=np.float32).reshape(2, 3)), tf.constant([[1., 0.]] * 2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum((model(x) - y) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    before = [v.numpy() for v in model.trainable_variables]
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return [v.numpy() - b for v, b in zip(model.trainable_variables, before)]


def test_base_variables_step_at_the_factor_of_the_head_rate():
    """The slow layer's step equals Adam's at the scaled rate; the head's Adam's own."""
    model = _two_layer_model()
    layered = recipe.optimizer(recipe.plain_phase(1e-2, base_rate_factor=0.1),
                               model.get_layer("base_layer"))
    steps = _one_step(layered, model)
    slow = _one_step(tf.keras.optimizers.Adam(1e-3), _two_layer_model())
    fast = _one_step(tf.keras.optimizers.Adam(1e-2), _two_layer_model())
    np.testing.assert_allclose(steps[0], slow[0], rtol=1e-5)  # base kernel: 1e-3
    np.testing.assert_allclose(steps[2], fast[2], rtol=1e-5)  # head kernel: 1e-2
    assert np.abs(steps[0]).max() == pytest.approx(1e-3, rel=1e-3)  # Adam's first step: lr


def test_per_layer_rates_hold_under_the_gpu_wrappers():
    """The GPU path's wrappers, run on CPU: MirroredStrategy (several GPUs) and the loss
    scaling Keras puts around the optimizer under mixed precision."""
    expected = _one_step(tf.keras.optimizers.Adam(1e-3), _two_layer_model())
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = _two_layer_model()
        mirrored = recipe.optimizer(recipe.plain_phase(1e-2, base_rate_factor=0.1),
                                    model.get_layer("base_layer"))
    np.testing.assert_allclose(_one_step(mirrored, model)[0], expected[0], rtol=1e-5)
    model = _two_layer_model()
    scaled = tf.keras.mixed_precision.LossScaleOptimizer(recipe.optimizer(
        recipe.plain_phase(1e-2, base_rate_factor=0.1), model.get_layer("base_layer")))
    np.testing.assert_allclose(_one_step(scaled, model)[0], expected[0], rtol=1e-5)


def test_weight_decay_uses_adamw_and_spares_the_base():
    model = _two_layer_model()
    base = model.get_layer("base_layer")
    opt = recipe.optimizer(recipe.plain_phase(1e-2, weight_decay=0.5), base)
    assert isinstance(opt, tf.keras.optimizers.AdamW)
    zero = [tf.zeros_like(v) for v in model.trainable_variables]
    before = [v.numpy() for v in model.trainable_variables]
    opt.apply_gradients(zip(zero, model.trainable_variables))
    after = [v.numpy() for v in model.trainable_variables]
    np.testing.assert_allclose(after[0], before[0])  # base kernel: no decay
    np.testing.assert_allclose(after[2], before[2] * (1 - 0.5 * 1e-2), rtol=1e-6)  # head
    assert isinstance(recipe.optimizer(recipe.plain_phase(1e-2), base), tf.keras.optimizers.Adam)


def test_label_smoothing_spreads_the_targets():
    probabilities = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    labels = tf.constant([0, 2])
    smoothed = recipe.loss(recipe.plain_phase(1e-3, label_smoothing=0.3))
    targets = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])  # 1 - 0.3 + 0.3/3, 0.3/3
    expected = np.mean(-np.sum(targets * np.log(probabilities.numpy()), axis=-1))
    assert float(smoothed(labels, probabilities)) == pytest.approx(expected, rel=1e-5)
    plain = recipe.loss(recipe.plain_phase(1e-3))
    assert float(plain(labels, probabilities)) == pytest.approx(
        -np.mean(np.log([0.7, 0.8])), rel=1e-5)


def test_linear_head_has_no_hidden_layer():
    linear = model_lib.build_model("mobilenet_v3_small", 3, 32, "none", 8, 0.1, head="linear")
    dense = model_lib.build_model("mobilenet_v3_small", 3, 32, "none", 8, 0.1, head="dense")
    assert "head_dense" not in [layer.name for layer in linear.layers]
    assert dense.get_layer("head_dense").units == 8
    assert linear.get_layer("probabilities").kernel.shape[0] == (
        model_lib.get_base(linear).output_shape[-1])


def test_phase_recipes_follow_the_config():
    hp = make_config({"weights": "none", "lr_schedule": "cosine", "warmup_epochs": 2,
                      "base_learning_rate_factor": 0.2, "label_smoothing": 0.1,
                      "weight_decay": 1e-4, "phase1_learning_rate": 1e-3,
                      "phase2_learning_rate": 1e-4}).trainer_config()
    first, second = trainer.phase_recipe(hp, 1, 7), trainer.phase_recipe(hp, 2, 7)
    assert (first.learning_rate, first.base_rate_factor, first.steps_per_epoch) == (1e-3, 1.0, 7)
    assert (second.learning_rate, second.base_rate_factor) == (1e-4, 0.2)
    assert trainer.phase_recipe(hp, 2, 7, from_scratch=True).base_rate_factor == 1.0
    assert (second.schedule, second.warmup_epochs, second.label_smoothing,
            second.weight_decay) == ("cosine", 2, 0.1, 1e-4)


@pytest.mark.slow
def test_phase2_trains_the_base_slower_on_a_cosine_schedule(tmp_path):
    weights = str(tmp_path / "base.weights.h5")
    model_lib.build_base("mobilenet_v3_small", 32, "none").save_weights(weights)
    hp = make_config({"weights": weights, "image_size": 32, "head_units": 8,
                      "batch_size": 8, "phase1_epochs": 2, "phase1_learning_rate": 1e-3,
                      "phase2_epochs": 2,
                      "warmup_epochs": 1, "unfreeze_layers": 20, "phase2_learning_rate": 1e-5,
                      "base_learning_rate_factor": 0.1}).trainer_config()
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices(
        (rng.uniform(0, 255, (16, 32, 32, 3)).astype(np.float32), rng.integers(0, 2, 16))
    ).batch(8)
    model = trainer.build_model(hp, 2)
    history = trainer.train_two_phases(model, data, data, hp, str(tmp_path))
    # The rate of each epoch's last step (2 steps an epoch): half-way up the warm-up, then
    # half-way down the cosine (a constant rate would be back at the peak).
    assert history["phase1"]["learning_rate"] == pytest.approx([5e-4, 5e-4], rel=1e-5)
    assert history["phase2"]["learning_rate"] == pytest.approx([5e-6, 5e-6], rel=1e-5)
    slow = model.optimizer._slow_keys
    base = model_lib.get_base(model)
    unfrozen = {model.optimizer._var_key(v) for v in base.trainable_weights}
    assert slow == unfrozen and not any("BatchNorm" in key for key in slow)
    assert slow and model.optimizer._slow_factor == 0.1
