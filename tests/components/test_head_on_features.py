import numpy as np
import pytest
import tensorflow as tf

from tfx_finetune.components import head_on_features, model as model_lib, trainer
from tfx_finetune.pipeline.config import make_config


def _images(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 32, 32, 3)).astype(np.float32), rng.integers(0, 3, n)


def _dataset(images, labels, shuffle_seed=None):
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(labels), seed=shuffle_seed)
    return dataset.batch(5)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A weights file for the base, so that the model is built as a pretrained one (frozen)."""
    path = str(tmp_path_factory.mktemp("base") / "base.weights.h5")
    model_lib.build_base("mobilenet_v3_small", 32, "none").save_weights(path)
    return path


def _model(weights, head="dense"):
    tf.keras.utils.set_random_seed(0)
    return model_lib.build_model("mobilenet_v3_small", 3, 32, weights, 8, 0.0,
                                 augment=("flip", "rotation"), head=head)


@pytest.mark.parametrize("head", ["dense", "linear"])
def test_the_head_model_is_the_models_head(pretrained, head):
    model = _model(pretrained, head)
    images, labels = _images()
    features, _, _ = head_on_features.pooled_features(model, _dataset(images, labels))
    head_model = head_on_features.head_model(model)
    np.testing.assert_allclose(head_model.predict_on_batch(features),
                               model.predict_on_batch(images), atol=1e-5)
    ids = {id(w) for w in model.trainable_weights}
    assert head_model.trainable_weights and all(id(w) in ids for w in head_model.trainable_weights)


def test_features_are_the_frozen_base_output_without_augmentation(pretrained):
    model = _model(pretrained)
    images, labels = _images()
    expected = tf.keras.Model(model.inputs, model.get_layer("pool").output
                              ).predict_on_batch(images)
    features, feature_labels, seconds = head_on_features.pooled_features(
        model, _dataset(images, labels))
    np.testing.assert_allclose(features, expected, atol=1e-5)  # flip and rotation are off
    np.testing.assert_array_equal(feature_labels, labels)
    assert seconds > 0
    # A shuffled split: each feature row keeps its own image's label.
    shuffled, shuffled_labels, _ = head_on_features.pooled_features(
        model, _dataset(images, labels, shuffle_seed=3))
    rows = [int(np.argmin(np.abs(expected - row).sum(axis=1))) for row in shuffled]
    assert sorted(rows) == list(range(len(images))) and rows != sorted(rows)
    np.testing.assert_array_equal(shuffled_labels, labels[rows])


def test_no_images_is_an_error(pretrained):
    images, labels = _images()
    with pytest.raises(ValueError, match="no images"):
        head_on_features.pooled_features(_model(pretrained), _dataset(images, labels).take(0))


PHASE1_ONLY = {"phase1_epochs": 1, "phase2_epochs": 0}


def _config(weights, **overrides):
    return make_config({"weights": weights, "image_size": 32, "head": "dense", "head_units": 8,
                        "batch_size": 4, "phase1_epochs": 3, "phase2_epochs": 1,
                        "unfreeze_layers": 5, "augment": "flip", **overrides}).trainer_config()


@pytest.mark.slow
def test_phase1_on_features_trains_the_head_and_leaves_the_base(pretrained, tmp_path):
    hp = _config(pretrained)
    assert hp.phase1_on_features  # the default recipe's
    model = trainer.build_model(hp, 3)
    base = model_lib.get_base(model)
    base_before = [w.numpy().copy() for w in base.weights]
    head_before = [w.numpy().copy() for w in model.get_layer("probabilities").weights]
    images, labels = _images()
    phase1_weights = {}

    def after_phase1(model, *args, **kwargs):
        phase1_weights["base"] = [w.numpy().copy() for w in base.weights]
        phase1_weights["head"] = [w.numpy().copy() for w in
                                  model.get_layer("probabilities").weights]
        return unfreeze(model, *args, **kwargs)

    unfreeze = model_lib.unfreeze_top_layers
    model_lib.unfreeze_top_layers = after_phase1
    try:
        history = trainer.train_two_phases(model, _dataset(images, labels, 0),
                                           _dataset(*_images(6, seed=1)), hp, str(tmp_path))
    finally:
        model_lib.unfreeze_top_layers = unfreeze
    for before, after in zip(base_before, phase1_weights["base"]):
        np.testing.assert_array_equal(before, after)
    assert not all(np.array_equal(b, a) for b, a in zip(head_before, phase1_weights["head"]))
    phase1 = history["phase1"]
    assert phase1["features_seconds"][0] > 0 and len(phase1["loss"]) == 3
    head_params = sum(int(np.prod(w.shape)) for w in
                      head_on_features.head_model(model).trainable_weights)
    assert phase1["trainable_params"] == [head_params] * 3
    # 12 features in batches of 4: three steps an epoch, so the first epoch's last step is
    # at 2/3 of the one-epoch warm-up.
    assert phase1["learning_rate"][0] == pytest.approx(hp.phase1_learning_rate * 2 / 3,
                                                       rel=1e-5)
    assert len(history["phase2"]["loss"]) == 1  # phase 2 trains on the images


@pytest.mark.slow
def test_phase1_runs_on_images_when_asked_or_from_scratch(pretrained, tmp_path):
    images, labels = _images()
    # Phase 1 alone (one epoch) is what this test judges.
    for hp, scratch in ((_config(pretrained, phase1_on_features=False, **PHASE1_ONLY), False),
                        (_config("none", **PHASE1_ONLY), True)):
        model = trainer.build_model(hp, 3)
        head_params = sum(int(np.prod(w.shape)) for w in
                          head_on_features.head_model(model).trainable_weights)
        history = trainer.train_two_phases(model, _dataset(images, labels, 0),
                                           _dataset(images, labels), hp, str(tmp_path))
        assert history["phase1"]["features_seconds"] == [0.0]
        # On images: the head alone learns on a pretrained base; from scratch, every layer.
        assert (history["phase1"]["trainable_params"][0] > head_params) == scratch
