import os

import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from components.image_folder_example_gen import executor
from components.image_folder_example_gen.component import ImageFolderExampleGen
from imagefolders import write_folder


def _read_split(examples_uri, split):
    pattern = os.path.join(examples_uri, f"Split-{split}", "*.gz")
    records = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP")
    return [tf.train.Example.FromString(r.numpy()) for r in records]


def _feature(example, key):
    return example.features.feature[key].bytes_list.value[0]


def _run_example_gen(input_base, out_dir, split_ratios=(80, 10, 10)):
    component = ImageFolderExampleGen(input_base=input_base, split_ratios=split_ratios)
    examples = standard_artifacts.Examples()
    examples.uri = str(out_dir)
    executor.Executor().Do({}, {"examples": [examples]}, component.exec_properties)
    return {split: _read_split(examples.uri, split) for split in ("train", "eval", "test")}


def test_writes_every_image_once_with_label_and_path(tmp_path, mixed_format_folder):
    splits = _run_example_gen(mixed_format_folder, tmp_path / "out")
    everything = [e for examples in splits.values() for e in examples]
    paths = sorted(_feature(e, "path").decode() for e in everything)
    assert paths == sorted(f"{c}/x{ext}" for c in ("3", "7")
                           for ext in (".jpg", ".png", ".gif", ".bmp", ".PNG"))
    for e in everything:
        path = _feature(e, "path").decode()
        assert _feature(e, "label").decode() == path.split("/")[0]
        with open(os.path.join(mixed_format_folder, path), "rb") as f:
            assert _feature(e, "image") == f.read()


def test_split_is_deterministic_by_path_and_follows_the_ratios(tmp_path):
    root = write_folder(tmp_path / "images", classes=(0, 1, 2, 3), per_class=40)
    first = _run_example_gen(root, tmp_path / "a")
    second = _run_example_gen(root, tmp_path / "b")
    assignment = {split: sorted(_feature(e, "path") for e in examples)
                  for split, examples in first.items()}
    assert assignment == {split: sorted(_feature(e, "path") for e in examples)
                          for split, examples in second.items()}
    sizes = {split: len(paths) for split, paths in assignment.items()}
    assert sum(sizes.values()) == 160
    assert 100 <= sizes["train"] <= 150 and sizes["eval"] > 0 and sizes["test"] > 0


def test_undecodable_file_is_skipped_not_written(tmp_path):
    root = write_folder(tmp_path / "images", per_class=3)
    with open(os.path.join(root, "0", "broken.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not really a png")
    splits = _run_example_gen(root, tmp_path / "out")
    paths = {_feature(e, "path").decode() for examples in splits.values() for e in examples}
    assert len(paths) == 6 and "0/broken.png" not in paths


def test_decode_check_names_the_problem():
    assert executor.decode_check(b"") == "empty file"
    assert executor.decode_check(b"hello").startswith("cannot decode image")


def test_missing_or_empty_root_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        executor.list_images(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="no images found"):
        executor.list_images(str(tmp_path))
