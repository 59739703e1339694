import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfx_finetune.components import class_weights, model as model_lib, trainer, trainer_inputs
from tfx_finetune.components.trainer_config import TrainerConfig

HP = TrainerConfig(
    backbone="mobilenet_v3_small", alpha=1.0, weights="none", weights_sha256="", image_size=32,
    recipe="seed", head="dense", head_units=8, dropout=0.0, batch_size=8,
    phase1_on_features=False, phase1_epochs=1, phase1_learning_rate=1e-3,
    phase2_epochs=1, phase2_learning_rate=1e-5, unfreeze_layers=10, unfreeze_from="",
    early_stopping_patience=3, reduce_lr_on_plateau=False, lr_schedule="constant",
    warmup_epochs=0, weight_decay=0.0, base_learning_rate_factor=1.0, label_smoothing=0.0,
    augment=(), mix="none", mix_alpha=1.0, class_weights="none", tflite="none",
    required_gpus=0, seed=0)


def _data(n=16, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (n, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, classes, n)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)


@pytest.mark.slow
def test_each_phase_trains_at_its_own_learning_rate(tmp_path):
    model = model_lib.build_model("mobilenet_v3_small", 2, 32, "none", 8, 0.0, head="dense")
    history = trainer.train_two_phases(model, _data(), _data(seed=1), HP, str(tmp_path))
    assert history["phase1"]["learning_rate"] == [pytest.approx(1e-3)]
    assert history["phase2"]["learning_rate"] == [pytest.approx(1e-5)]
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert history["phase2"]["trainable_params"] == [trainable]  # weights="none": every layer
    assert all(s > 0 for s in history["phase1"]["epoch_seconds"] + history["phase2"]["epoch_seconds"])
    assert (tmp_path / "phase1").is_dir() and (tmp_path / "phase2").is_dir()  # TensorBoard


@pytest.mark.slow
def test_phase2_is_skipped_when_nothing_is_unfrozen(tmp_path):
    model = model_lib.build_model("mobilenet_v3_small", 2, 32, "none", 8, 0.0, head="dense")
    history = trainer.train_two_phases(model, _data(), _data(seed=1),
                                       dataclasses.replace(HP, unfreeze_layers=0), str(tmp_path))
    assert list(history) == ["phase1"]


class _ScriptedValidation(tf.keras.callbacks.Callback):
    """Replaces val_accuracy with a scripted sequence and remembers each epoch's weights."""

    def __init__(self, scores):
        super().__init__()
        self.scores, self.weights = scores, []

    def on_epoch_end(self, epoch, logs=None):
        logs["val_accuracy"] = self.scores[epoch]
        self.weights.append([w.copy() for w in self.model.get_weights()])


def test_early_stopping_restores_the_best_epoch(tmp_path):
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
    model.compile(tf.keras.optimizers.SGD(0.1), "mse")
    x, y = np.random.default_rng(0).normal(size=(32, 4)), np.zeros((32, 2))
    scripted = _ScriptedValidation([0.5, 0.9, 0.6, 0.6, 0.6, 0.6, 0.6])
    model.fit(x, y, validation_data=(x, y), epochs=7, verbose=0,
              callbacks=[scripted] + trainer._callbacks(HP, str(tmp_path)))
    assert len(scripted.weights) == 5  # stopped 3 epochs after the best
    for restored, best in zip(model.get_weights(), scripted.weights[1]):
        np.testing.assert_array_equal(restored, best)


def test_class_weights_only_for_imbalanced_classes():
    assert class_weights.balanced({0: 100, 1: 90}) is None
    weights = class_weights.balanced({0: 300, 1: 100})
    assert weights == {0: pytest.approx(400 / 600), 1: pytest.approx(2.0)}


def test_cpu_trains_in_float32_with_the_configured_batch():
    hardware = trainer.configure_hardware([], 32)
    assert hardware.precision_policy == "float32" and hardware.global_batch_size == 32
    assert not isinstance(hardware.strategy, tf.distribute.MirroredStrategy)


def test_gpus_get_mixed_precision_and_several_get_mirrored_strategy():
    one = trainer.configure_hardware(["GPU:0"], 32)
    assert one.precision_policy == "mixed_float16" and one.global_batch_size == 32
    two = trainer.configure_hardware(["GPU:0", "GPU:1"], 32)
    assert isinstance(two.strategy, tf.distribute.MirroredStrategy)
    assert two.precision_policy == "mixed_float16"


# MirroredStrategy() mirrors over the logical CPUs when there is no GPU; logical devices can
# only be configured before TensorFlow initialises, hence a fresh process.
_TWO_REPLICAS = """
import json
import tfx_finetune.components
import tensorflow as tf
cpu, = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfx_finetune.components import trainer
hardware = trainer.configure_hardware(["GPU:0", "GPU:1"], 32)
print(json.dumps([type(hardware.strategy).__name__, hardware.strategy.num_replicas_in_sync,
                  hardware.global_batch_size]))
"""


def test_the_global_batch_is_the_per_replica_batch_times_the_replicas():
    out = subprocess.run([sys.executable, "-c", _TWO_REPLICAS], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    strategy, replicas, global_batch = json.loads(out.stdout.strip().splitlines()[-1])
    assert (strategy, replicas) == ("MirroredStrategy", 2)
    assert global_batch == 64


def test_a_trainer_that_asked_for_a_gpu_and_sees_none_stops_before_training():
    with pytest.raises(trainer.MissingGpuError,
                       match=r"asked for 1 GPU\(s\) and TensorFlow sees 0: .*--gpu-count 0"):
        trainer.set_up(dataclasses.replace(HP, required_gpus=1))
    with pytest.raises(trainer.MissingGpuError, match="asked for 2 GPU"):
        trainer.configure_hardware(["GPU:0"], 32, required_gpus=2)
    assert trainer.configure_hardware(["GPU:0", "GPU:1"], 32, required_gpus=2)


def test_mixed_precision_model_keeps_a_float32_softmax():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = model_lib.build_model("mobilenet_v3_small", 3, 32, "none", 8, 0.0, head="dense")
        assert model.get_layer("head_dense").compute_dtype == "float16"
        assert model.output.dtype == tf.float32
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def test_input_fn_decodes_once_into_a_memory_or_disk_cache(tmp_path, mixed_format_folder):
    import glob
    import os
    import tempfile

    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform import TFTransformOutput
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from tfx_finetune.components import features, preprocessing

    paths = sorted(glob.glob(os.path.join(mixed_format_folder, "*", "*")))
    rows = [{features.IMAGE_KEY: open(p, "rb").read(),
             features.LABEL_KEY: os.path.basename(os.path.dirname(p)).encode()} for p in paths]
    records = str(tmp_path / "data.gz")
    with tf.io.TFRecordWriter(records, options="GZIP") as writer:
        for row in rows:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
                for k, v in row.items()})).SerializeToString())
    spec = {k: tf.io.FixedLenFeature([1], tf.string) for k in rows[0]}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    output = str(tmp_path / "transform")
    with tft_beam.Context(temp_dir=str(tmp_path / "tmp")):
        _ = (([{k: [v] for k, v in r.items()} for r in rows], metadata)
             | tft_beam.AnalyzeDataset(
                 lambda i: preprocessing.preprocessing_fn(i, {"image_size": 16}))
             | tft_beam.WriteTransformFn(output))
    metadata_io.write_metadata(metadata, os.path.join(output, TFTransformOutput.RAW_METADATA_DIR))
    tft_output = TFTransformOutput(output)

    def two_epochs(budget_bytes):
        """Each epoch's sorted (image bytes, label) pairs, and the cache files seen meanwhile."""
        with trainer_inputs.cached_inputs([([records], True)], tft_output, 4, seed=0,
                                          budget_bytes=budget_bytes) as (dataset,):
            epochs = []
            for _ in range(2):
                batches = list(dataset.as_numpy_iterator())
                assert all(len(xs) <= 4 and xs.dtype == np.float32 for xs, _ in batches)
                epochs.append(sorted((x.tobytes(), int(y)) for xs, ys in batches
                                     for x, y in zip(xs, ys)))
            cache_files = glob.glob(os.path.join(tempfile.gettempdir(), "trainer-cache-*", "*"))
        return epochs, cache_files

    # Transform's float pixels, rounded to the uint8 the cache keeps.
    raw = [tf.train.Example(features=tf.train.Features(feature={
        k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v])) for k, v in row.items()})
    ).SerializeToString() for row in rows]
    transformed = tft_output.transform_raw_features(
        tf.io.parse_example(tf.constant(raw), tft_output.raw_feature_spec()))
    images = np.round(transformed[features.transformed_name(features.IMAGE_KEY)].numpy())
    labels = transformed[features.transformed_name(features.LABEL_KEY)].numpy()
    expected = sorted((x.astype(np.float32).tobytes(), int(y)) for x, y in zip(images, labels))

    in_memory, memory_files = two_epochs(trainer_inputs.CACHE_BUDGET_BYTES)
    on_disk, disk_files = two_epochs(budget_bytes=100)
    assert in_memory == on_disk == [expected, expected]
    assert not memory_files and disk_files  # over the budget: files on local disk
    assert not glob.glob(os.path.join(tempfile.gettempdir(), "trainer-cache-*"))  # removed
