import base64

import pytest
import tensorflow as tf

from tfx_finetune.components import serving_requests


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    module = tf.Module()
    module.serve = tf.function(
        lambda image_bytes: {"length": tf.strings.length(image_bytes),
                             "echo": image_bytes},
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    path = str(tmp_path_factory.mktemp("m"))
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return tf.saved_model.load(path)


def test_rest_body_uses_b64_objects():
    body = serving_requests.rest_body("serving_default", [b"\x00\xff"])
    assert body["instances"] == [{"b64": base64.b64encode(b"\x00\xff").decode()}]


def test_rest_predict_decodes_b64_and_answers_in_row_format(model):
    body = serving_requests.rest_body("serving_default", [b"\x89PNG\x00", b"abc"])
    assert serving_requests.rest_predict(model, body) == {"predictions": [
        {"length": 5, "echo": {"b64": base64.b64encode(b"\x89PNG\x00").decode()}},
        {"length": 3, "echo": "abc"},
    ]}


def test_rest_predict_accepts_named_instances(model):
    body = {"instances": [{"image_bytes": {"b64": base64.b64encode(b"hello").decode()}}]}
    assert serving_requests.rest_predict(model, body)["predictions"][0]["echo"] == "hello"


def test_rest_predict_refuses_an_unknown_signature(model):
    with pytest.raises(ValueError, match="'nope' not found"):
        serving_requests.rest_predict(model, {"signature_name": "nope", "instances": []})


def test_grpc_round_trip_keeps_binary_bytes(model):
    request = serving_requests.grpc_request("m", "serving_default", "image_bytes",
                                            [b"\x00\x01\x02", b"xy"])
    columns = serving_requests.response_columns(serving_requests.grpc_predict(model, request))
    assert columns["length"].tolist() == [3, 2]
    assert columns["echo"].tolist() == [b"\x00\x01\x02", b"xy"]
