"""TF Serving warm-up requests: written as TF Serving's guide gives them, replayed before a push."""
import os

import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tfx_finetune.components import features, signatures, warmup


def _example(image: bytes) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        features.LABEL_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"cat"])),
    })).SerializeToString()


@pytest.fixture
def model_dir(tmp_path):
    """A SavedModel with the pipeline's two signature names and inputs."""
    module = tf.Module()

    def answer(images):
        return {"probabilities": tf.ones([tf.size(images), 2]) / 2}

    module.by_bytes = tf.function(lambda image_bytes: answer(image_bytes), input_signature=[
        tf.TensorSpec([None], tf.string, name=signatures.IMAGE_BYTES_INPUT)])
    module.by_example = tf.function(
        lambda examples: answer(tf.io.parse_example(examples, {
            features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})[features.IMAGE_KEY]),
        input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    path = str(tmp_path / "model")
    tf.saved_model.save(module, path, signatures={
        signatures.SERVING_DEFAULT: module.by_bytes,
        signatures.SERVING_EXAMPLES: module.by_example})
    return path


def test_the_file_holds_one_predict_request_per_signature(model_dir):
    images = [b"\x89PNG first", b"\xff\xd8 second"]
    path = warmup.write_warmup_requests(model_dir, [_example(i) for i in images])
    assert path == os.path.join(model_dir, "assets.extra", "tf_serving_warmup_requests")
    # Read back as TF Serving does: a TFRecord file of PredictionLogs.
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(path)]
    assert [log.WhichOneof("log_type") for log in logs] == ["predict_log", "predict_log"]
    by_signature = {log.predict_log.request.model_spec.signature_name: log.predict_log.request
                    for log in logs}
    assert set(by_signature) == {signatures.SERVING_DEFAULT, signatures.SERVING_EXAMPLES}
    raw = by_signature[signatures.SERVING_DEFAULT].inputs[signatures.IMAGE_BYTES_INPUT]
    assert tf.make_ndarray(raw).tolist() == images
    examples = by_signature[signatures.SERVING_EXAMPLES].inputs["examples"]
    # Compared as messages: a map's serialized order may differ between serializations.
    assert [tf.train.Example.FromString(e) for e in tf.make_ndarray(examples).tolist()] == [
        tf.train.Example.FromString(_example(i)) for i in images]
    assert warmup.replay_warmup_requests(model_dir) == 2


def test_a_missing_file_or_a_failing_request_stops_the_push(model_dir):
    with pytest.raises(warmup.WarmupError, match="missing: TF Serving would load the model"):
        warmup.replay_warmup_requests(model_dir)
    warmup.write_warmup_requests(model_dir, [_example(b"x")])
    path = os.path.join(model_dir, warmup.WARMUP_FILE)
    logs = warmup.read_warmup_requests(model_dir)
    request = logs[1].predict_log.request
    request.inputs["images"].CopyFrom(request.inputs.pop("examples"))  # an input it lacks
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    with pytest.raises(warmup.WarmupError, match=r"request 1 \(serving_examples\) fails"):
        warmup.replay_warmup_requests(model_dir)


def test_no_eval_images_is_a_clear_error(model_dir):
    with pytest.raises(warmup.WarmupError, match="eval split is empty"):
        warmup.write_warmup_requests(model_dir, [])
