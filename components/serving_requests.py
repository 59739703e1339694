"""TF Serving's request formats, applied to a loaded SavedModel without a model server.

`rest_predict` decodes a REST predict body the way TF Serving does (row "instances" format,
`{"b64": ...}` for binary strings) and answers in its row "predictions" format;
`grpc_predict` takes a `tensorflow_serving.apis.predict_pb2.PredictRequest` and answers with a
`PredictResponse`, converting tensors with the same `make_tensor_proto`/`make_ndarray`.
"""
from __future__ import annotations

import base64
from typing import Any, Dict, List, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2


def rest_body(signature_name: str, images: Sequence[bytes]) -> Dict[str, Any]:
    """The JSON body a client POSTs to /v1/models/<name>:predict for raw image bytes."""
    return {"signature_name": signature_name,
            "instances": [{"b64": base64.b64encode(b).decode("ascii")} for b in images]}


def _decode_b64(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def _json_value(value: Any) -> Any:
    """Like TF Serving: UTF-8 strings as text, other binary strings as {"b64": ...}."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    return value.tolist()


def rest_predict(saved_model, body: Dict[str, Any]) -> Dict[str, Any]:
    """Serves one REST predict body.

    Raises:
      ValueError: for a body TF Serving would reject (unknown signature, missing inputs).
    """
    name = body.get("signature_name", "serving_default")
    if name not in saved_model.signatures:
        raise ValueError(f"serving signature '{name}' not found")
    signature = saved_model.signatures[name]
    input_names = list(signature.structured_input_signature[1])
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise ValueError("the body needs an 'instances' list")
    named = all(isinstance(i, dict) and "b64" not in i for i in instances)
    if named:
        columns = {k: [_decode_b64(i[k]) for i in instances] for k in input_names}
    elif len(input_names) == 1:
        columns = {input_names[0]: [_decode_b64(i) for i in instances]}
    else:
        raise ValueError(f"instances must name the inputs {input_names}")
    outputs = signature(**{k: tf.constant(v) for k, v in columns.items()})
    rows: List[Dict[str, Any]] = []
    for index in range(len(instances)):
        row = {}
        for key, tensor in outputs.items():
            row[key] = _json_value(tensor.numpy()[index])
        rows.append(row)
    return {"predictions": rows}


def grpc_request(model_name: str, signature_name: str, input_name: str,
                 values: Sequence[bytes]) -> predict_pb2.PredictRequest:
    """A PredictRequest as a gRPC client builds it."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(list(values), dtype=tf.string))
    return request


def grpc_predict(saved_model, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """Serves one PredictRequest as TF Serving's Predict RPC would."""
    signature = saved_model.signatures[request.model_spec.signature_name or "serving_default"]
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for key, tensor in signature(**inputs).items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(tensor.numpy()))
    return response


def response_columns(response: predict_pb2.PredictResponse) -> Dict[str, np.ndarray]:
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
