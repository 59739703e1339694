import numpy as np
import pytest
import tensorflow as tf

from components import model as model_lib


def _trainable_layer_names(model):
    return {w.name.split("/")[0] for w in model.trainable_weights}


@pytest.fixture(scope="module")
def model():
    return model_lib.build_model("mobilenet_v3_small", num_classes=4, image_size=32,
                                 weights="none", head_units=16, dropout=0.2)


def test_phase1_trains_only_the_head(model):
    assert _trainable_layer_names(model) == {"head_dense", "probabilities"}
    assert len(model.trainable_weights) == 4
    assert model.output_shape == (None, 4)


def test_base_is_called_in_inference_mode(model):
    base = model_lib.get_base(model)
    model_lib.unfreeze_top_layers(model, len(base.layers))
    try:
        # Even with the whole base trainable, training=True must not switch BatchNorm to
        # batch statistics: the pooled features are the same in both modes.
        pooled = tf.keras.Model(model.inputs, model.get_layer("pool").output)
        images = tf.random.uniform((4, 32, 32, 3), 0, 255, seed=1)
        np.testing.assert_allclose(pooled(images, training=True), pooled(images, training=False),
                                   rtol=1e-5, atol=1e-5)
    finally:
        for layer in base.layers:
            layer.trainable = False
        base.trainable = False


def test_phase2_unfreezes_top_layers_but_keeps_batchnorm_frozen(model):
    base = model_lib.get_base(model)
    count = 20
    unfrozen = model_lib.unfreeze_top_layers(model, count)
    model_lib.compile_model(model, 1e-5)
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
