"""`finetune predict` and `finetune serve-config`: use a published model from the command line."""
from __future__ import annotations

import argparse
import json
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfx_finetune.commands import options
from tfx_finetune.components.image_example_gen.image_check import IMAGE_EXTENSIONS, check_image
from tfx_finetune.components.labels import vocabulary
from tfx_finetune.pipeline.config import PipelineConfig
from tfx_finetune.reports.prediction_analysis import (BATCH_SIZE, Prediction,
                                                     most_confident_mistakes)

# TF Serving's default ports, also inside its Docker image.
REST_PORT = 8501
GRPC_PORT = 8500


def resolve_model(path: str) -> str:
    """A `.tflite` file or a version directory as given (a TFLite version directory as its
    model.tflite), or the newest version under a base directory (serving or tflite).

    Raises:
      FileNotFoundError: when none of these holds a model.
    """
    from tfx_finetune.components import published, tflite

    if os.path.isfile(path) and path.endswith(".tflite"):
        return path
    for directory in [path] + [os.path.join(path, str(v))
                               for v in reversed(published.versions(path))]:
        if os.path.isfile(os.path.join(directory, published.SAVED_MODEL_FILE)):
            return directory
        if os.path.isfile(os.path.join(directory, tflite.MODEL_FILE)):
            return os.path.join(directory, tflite.MODEL_FILE)
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


def serve_config(serving_dir: str, rest_port: int = REST_PORT,
                 grpc_port: int = GRPC_PORT) -> str:
    """The TF Serving command, models.config and example requests for the published models."""
    from tfx_finetune.components import published

    serving_dir = os.path.abspath(serving_dir)
    models = sorted(n for n in os.listdir(serving_dir)
                    if published.versions(os.path.join(serving_dir, n))
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
docker run -p {rest_port}:{REST_PORT} -p {grpc_port}:{GRPC_PORT} \\
  -v {os.path.join(serving_dir, name)}:/models/{name} -e MODEL_NAME={name} tensorflow/serving

# Classify an image (REST; the signature takes encoded image bytes as b64):
curl -s -X POST http://localhost:{rest_port}/v1/models/{name}:predict \\
  -d '{{"signature_name": "serving_default", "instances": [{{"b64": "'"$(base64 -w0 image.png)"'"}}]}}'

# Or send serialized tf.Examples with an "image" bytes feature to "serving_examples".
# Model status and signatures:
curl -s http://localhost:{rest_port}/v1/models/{name}
curl -s http://localhost:{rest_port}/v1/models/{name}/metadata"""


def command(args: argparse.Namespace) -> int:
    """`finetune predict`; with --bulk (or its flags), `bulk_predict.command`."""
    if args.bulk or args.output or args.beam_workers or args.beam_args:
        from tfx_finetune.commands import bulk_predict

        return bulk_predict.command(args)
    print(run_predict(args.model, args.inputs, args.top_k, args.json))
    return 0


def serve_config_command(args: argparse.Namespace) -> int:
    """`finetune serve-config`."""
    config = options.make_config(args)
    print(serve_config(config.serving_dir, args.rest_port, args.grpc_port))
    return 0


def add_parsers(subparsers) -> None:
    """`predict` and `serve-config`."""
    parser = subparsers.add_parser("predict", help="classify images with a published model")
    parser.add_argument("--model", required=True,
                        help="a .tflite file, a version directory, or a serving or tflite base "
                             "dir (newest version is used)")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                        help="image files or folders; <folder>/<class>/<image> counts as "
                             "labelled")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--bulk", action="store_true", help="score one FOLDER (recursively, "
                        "any size) with Beam's RunInference into --output, rejects beside it")
    parser.add_argument("--output", metavar="FILE.jsonl", help="--bulk: the JSON-lines file")
    parser.add_argument("--beam-workers", type=options.worker_count, default=0, metavar="N",
                        help="--bulk: N DirectRunner worker processes (default 0: in memory)")
    parser.add_argument("--beam-arg", dest="beam_args", action="append", default=[],
                        metavar="--OPT=V", help="--bulk: a Beam pipeline option (repeatable)")
    parser.set_defaults(func=command)
    serve = subparsers.add_parser("serve-config", help="print the TF Serving command, "
                                                       "models.config and example requests "
                                                       "for published models")
    options.add_config_flags(serve)
    serve.add_argument("--rest-port", type=int, default=REST_PORT)
    serve.add_argument("--grpc-port", type=int, default=GRPC_PORT)
    serve.set_defaults(func=serve_config_command)
