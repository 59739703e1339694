"""TF Serving warm-up requests, written into the exported SavedModel and replayed before a push.

TF Serving replays `assets.extra/tf_serving_warmup_requests` (a TFRecord file of
`PredictionLog`s, at most 1,000) when it loads a version, so the first user request does not
pay for graph initialisation (TF Serving's "SavedModel Warmup" guide,
tensorflow/serving `tensorflow_serving/g3doc/saved_model_warmup.md`). The requests are the
ones a client sends: a batch of real eval-split images through each signature.
"""
from __future__ import annotations

import os
from typing import List, Sequence

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tfx_finetune.components import features, serving_requests, signatures

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# TF Serving reads at most this many records (kMaxNumRecords in its warm-up code).
MAX_RECORDS = 1000


class WarmupError(Exception):
    """A warm-up request is missing or fails; the message says which."""


def warmup_logs(serialized_examples: Sequence[bytes]) -> List[prediction_log_pb2.PredictionLog]:
    """One Predict request per signature for the examples' images: raw bytes for
    `serving_default`, the serialized tf.Examples for `serving_examples`."""
    parsed = tf.io.parse_example(list(serialized_examples),
                                 {features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string)})
    images = [row[0] for row in parsed[features.IMAGE_KEY].numpy()]
    requests = [
        serving_requests.grpc_request("", signatures.SERVING_DEFAULT,
                                      signatures.IMAGE_BYTES_INPUT, images),
        serving_requests.grpc_request("", signatures.SERVING_EXAMPLES, "examples",
                                      list(serialized_examples)),
    ]
    return [prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(
        request=request)) for request in requests]


def write_warmup_requests(model_dir: str, serialized_examples: Sequence[bytes]) -> str:
    """Writes the warm-up file into the SavedModel at `model_dir`; returns its path.

    Raises:
      WarmupError: when there are no examples to build requests from.
    """
    if not serialized_examples:
        raise WarmupError("no eval examples to build TF Serving warm-up requests from: the "
                          "eval split is empty")
    path = os.path.join(model_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for log in warmup_logs(serialized_examples):
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(model_dir: str) -> List[prediction_log_pb2.PredictionLog]:
    """The PredictionLogs of the model's warm-up file, as TF Serving reads them.

    Raises:
      WarmupError: when the file is missing, unreadable, or holds more than `MAX_RECORDS`.
    """
    path = os.path.join(model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        raise WarmupError(f"{path} is missing: TF Serving would load the model cold")
    logs = []
    try:
        for record in tf.data.TFRecordDataset(path):
            logs.append(prediction_log_pb2.PredictionLog.FromString(record.numpy()))
    except (tf.errors.OpError, ValueError) as e:
        raise WarmupError(f"{path} is not a TFRecord file of PredictionLogs: {e}") from e
    if len(logs) > MAX_RECORDS:
        raise WarmupError(f"{path} holds {len(logs)} requests; TF Serving reads at most "
                          f"{MAX_RECORDS}")
    return logs


def replay_warmup_requests(model_dir: str) -> int:
    """Replays every warm-up request against the SavedModel, as TF Serving does at load time;
    returns how many were replayed.

    Raises:
      WarmupError: naming the first request that is not a Predict request or fails.
    """
    logs = read_warmup_requests(model_dir)
    model = tf.saved_model.load(model_dir)
    for index, log in enumerate(logs):
        if log.WhichOneof("log_type") != "predict_log":
            raise WarmupError(f"warm-up request {index} is a {log.WhichOneof('log_type')}, "
                              "not a Predict request")
        request = log.predict_log.request
        try:
            response = serving_requests.grpc_predict(model, request)
        except (KeyError, TypeError, ValueError, tf.errors.OpError) as e:
            raise WarmupError(f"warm-up request {index} ({request.model_spec.signature_name}) "
                              f"fails: {e}") from e
        if not response.outputs:
            raise WarmupError(f"warm-up request {index} answered no outputs")
    return len(logs)
