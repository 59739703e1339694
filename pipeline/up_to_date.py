"""Tells, before TensorFlow and TFX are loaded, that `finetune run` has nothing to do.

An unchanged re-run is served entirely from the TFX cache (the Evaluator and the DataGate never
compare a run with its own model or data), yet loading TensorFlow, TFX, Beam and TFMA costs more than
the cached run itself. After each successful run the CLI records a fingerprint of everything
the run's result depends on; the next run with the same fingerprint prints the recorded
summary instead of starting the pipeline. The fingerprint covers:

- the full config (every field),
- the content of every input file (as the ingestion's own cache fingerprint does),
- the schema, the label names file and the weights file,
- this project's source code and the versions of the packages the executors run,
- the ML Metadata store and the serving and TFLite directories as the run left them: any other
  run in the workspace (a compare, a failed run, another config) or a removed version changes
  them.

Inputs on a bucket (gs://, s3://) and CSV manifests (whose images may live anywhere) are
never fingerprinted: those runs always go through the pipeline.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
from typing import Optional

from tfx_finetune.components.digest import directory_digest, file_digest
from tfx_finetune.components.uri import is_uri
from tfx_finetune.pipeline.config import PipelineConfig

RECORD = "last_run.json"
_PACKAGES = ("tfx", "tensorflow", "tensorflow-transform", "tensorflow-model-analysis",
             "tensorflow-data-validation", "apache-beam", "ml-metadata", "tf-keras")
_SOURCE_DIRS = ("components", "pipeline", "reports", "commands", "schemas")


def _source_digest() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = hashlib.sha256()
    for name in _SOURCE_DIRS:
        for dirpath, dirs, files in os.walk(os.path.join(root, name)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for file_name in sorted(f for f in files if f.endswith((".py", ".pbtxt"))):
                path = os.path.join(dirpath, file_name)
                digest.update(os.path.relpath(path, root).encode() + b"\0")
                digest.update(file_digest(path).encode())
    for package in _PACKAGES:
        digest.update(f"{package}=={importlib.metadata.version(package)}\0".encode())
    return digest.hexdigest()


def fingerprint(config: PipelineConfig) -> Optional[str]:
    """The fingerprint of a run of `config` now, or None when it cannot be known cheaply."""
    paths = (config.data_dir, config.workspace, config.schema_path)
    if any(is_uri(p) for p in paths) or not os.path.isdir(config.data_dir):
        return None
    metadata = config.metadata_path
    if not os.path.isfile(metadata):
        return None
    parts = {
        "config": json.dumps(dataclasses.asdict(config), sort_keys=True, default=str),
        "data": directory_digest(config.data_dir),
        "schema": file_digest(config.schema_path),
        "label_names": (file_digest(config.label_names_file) if config.label_names_file
                        else ""),
        "weights": (file_digest(config.backbone_weights)
                    if os.path.isfile(config.backbone_weights) else config.backbone_weights),
        "code": _source_digest(),
        "metadata": file_digest(metadata),
        "serving": directory_digest(config.model_base_dir)
        if os.path.isdir(config.model_base_dir) else "",
        "tflite": directory_digest(config.tflite_base_dir)
        if os.path.isdir(config.tflite_base_dir) else "",
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def record(config: PipelineConfig, summary_json: str) -> None:
    """Records a successful run: its fingerprint (taken now, after the run) and its summary."""
    value = fingerprint(config)
    path = os.path.join(config.workspace, RECORD)
    if value is None:
        if os.path.exists(path):
            os.remove(path)
        return
    with open(path + ".tmp", "w") as f:
        json.dump({"fingerprint": value, "summary": json.loads(summary_json)}, f, indent=2)
    os.replace(path + ".tmp", path)


def recorded_summary(config: PipelineConfig) -> Optional[dict]:
    """The last run's summary (as JSON) when a run now would change nothing, else None."""
    path = os.path.join(config.workspace, RECORD)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        recorded = json.load(f)
    return recorded["summary"] if recorded.get("fingerprint") == fingerprint(config) else None
