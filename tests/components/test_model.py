import numpy as np
import pytest
import tensorflow as tf

from tfx_finetune.components import model as model_lib, recipe


def _trainable_layer_names(model):
    return {w.name.split("/")[0] for w in model.trainable_weights}


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A saved base: the pretrained path, as with a user's ImageNet weights file."""
    path = str(tmp_path_factory.mktemp("weights") / "base.weights.h5")
    model_lib.build_base("mobilenet_v3_small", 32, "none").save_weights(path)
    return path


@pytest.fixture
def model(weights_file):
    """A fresh phase-1 model for each test: the tests change what is trainable."""
    return model_lib.build_model("mobilenet_v3_small", num_classes=4, image_size=32,
                                 weights=weights_file, head_units=16, dropout=0.2, head="dense")


def test_phase1_trains_only_the_head(model):
    assert _trainable_layer_names(model) == {"head_dense", "probabilities"}
    assert len(model.trainable_weights) == 4
    assert model.output_shape == (None, 4)


def test_base_is_called_in_inference_mode(model):
    base = model_lib.get_base(model)
    # BatchNorm layers made trainable too: a frozen BatchNorm runs in inference mode whatever
    # the call says, and would hide a base called without training=False.
    base.trainable = True
    for layer in base.layers:
        layer.trainable = True
    # training=True must not switch BatchNorm to batch statistics: the pooled features are the
    # same in both modes.
    pooled = tf.keras.Model(model.inputs, model.get_layer("pool").output)
    images = tf.random.uniform((4, 32, 32, 3), 0, 255, seed=1)
    np.testing.assert_allclose(pooled(images, training=True), pooled(images, training=False),
                               rtol=1e-5, atol=1e-5)


def test_phase2_unfreezes_top_layers_but_keeps_batchnorm_frozen(model):
    base = model_lib.get_base(model)
    count = 20
    unfrozen = model_lib.unfreeze_top_layers(model, count)
    model_lib.compile_model(model, recipe.plain_phase(1e-5))
    top = base.layers[-count:]
    expected = [l for l in top if l.weights and not isinstance(l, tf.keras.layers.BatchNormalization)]
    assert unfrozen == len(expected) > 0
    assert all(not l.trainable for l in base.layers[:-count])
    assert all(not l.trainable for l in base.layers
               if isinstance(l, tf.keras.layers.BatchNormalization))
    head = 4
    assert len(model.trainable_weights) == head + sum(len(l.trainable_weights) for l in expected)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-5)


def test_weights_file_round_trip(tmp_path):
    source = model_lib.build_base("mobilenet_v3_small", 32, "none")
    path = str(tmp_path / "base.weights.h5")
    source.save_weights(path)
    loaded = model_lib.build_base("mobilenet_v3_small", 32, path)
    for a, b in zip(source.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_missing_weights_file_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights=imagenet"):
        model_lib.build_base("mobilenet_v3_small", 32, str(tmp_path / "missing.h5"))


def test_offline_imagenet_download_fails_with_instructions(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("tf_keras.src.utils.data_utils.get_file", offline)
    with pytest.raises(RuntimeError, match="pass weights=<path"):
        model_lib.build_base("mobilenet_v3_small", 32, "imagenet")


def test_unfreeze_from_a_named_layer(model):
    base = model_lib.get_base(model)
    name = base.layers[-12].name
    model_lib.unfreeze_top_layers(model, 0, from_layer=name)
    trainable = [l for l in base.layers if l.trainable]
    assert trainable and all(base.layers.index(l) >= len(base.layers) - 12 for l in trainable)
    with pytest.raises(ValueError, match="not a layer of the base"):
        model_lib.unfreeze_top_layers(model, 0, from_layer="no_such_layer")


def test_full_keras_model_file_is_loaded_in_safe_mode(tmp_path):
    inputs = tf.keras.Input((32, 32, 3))
    x = tf.keras.layers.Conv2D(4, 3)(inputs)
    safe = tf.keras.Model(inputs, x)
    safe.save(tmp_path / "safe.keras")
    assert model_lib.build_base("mobilenet_v3_small", 32, str(tmp_path / "safe.keras")) \
        .count_params() == safe.count_params()
    unsafe = tf.keras.Model(inputs, tf.keras.layers.Lambda(lambda t: t * 2)(x))
    unsafe.save(tmp_path / "unsafe.keras")
    with pytest.raises(model_lib.WeightsError) as refused:
        model_lib.build_base("mobilenet_v3_small", 32, str(tmp_path / "unsafe.keras"))
    message = str(refused.value)
    assert "refused by Keras safe mode: Requested the deserialization of a Lambda layer" in \
        message
    # One line, and not Keras' advice to turn safe mode off.
    assert "\n" not in message and "safe_mode=False" not in message
    unsafe.save(tmp_path / "unsafe.h5")
    with pytest.raises(ValueError, match="must be .keras files"):
        model_lib.load_base_model(str(tmp_path / "unsafe.h5"), 32)


def _standard_notop_file(path, application, alpha):
    """A no-top weights file in the layout of Keras' ImageNet downloads (HDF5 by layer order),
    saved at a small input size: the weights of these networks do not depend on it."""
    base = getattr(tf.keras.applications, application)(
        alpha=alpha, include_top=False, weights=None, input_shape=(32, 32, 3))
    base.save_weights(str(path))
    return base


def test_standard_notop_files_load_at_their_width(tmp_path):
    """MobileNetV2 at 0.35 and MobileNet v1 at 0.25, as the standard ImageNet files are."""
    for backbone, application, alpha in [("mobilenet_v2", "MobileNetV2", 0.35),
                                         ("mobilenet", "MobileNet", 0.25)]:
        path = tmp_path / f"{backbone}_{alpha}_no_top.h5"
        source = _standard_notop_file(path, application, alpha)
        model = model_lib.build_model(backbone, 3, 32, str(path), 8, 0.0, alpha=alpha,
                                      head="dense")
        loaded = model_lib.get_base(model)
        assert len(loaded.weights) == len(source.weights)
        for a, b in zip(source.weights, loaded.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.slow
def test_weights_of_another_width_name_the_alpha_they_fit(tmp_path):
    narrow = tmp_path / "mobilenet_v2_0.35_no_top.h5"
    _standard_notop_file(narrow, "MobileNetV2", 0.35)
    with pytest.raises(model_lib.WeightsError) as wrong_alpha:
        model_lib.build_base("mobilenet_v2", 32, str(narrow))
    message = str(wrong_alpha.value)
    assert message.startswith(f"weights file {narrow} does not fit mobilenet_v2 alpha 1.0 ")
    assert message.endswith("the file fits alpha 0.35; pass --alpha 0.35")
    assert "\n" not in message
    v1 = tmp_path / "mobilenet_0.25_no_top.h5"
    _standard_notop_file(v1, "MobileNet", 0.25)
    with pytest.raises(model_lib.WeightsError,
                       match="fits mobilenet alpha 0.25; pass --backbone mobilenet --alpha 0.25"):
        model_lib.build_base("mobilenet_v2", 32, str(v1), alpha=0.35)


def test_mobilenet_v1_scales_to_minus_one_one_and_widths_are_per_backbone():
    from tfx_finetune.components.backbones import BACKBONES

    pixels = tf.constant([0.0, 127.5, 255.0])
    np.testing.assert_allclose(BACKBONES["mobilenet"].normalize(pixels), [-1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="ResNet50 cannot be built at alpha 0.5"):
        BACKBONES["resnet50"].build(32, None, 0.5)


def test_augmentation_is_inactive_at_inference():
    augmented = model_lib.build_model("mobilenet_v3_small", 2, 32, "none", 8, 0.0,
                                      augment=["flip", "rotation", "zoom", "translation"],
                                      head="dense")
    block = augmented.get_layer("augmentation")
    images = tf.random.uniform((2, 32, 32, 3), 0, 255, seed=3)
    np.testing.assert_array_equal(block(images, training=False), images)
    assert not np.allclose(block(images, training=True), images)
    assert model_lib.get_base(augmented) is not block


def test_without_pretrained_weights_every_layer_trains_with_live_batchnorm():
    scratch = model_lib.build_model("mobilenet_v3_small", 2, 32, "none", 8, 0.0, head="dense")
    base = model_lib.get_base(scratch)
    assert base.trainable and len(scratch.trainable_weights) > 100
    norms = [l for l in base.layers if isinstance(l, tf.keras.layers.BatchNormalization)]
    assert norms and all(l.trainable and l.momentum == 0.9 for l in norms)
    pooled = tf.keras.Model(scratch.inputs, scratch.get_layer("pool").output)
    images = tf.random.uniform((4, 32, 32, 3), 0, 255, seed=2)
    # Training mode uses batch statistics, so it differs from inference mode here.
    assert not np.allclose(pooled(images, training=True), pooled(images, training=False))


def _user_step(x):
    if tf.reduce_sum(x) > 0:  # tensor-dependent Python `if`: needs AutoGraph
        return x
    return -x


def test_autograph_skips_keras_internals_but_converts_user_code():
    from tensorflow.python.autograph.impl import conversion

    assert conversion.is_allowlisted(tf.keras.layers.Dense.call)
    assert conversion.is_allowlisted(tf.keras.Model.train_step)
    assert not conversion.is_allowlisted(_user_step)
    np.testing.assert_allclose(tf.function(_user_step)(tf.constant([-2.0])), [2.0])
