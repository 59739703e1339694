"""`finetune predict --bulk`: a folder scored with Beam's RunInference, rejects listed.

The unit tests score with a tiny SavedModel shaped like a published one (`serving_default`
taking encoded image bytes, the label vocabulary in its assets), whose answer is known: the
share of bright pixels. The slow test scores with the model the shared end-to-end run
published and compares with single-image `finetune predict`.
"""
import io
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from imagefolders import write_folder
from tfx_finetune.commands import bulk_predict, cli
from tfx_finetune.components import features

CLASSES = ["dark", "bright", "grey"]


def _tiny_model(path):
    """A SavedModel whose probabilities are (1 - m, m, 0) for m the image's mean brightness."""
    import tensorflow as tf

    class Brightness(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, image_bytes):
            def mean(data):
                image = tf.io.decode_image(data, channels=1, expand_animations=False)
                return tf.reduce_mean(tf.cast(image, tf.float32)) / 255.0

            m = tf.map_fn(mean, image_bytes, fn_output_signature=tf.float32)
            return {"probabilities": tf.stack([1.0 - m, m, tf.zeros_like(m)], axis=1)}

    module = Brightness()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    with open(os.path.join(path, "assets", features.LABEL_VOCABULARY), "w") as f:
        f.write("".join(name + "\n" for name in CLASSES))
    return path


@pytest.fixture(scope="module")
def tiny_base_dir(tmp_path_factory):
    """A serving base directory holding version 1 of the tiny model."""
    base = tmp_path_factory.mktemp("serving") / "tiny"
    _tiny_model(str(base / "1"))
    return str(base)


def _jpeg(value):
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, np.uint8), mode="L").save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path):
    """Images in nested sub-folders, a text file, a truncated JPEG and an empty PNG."""
    root = tmp_path / "to_score"
    write_folder(str(root / "digits"), classes=(0, 1), per_class=3)
    os.makedirs(root / "photos" / "night")
    (root / "photos" / "white.jpg").write_bytes(_jpeg(255))
    (root / "photos" / "night" / "black.jpeg").write_bytes(_jpeg(0))
    (root / "notes.txt").write_text("not an image")
    (root / "photos" / "corrupt.jpg").write_bytes(_jpeg(128)[:40])
    (root / "photos" / "empty.png").write_bytes(b"")
    return str(root)


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_every_image_is_scored_once_and_every_other_file_rejected(tiny_base_dir, folder,
                                                                   tmp_path):
    output = str(tmp_path / "out" / "predictions.jsonl")
    result = bulk_predict.run_bulk_predict(tiny_base_dir, folder, output, top_k=2)
    rows = {r["path"]: r["predictions"] for r in _lines(output)}
    images = {os.path.join(folder, "digits", c, f"{i:03d}.png") for c in "01" for i in range(3)}
    images |= {os.path.join(folder, "photos", "white.jpg"),
               os.path.join(folder, "photos", "night", "black.jpeg")}
    assert set(rows) == images and result.scored == len(images) == 8
    assert [p["class"] for p in rows[os.path.join(folder, "photos", "white.jpg")]] == \
        ["bright", "dark"]
    black = rows[os.path.join(folder, "photos", "night", "black.jpeg")]
    assert black[0] == {"class": "dark", "confidence": pytest.approx(1.0, abs=0.02)}
    assert all(len(p) == 2 and p[0]["confidence"] >= p[1]["confidence"]
               for p in rows.values())
    rejects = {os.path.relpath(r["path"], folder): r["reason"]
               for r in _lines(bulk_predict.rejects_path(output))}
    assert set(rejects) == {"notes.txt", "photos/corrupt.jpg", "photos/empty.png"}
    assert result.rejected == 3
    assert rejects["notes.txt"].startswith("not an image: extension '.txt'")
    assert rejects["photos/corrupt.jpg"].startswith("cannot decode image")
    assert rejects["photos/empty.png"] == "empty file"
    assert sorted(os.listdir(tmp_path / "out")) == ["predictions.jsonl",
                                                    "predictions.rejects.jsonl"]


def test_files_are_listed_one_directory_at_a_time(folder):
    walk = bulk_predict.walk_files(folder)
    assert not isinstance(walk, (list, tuple))
    first = next(walk)
    assert first == os.path.join(folder, "notes.txt")  # before any sub-folder is listed
    assert len([first, *walk]) == 11


def test_command_line_scores_in_two_worker_processes_with_progress(tiny_base_dir, folder,
                                                                    tmp_path, capfd,
                                                                    monkeypatch):
    monkeypatch.setattr(bulk_predict, "PROGRESS_SECONDS", 0.0)  # a progress line per image
    output = str(tmp_path / "predictions.jsonl")
    assert cli.main(["predict", "--bulk", "--model", os.path.join(tiny_base_dir, "1"), folder,
                     "--output", output, "--top-k", "1", "--beam-workers", "2"]) == 0
    out = capfd.readouterr().out  # the file descriptor, which the worker processes share
    assert "scored 8 images" in out and "3 files rejected" in out
    workers = set(re.findall(r"images scored by worker process (\d+)", out))
    assert workers and str(os.getpid()) not in workers
    rows = _lines(output)
    assert len(rows) == 8 and all(len(r["predictions"]) == 1 for r in rows)


@pytest.mark.parametrize("problem, expected", [
    ("missing folder", "does not exist or is not a folder"),
    ("no model", "no model in"),
    ("output not writable", "cannot write beside --output"),
    ("output is a folder", "is a folder: pass a file name"),
    ("output inside the folder", "is inside the folder being scored"),
    ("no --output", "needs --output"),
    ("--output without --bulk", "go with --bulk"),
])
def test_clear_errors(problem, expected, tiny_base_dir, folder, tmp_path, capsys):
    model, inputs, output = tiny_base_dir, folder, str(tmp_path / "p.jsonl")
    flags = ["--bulk"]
    if problem == "missing folder":
        inputs = str(tmp_path / "nowhere")
    elif problem == "no model":
        model = str(tmp_path)
    elif problem == "output not writable":
        # A file where the output's folder should be: tests may run as root, whom file
        # permissions do not stop.
        (tmp_path / "a_file").write_text("")
        output = str(tmp_path / "a_file" / "p.jsonl")
    elif problem == "output is a folder":
        output = str(tmp_path)
    elif problem == "output inside the folder":
        output = os.path.join(folder, "photos", "p.jsonl")
    elif problem == "--output without --bulk":
        flags = []
    args = ["predict", *flags, "--model", model, inputs]
    if problem != "no --output":
        args += ["--output", output]
    assert cli.main(args) == 2
    assert expected in capsys.readouterr().err
