"""The ingestion report: rejects, counts per class and split, summary.json and its limits.

Every image is decoded at ingestion, so a bad file never reaches Transform. What is not
ingested is listed with its reason in `<examples>/ingestion/rejects.jsonl`: `skipped` entries
(OS junk, hidden files, unknown extensions) are expected noise; `rejected` entries
(undecodable, too large, outside the input root) count towards `max_reject_fraction`, above
which the run fails.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Sequence

import tensorflow as tf

from tfx_finetune.components import splits
from tfx_finetune.components.image_example_gen import SUMMARY_FILE
from tfx_finetune.components.image_example_gen.errors import IngestionError
from tfx_finetune.components.image_example_gen.options import IngestionOptions

REJECTS_FILE = "rejects.jsonl"
UNNAMED = "unnamed"  # the `kind` of a rejects entry whose label has no name


def _read_json_lines(path: str) -> List[Any]:
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _split_counts(report_dir: str) -> Dict[str, Dict[str, int]]:
    """{split: {class: images}} from the executor's counts-<split>.json files."""
    counts = {}
    for name in sorted(tf.io.gfile.listdir(report_dir)):
        if name.startswith("counts-") and name.endswith(".json"):
            rows = _read_json_lines(os.path.join(report_dir, name))
            counts[name[len("counts-"):-len(".json")]] = rows[0] if rows else {}
    return counts


def _check_every_label_named(rejects: List[Any], names: Sequence[str]) -> None:
    unnamed = sorted({r["label"] for r in rejects if r["kind"] == UNNAMED},
                     key=lambda label: (len(label), label))
    if unnamed:
        raise IngestionError(
            f"label(s) {', '.join(unnamed[:20])}{' …' if len(unnamed) > 20 else ''} have no "
            f"name in label_names_file, which names {len(names)} labels (0 to "
            f"{len(names) - 1}, line i naming label i): add a line for each, or fix these "
            "labels in the input")


def _log(summary: Dict[str, Any], rejects: List[Any]) -> None:
    """The counts, the classes a split lacks and every reject, in the log."""
    counts, per_class = summary["per_split"], summary["per_class"]
    logging.info("ingestion: %d images accepted, %d rejected, %d skipped", summary["accepted"],
                 summary["rejected"], summary["skipped"])
    for split, split_counts in sorted(counts.items()):
        logging.info("ingestion: %s split: %s", split,
                     ", ".join(f"{k}={v}" for k, v in sorted(split_counts.items())))
    for split in (splits.EVAL, splits.TEST):
        absent = sorted(set(per_class) - set(counts.get(split, {})))
        if absent:
            logging.warning("ingestion: no %s images for class(es) %s: their %s figures will "
                            "be missing; add images to them", split, ", ".join(absent), split)
    for reject in rejects:
        logging.warning("ingestion: %s %s: %s", reject["kind"], reject["path"], reject["reason"])


def summarize_ingestion(report_dir: str, options: IngestionOptions) -> Dict[str, Any]:
    """Logs counts per class and split, writes summary.json, enforces the limits.

    `report_dir` is under the output artifact, so it may be a URI (gs://… on Kubeflow).

    Raises:
      IngestionError: when a label has no name in `label_names` (when given), the reject
        fraction is above `max_reject_fraction` or a class has fewer than
        `min_images_per_class` images.
    """
    counts = _split_counts(report_dir)
    rejects = _read_json_lines(os.path.join(report_dir, REJECTS_FILE))
    _check_every_label_named(rejects, options.label_names)
    rejects = [r for r in rejects if r["kind"] != UNNAMED]
    rejected = [r for r in rejects if r["kind"] == "rejected"]
    per_class: Dict[str, int] = {}
    for split_counts in counts.values():
        for label, n in split_counts.items():
            per_class[label] = per_class.get(label, 0) + n
    accepted = sum(per_class.values())
    fraction = len(rejected) / max(1, accepted + len(rejected))
    summary = {"accepted": accepted, "rejected": len(rejected),
               "skipped": len(rejects) - len(rejected), "reject_fraction": fraction,
               "per_class": per_class, "per_split": counts}
    with tf.io.gfile.GFile(os.path.join(report_dir, SUMMARY_FILE), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    _log(summary, rejects)
    rejects_path = os.path.join(report_dir, REJECTS_FILE)
    if fraction > options.max_reject_fraction:
        reasons = "\n".join(f"  {r['path']}: {r['reason']}" for r in rejected[:10])
        raise IngestionError(
            f"{len(rejected)} of {accepted + len(rejected)} images rejected ({fraction:.1%}), "
            f"above max_reject_fraction={options.max_reject_fraction:.1%}. First rejects:\n"
            f"{reasons}\nAll rejects: {rejects_path}. Fix or remove these files, or raise "
            "max_reject_fraction.")
    small = {c: n for c, n in per_class.items() if n < options.min_images_per_class}
    if small:
        raise IngestionError(
            "classes with fewer than min_images_per_class="
            f"{options.min_images_per_class} usable images: "
            + ", ".join(f"{c!r} ({n})" for c, n in sorted(small.items()))
            + ". Add images to them, remove the folders, or lower min_images_per_class.")
    return summary
