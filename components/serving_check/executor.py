"""Drives a candidate SavedModel with TF Serving's REST and gRPC request formats."""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
import tensorflow as tf

from tfx_finetune.components import features, serving_requests, signatures, splits
from tfx_finetune.components.labels import vocabulary


class NotServable(Exception):
    """The model does not answer TF Serving requests correctly; the message says how."""


def sample_examples(examples_uri: str, split: str, count: int) -> List[bytes]:
    """The first `count` serialized tf.Examples of `split`."""
    return splits.first_records(splits.split_files(examples_uri, split), count)


def _check_outputs(where: str, probabilities: np.ndarray, class_ids: np.ndarray,
                   class_names: Sequence[str], n: int, names: List[str]) -> None:
    if probabilities.shape != (n, len(names)):
        raise NotServable(f"{where}: probabilities have shape {probabilities.shape}, "
                          f"expected ({n}, {len(names)})")
    sums = probabilities.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise NotServable(f"{where}: probability rows sum to {sums.tolist()}, not 1")
    expected = [names[i] for i in class_ids]
    if list(class_names) != expected:
        raise NotServable(f"{where}: class names {list(class_names)} do not match the "
                          f"vocabulary entries of the class ids ({expected})")


def check_servable(model_dir: str, serialized_examples: Sequence[bytes]) -> str:
    """Sends the examples' images through both signatures in both request formats.

    Returns:
      A one-line summary of what was checked.

    Raises:
      NotServable: with the first problem found.
    """
    if not serialized_examples:
        raise NotServable("no examples to send: the test split is empty")
    model = tf.saved_model.load(model_dir)
    names = vocabulary(model_dir)
    parsed = tf.io.parse_example(
        list(serialized_examples),
        {features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string)})
    images = [b[0] for b in parsed[features.IMAGE_KEY].numpy()]
    n = len(images)
    requests = [
        (signatures.SERVING_DEFAULT, signatures.IMAGE_BYTES_INPUT, images),
        (signatures.SERVING_EXAMPLES, "examples", list(serialized_examples)),
    ]
    answers = []
    for signature_name, input_name, values in requests:
        if signature_name not in model.signatures:
            raise NotServable(f"the model has no '{signature_name}' signature")
        rest = serving_requests.rest_predict(
            model, serving_requests.rest_body(signature_name, values))["predictions"]
        rest_probabilities = np.array([row["probabilities"] for row in rest])
        _check_outputs(f"REST {signature_name}", rest_probabilities,
                       np.array([row["class_id"] for row in rest]),
                       [row["class_name"] for row in rest], n, names)
        response = serving_requests.grpc_predict(model, serving_requests.grpc_request(
            "candidate", signature_name, input_name, values))
        columns = serving_requests.response_columns(response)
        _check_outputs(f"gRPC {signature_name}", columns["probabilities"],
                       columns["class_id"], [c.decode() for c in columns["class_name"]], n, names)
        if not np.allclose(rest_probabilities, columns["probabilities"], atol=1e-5):
            raise NotServable(f"{signature_name}: REST and gRPC answers differ")
        answers.append(rest_probabilities)
    if not np.allclose(answers[0], answers[1], atol=1e-5):
        raise NotServable("serving_default (image bytes) and serving_examples disagree on the "
                          "same images: their preprocessing differs")
    return f"{n} images answered consistently in REST and gRPC formats by both signatures"
