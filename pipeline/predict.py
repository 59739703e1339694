"""`finetune predict` and `finetune serve-config`: use a published model from the command line."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from tfx_finetune.components.image_example_gen.image_check import IMAGE_EXTENSIONS, check_image
from tfx_finetune.components.serving_check.executor import vocabulary
from tfx_finetune.pipeline.config import PipelineConfig

BATCH_SIZE = 64


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A labelled image's top class; `image` holds its encoded bytes where they are shown."""

    path: str
    label: str
    predicted: str
    confidence: float
    image: bytes = dataclasses.field(default=b"", repr=False)

    @property
    def correct(self) -> bool:
        return self.predicted == self.label


def most_confident_mistakes(predictions: Iterable[Prediction], limit: int) -> List[Prediction]:
    """The wrong predictions, most confident first (equal confidences keep their order)."""
    wrong = [p for p in predictions if not p.correct]
    return sorted(wrong, key=lambda p: -p.confidence)[:limit]


# What a version directory holds: a SavedModel (serving/) or a TFLite model (tflite/).
SAVED_MODEL_FILE = "saved_model.pb"
TFLITE_FILE = "model.tflite"


def _model_in(directory: str) -> Optional[str]:
    if os.path.isfile(os.path.join(directory, SAVED_MODEL_FILE)):
        return directory
    tflite_file = os.path.join(directory, TFLITE_FILE)
    return tflite_file if os.path.isfile(tflite_file) else None


def resolve_model(path: str) -> str:
    """A `.tflite` file or a version directory as given (a TFLite version directory as its
    model.tflite), or the newest version under a base directory (serving or tflite).

    Raises:
      FileNotFoundError: when none of these holds a model.
    """
    if os.path.isfile(path) and path.endswith(".tflite"):
        return path
    if os.path.isdir(path):
        versions = sorted((n for n in os.listdir(path) if n.isdigit()), key=int, reverse=True)
        for directory in [path] + [os.path.join(path, v) for v in versions]:
            found = _model_in(directory)
            if found:
                return found
    raise FileNotFoundError(
        f"no model in {path}: pass a .tflite file, a version directory, or a base "
        "directory (<workspace>/serving/<model_name> or <workspace>/tflite/<model_name>) "
        "holding one")


def _classifier(model: str) -> Tuple[Callable[[List[bytes]], np.ndarray], List[str]]:
    """(encoded images -> probabilities [N, classes], class names) for a SavedModel directory
    (its `serving_default`) or a `.tflite` file (the interpreter on the Transform's pixels,
    `components.tflite.pixels`, with the labels.txt beside it)."""
    import tensorflow as tf

    if model.endswith(".tflite"):
        from tfx_finetune.components import tflite

        classifier = tflite.TFLiteClassifier(model)
        return (lambda images: np.stack([
            classifier.probabilities(image)
            for image in tflite.pixels(images, classifier.image_size)])), classifier.labels
    loaded = tf.saved_model.load(model)

    def probabilities_of(images: List[bytes]) -> np.ndarray:
        # Through `loaded`: a signature needs the loaded object, which owns its variables.
        serve = loaded.signatures["serving_default"]
        return serve(image_bytes=tf.constant(images))["probabilities"].numpy()

    return probabilities_of, vocabulary(model)


def collect_images(inputs: Sequence[str]) -> List[Tuple[str, Optional[str]]]:
    """(path, label) for each image; images inside `<folder>/<class>/` are labelled."""
    found: List[Tuple[str, Optional[str]]] = []
    for item in inputs:
        if os.path.isfile(item):
            found.append((item, None))
            continue
        if not os.path.isdir(item):
            raise FileNotFoundError(f"{item} is neither an image file nor a folder")
        for root, dirs, files in os.walk(item):
            dirs.sort()
            label = os.path.basename(root) if root != item.rstrip("/") else None
            for name in sorted(files):
                if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                    found.append((os.path.join(root, name), label))
    return found


def image_error(data: bytes) -> str:
    """"" when `data` is an image the pipeline would accept (ingestion's default limits), else
    why not: what `predict` and bulk predictions reject."""
    return check_image(data, PipelineConfig.max_image_bytes, PipelineConfig.max_image_pixels)


def top_classes(probabilities: np.ndarray, names: Sequence[str], top_k: int) -> List[Dict]:
    """The `top_k` most probable classes of one image, most probable first."""
    top = np.argsort(-probabilities)[:top_k]
    return [{"class": names[i], "confidence": float(probabilities[i])} for i in top]


def predict(model: str, images: List[Tuple[str, Optional[str]]], top_k: int) -> List[Dict]:
    """Top-k classes per image with a SavedModel directory or a `.tflite` file; an
    undecodable file gets an `error` instead."""
    probabilities_of, names = _classifier(model)
    results: List[Dict] = []
    good: List[Tuple[Dict, bytes]] = []
    for path, label in images:
        with open(path, "rb") as f:
            data = f.read()
        row: Dict = {"path": path, "label": label}
        error = image_error(data)
        if error:
            row["error"] = error
        else:
            good.append((row, data))
        results.append(row)
    for start in range(0, len(good), BATCH_SIZE):
        batch = good[start:start + BATCH_SIZE]
        probabilities = probabilities_of([d for _, d in batch])
        for (row, _), p in zip(batch, probabilities):
            row["predictions"] = top_classes(p, names, top_k)
    return results


def labelled_summary(results: List[Dict], mistakes: int = 5) -> Optional[Dict]:
    """Accuracy and the most confident mistakes over the labelled, decodable images."""
    scored = [Prediction(r["path"], r["label"], r["predictions"][0]["class"],
                         r["predictions"][0]["confidence"])
              for r in results if r["label"] is not None and "predictions" in r]
    if not scored:
        return None
    return {"images": len(scored), "accuracy": sum(p.correct for p in scored) / len(scored),
            "most_confident_mistakes": [
                {"path": p.path, "label": p.label, "class": p.predicted,
                 "confidence": p.confidence}
                for p in most_confident_mistakes(scored, mistakes)]}


def format_table(results: List[Dict], summary: Optional[Dict]) -> str:
    lines = []
    for r in results:
        if "error" in r:
            lines.append(f"{r['path']}: ERROR {r['error']}")
        else:
            top = ", ".join(f"{p['class']} {p['confidence']:.3f}" for p in r["predictions"])
            lines.append(f"{r['path']}: {top}")
    if summary:
        lines.append(f"accuracy on {summary['images']} labelled images: {summary['accuracy']:.4f}")
        for m in summary["most_confident_mistakes"]:
            lines.append(f"  mistake: {m['path']} is {m['label']}, predicted {m['class']} "
                         f"({m['confidence']:.3f})")
    return "\n".join(lines)


def run_predict(model: str, inputs: Sequence[str], top_k: int, as_json: bool) -> str:
    model_path = resolve_model(model)
    results = predict(model_path, collect_images(inputs), top_k)
    summary = labelled_summary(results)
    if as_json:
        return json.dumps({"model": model_path, "results": results, "summary": summary}, indent=2)
    return format_table(results, summary)


def serve_config(serving_dir: str, rest_port: int = 8501, grpc_port: int = 8500) -> str:
    """The TF Serving command, models.config and example requests for the published models."""
    serving_dir = os.path.abspath(serving_dir)
    models = sorted(n for n in os.listdir(serving_dir)
                    if any(v.isdigit() for v in os.listdir(os.path.join(serving_dir, n)))
                    ) if os.path.isdir(serving_dir) else []
    if not models:
        raise FileNotFoundError(f"no published model under {serving_dir}: run the pipeline first")
    entries = "\n".join(
        f'  config {{\n    name: "{m}"\n    base_path: "{os.path.join(serving_dir, m)}"\n'
        f'    model_platform: "tensorflow"\n  }}' for m in models)
    name = models[0]
    return f"""# {os.path.join(serving_dir, 'models.config')}
model_config_list {{
{entries}
}}

# Serve (TF Serving polls the base directories and loads new versions as they appear):
tensorflow_model_server --port={grpc_port} --rest_api_port={rest_port} \\
  --model_config_file={os.path.join(serving_dir, 'models.config')} \\
  --model_config_file_poll_wait_seconds=60

# Or with Docker, one model:
docker run -p {rest_port}:8501 -p {grpc_port}:8500 \\
  -v {os.path.join(serving_dir, name)}:/models/{name} -e MODEL_NAME={name} tensorflow/serving

# Classify an image (REST; the signature takes encoded image bytes as b64):
curl -s -X POST http://localhost:{rest_port}/v1/models/{name}:predict \\
  -d '{{"signature_name": "serving_default", "instances": [{{"b64": "'"$(base64 -w0 image.png)"'"}}]}}'

# Or send serialized tf.Examples with an "image" bytes feature to "serving_examples".
# Model status and signatures:
curl -s http://localhost:{rest_port}/v1/models/{name}
curl -s http://localhost:{rest_port}/v1/models/{name}/metadata"""
