import builtins
import csv
import dataclasses
import json
import os
import threading

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx.types import standard_artifacts
from tfx.utils import dependency_utils

from tfx_finetune.components import digest, image_example_gen
from tfx_finetune.components.digest import directory_digest
from tfx_finetune.components.image_example_gen import (
    driver, errors, executor, listing, split as splitting, summary as report, to_example)
from tfx_finetune.components.image_example_gen.component import ImageExampleGen
from tfx_finetune.pipeline import local_runner
from tfx_finetune.pipeline.config import PipelineConfig
from imagefolders import digit_images, write_folder


def _read_split(examples_uri, split):
    pattern = os.path.join(examples_uri, f"Split-{split}", "*.gz")
    records = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP")
    return [tf.train.Example.FromString(r.numpy()) for r in records]


def _feature(example, key):
    return example.features.feature[key].bytes_list.value[0]


def _options(**overrides):
    """The config's ingestion options with `overrides`; one image per class suffices."""
    overrides.setdefault("min_images_per_class", 1)
    overrides["label_names"] = tuple(overrides.get("label_names", ()))
    return dataclasses.replace(PipelineConfig().ingestion_options(), **overrides)


def _component(input_path, split_ratios=PipelineConfig.split_ratios, **options):
    return ImageExampleGen(input_path=str(input_path), split_ratios=split_ratios,
                           options=_options(**options))


def _run(input_path, out_dir, split_ratios=PipelineConfig.split_ratios,
         beam_pipeline_args=None, **options):
    component = _component(input_path, split_ratios, **options)
    examples = standard_artifacts.Examples()
    examples.uri = str(out_dir)
    context = executor.Executor.Context(beam_pipeline_args=beam_pipeline_args)
    executor.Executor(context).Do({}, {"examples": [examples]}, component.exec_properties)
    return examples


def _paths(examples):
    return sorted(_feature(e, "path").decode() for split in ("train", "eval", "test")
                  for e in _read_split(examples.uri, split))


def _rejects(examples):
    path = os.path.join(examples.uri, image_example_gen.REPORT_DIR, report.REJECTS_FILE)
    with open(path) as f:
        return {r["path"]: r for r in map(json.loads, f)}


def test_writes_every_image_once_with_label_and_path(tmp_path, mixed_format_folder):
    examples = _run(mixed_format_folder, tmp_path / "out")
    everything = [e for s in ("train", "eval", "test") for e in _read_split(examples.uri, s)]
    assert _paths(examples) == sorted(f"{c}/x{ext}" for c in ("3", "7")
                                      for ext in (".jpg", ".png", ".gif", ".bmp", ".PNG"))
    for e in everything:
        path = _feature(e, "path").decode()
        assert _feature(e, "label").decode() == path.split("/")[0]
        with open(os.path.join(mixed_format_folder, path), "rb") as f:
            assert _feature(e, "image") == f.read()
    summary = json.load(open(os.path.join(examples.uri, "ingestion", "summary.json")))
    assert summary["per_class"] == {"3": 5, "7": 5} and summary["rejected"] == 0


@pytest.mark.slow
def test_split_is_deterministic_stable_under_additions_and_follows_the_ratios(tmp_path):
    root = write_folder(tmp_path / "images", classes=(0, 1, 2, 3), per_class=40)
    first = _run(root, tmp_path / "a")
    assignment = {s: sorted(_feature(e, "path") for e in _read_split(first.uri, s))
                  for s in ("train", "eval", "test")}
    write_folder(tmp_path / "images", classes=(4,), per_class=10)  # new images arrive
    second = _run(root, tmp_path / "b")
    for split, paths in assignment.items():
        now = {_feature(e, "path") for e in _read_split(second.uri, split)}
        assert set(paths) <= now, f"an image moved out of {split}"
    sizes = {split: len(paths) for split, paths in assignment.items()}
    assert sum(sizes.values()) == 160
    assert 100 <= sizes["train"] <= 150 and sizes["eval"] > 0 and sizes["test"] > 0
    custom = _run(root, tmp_path / "c", split_ratios=(50, 25, 25))
    assert len(_read_split(custom.uri, "train")) < sizes["train"]


def _tfx_split(key, buckets=(80, 90, 100)):
    """The split index TFX's own ExampleGen gives an example whose `path` is `key`."""
    from tfx.components.example_gen.base_example_gen_executor import _PartitionFn
    from tfx.proto import example_gen_pb2

    example = tf.train.Example()
    example.features.feature["path"].bytes_list.value.append(key.encode())
    return _PartitionFn(example, len(buckets), list(buckets),
                        example_gen_pb2.SplitConfig(partition_feature_name="path"))


def test_split_by_hash_is_tfx_own_so_earlier_splits_do_not_move():
    keys = [f"{c}/{i:03d}.png" for c in ("a", "b", "ünï") for i in range(200)]
    assert [splitting.hash_split(k, [80, 90, 100]) for k in keys] == [_tfx_split(k) for k in keys]


def test_a_class_whose_images_all_hash_outside_train_keeps_its_smallest_hash_in_train(tmp_path):
    """Transform's vocabulary comes from train only: a class absent there would get label -1."""
    root = write_folder(tmp_path / "images", classes=(0, 1), per_class=20)
    names = [n for n in (f"r{i:03d}.png" for i in range(200))
             if _tfx_split(f"rare/{n}") != 0][:6]
    os.makedirs(os.path.join(root, "rare"))
    for name in names:
        _good_png(os.path.join(root, "rare", name))
    examples = _run(root, tmp_path / "out")
    split_of = {_feature(e, "path").decode(): split for split in ("train", "eval", "test")
                for e in _read_split(examples.uri, split)}
    anchor = min((f"rare/{n}" for n in names), key=splitting.split_hash)
    assert split_of[anchor] == "train"
    names_of = ("train", "eval", "test")
    for key, split in split_of.items():
        if key != anchor:  # every other image keeps TFX's hash split
            assert split == names_of[_tfx_split(key)], key
    summary = json.load(open(os.path.join(examples.uri, "ingestion", "summary.json")))
    assert summary["per_split"]["train"]["rare"] == 1


def _good_png(path, mode="L"):
    image = digit_images((5,), 1)["5"][0]
    Image.fromarray(image, mode="L").convert(mode).save(path, format="PNG")


@pytest.fixture
def messy_folder(tmp_path):
    """A real folder of 40 good images plus every kind of bad input."""
    root = tmp_path / "messy"
    write_folder(root, classes=(0, 1), per_class=20)
    good = open(root / "0" / "000.png", "rb").read()
    (root / "0" / "truncated.jpg").write_bytes(_jpeg_bytes()[:300])
    (root / "0" / "empty.png").write_bytes(b"")
    (root / "0" / "notes.jpg").write_text("these are not pixels")
    (root / "0" / "really_png.jpg").write_bytes(good)
    _good_png(root / "1" / "rgba.png", "RGBA")
    _good_png(root / "1" / "palette.png", "P")
    Image.fromarray((np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)).save(
        root / "1" / "sixteen_bit.png")
    (root / "1" / "readme.txt").write_text("hello")
    (root / "1" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "1" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    os.mkfifo(root / "0" / "pipe.png")  # opening it would block
    outside = tmp_path / "secret.png"
    outside.write_bytes(good)
    os.symlink(outside, root / "1" / "link_out.png")
    os.symlink(tmp_path, root / "escape")
    Image.new("L", (3000, 3000)).save(root / "1" / "huge.png")
    return root


def _jpeg_bytes():
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.slow
def test_bad_inputs_are_listed_with_reasons_and_good_ones_normalised(tmp_path, messy_folder,
                                                                     monkeypatch):
    opened = []
    real_gfile, real_stat = tf.io.gfile.GFile, tf.io.gfile.stat

    def spying_open(path, *args, **kwargs):
        opened.append(os.path.realpath(path))
        return builtins.open(path, *args, **kwargs)

    def spying_gfile(path, *args, **kwargs):
        opened.append(os.path.realpath(path))
        return real_gfile(path, *args, **kwargs)

    def spying_stat(path):
        opened.append(os.path.realpath(path))
        return real_stat(path)

    monkeypatch.setattr(to_example, "open", spying_open, raising=False)  # shadows the builtin
    monkeypatch.setattr(tf.io.gfile, "GFile", spying_gfile)
    monkeypatch.setattr(tf.io.gfile, "stat", spying_stat)
    examples = _run(messy_folder, tmp_path / "out", max_image_pixels=1_000_000,
                    max_reject_fraction=0.5)
    monkeypatch.undo()
    assert os.path.realpath(messy_folder / "1" / "rgba.png") in opened  # the spy sees reads
    rejects = _rejects(examples)
    expect = {
        "0/truncated.jpg": ("rejected", "cannot decode image"),
        "0/empty.png": ("rejected", "empty file"),
        "0/notes.jpg": ("rejected", "cannot decode image"),
        "1/huge.png": ("rejected", "above max_image_pixels"),
        "1/link_out.png": ("rejected", "outside the input root"),
        "0/pipe.png": ("rejected", "not a regular file"),
        "escape/": ("rejected", "outside the input root"),
        "1/readme.txt": ("skipped", "unknown extension '.txt'"),
        "1/.DS_Store": ("skipped", "hidden file or OS junk"),
        "1/Thumbs.db": ("skipped", "hidden file or OS junk"),
    }
    assert set(rejects) == set(expect)
    for path, (kind, reason) in expect.items():
        assert rejects[path]["kind"] == kind and reason in rejects[path]["reason"], rejects[path]
    accepted = _paths(examples)
    for name in ("0/really_png.jpg", "1/rgba.png", "1/palette.png", "1/sixteen_bit.png"):
        assert name in accepted
    assert len(accepted) == 44
    assert str(tmp_path / "secret.png") not in opened  # never opened outside the root
    assert examples.get_int_custom_property("rejected_count") == 7


def test_fingerprint_hashes_names_of_special_files_without_opening_them(messy_folder):
    digests = []
    worker = threading.Thread(target=lambda: digests.append(directory_digest(str(messy_folder))),
                              daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert len(digests) == 1, "the fingerprint blocked on the FIFO"
    os.remove(messy_folder / "0" / "pipe.png")
    assert directory_digest(str(messy_folder)) != digests[0]


def test_fingerprint_read_ahead_opens_only_regular_files_and_keeps_the_digest(messy_folder,
                                                                              monkeypatch):
    advised = []
    real_open = os.open

    def spying_open(path, flags, *args, **kwargs):
        advised.append(os.path.relpath(path, messy_folder))
        return real_open(path, flags, *args, **kwargs)

    class InlinePool:
        """Runs each read-ahead task at once: the real threads stop when the digest is done,
        so under load they may not reach every file before it finishes."""

        def __init__(self, *args, **kwargs):
            pass

        def submit(self, fn, *args):
            fn(*args)

        def shutdown(self, **kwargs):
            pass

    monkeypatch.setattr(digest, "ThreadPoolExecutor", InlinePool)
    monkeypatch.setattr(os, "open", spying_open)
    with_read_ahead = directory_digest(str(messy_folder))
    monkeypatch.undo()
    expected = sorted(os.path.join(folder, name) for folder in ("0", "1")
                      for name in os.listdir(messy_folder / folder)
                      if name not in ("pipe.png", "link_out.png"))
    assert sorted(advised) == expected  # no FIFO, no link, nothing under the linked folder
    monkeypatch.delattr(os, "posix_fadvise")  # as on macOS: no read-ahead
    assert directory_digest(str(messy_folder)) == with_read_ahead


@pytest.mark.slow
def test_a_listing_of_several_shards_ingests_every_image_once(tmp_path, monkeypatch):
    monkeypatch.setattr(listing, "LISTING_SHARD_SIZE", 3)
    root = write_folder(tmp_path / "images", classes=(0, 1), per_class=5)
    examples = _run(root, tmp_path / "out")
    listing_dir = os.path.join(examples.uri, image_example_gen.REPORT_DIR, listing.LISTING_DIR)
    shards = sorted(os.listdir(listing_dir))
    assert shards == [f"shard-{i:05d}.json" for i in range(4)]
    listed = [e.key for shard in shards
              for e in listing.read_listing(os.path.join(listing_dir, shard))]
    expected = sorted(f"{c}/{i:03d}.png" for c in (0, 1) for i in range(5))
    assert sorted(listed) == expected
    assert _paths(examples) == expected


def _label_runs(labels):
    return 1 + sum(a != b for a, b in zip(labels, labels[1:]))


@pytest.mark.slow
def test_examples_are_written_in_a_fixed_order_that_mixes_the_classes(tmp_path):
    """A class-sorted folder must not reach the Trainer class by class: its shuffle buffer
    (10,000) is smaller than many datasets."""
    root = write_folder(tmp_path / "images", classes=(0, 1, 2, 3), per_class=40)
    first, second = _run(root, tmp_path / "a"), _run(root, tmp_path / "b")
    for split in ("train", "eval", "test"):
        order = [_feature(e, "path").decode() for e in _read_split(first.uri, split)]
        assert order == [_feature(e, "path").decode() for e in _read_split(second.uri, split)]
        assert order != sorted(order)
    labels = [_feature(e, "label") for e in _read_split(first.uri, "train")]
    assert _label_runs(labels) > len(labels) // 2  # class-sorted: 4 runs


@pytest.mark.slow
def test_two_beam_worker_processes_write_the_same_examples_and_rejects(tmp_path, messy_folder,
                                                                       monkeypatch):
    monkeypatch.setattr(listing, "LISTING_SHARD_SIZE", 5)  # 10 shards (48 listed files)
    options = dict(max_image_pixels=1_000_000, max_reject_fraction=0.5)
    in_process = _run(messy_folder, tmp_path / "in_process", **options)

    def no_packaging():
        raise AssertionError("TFX packaged itself for local Beam workers")

    monkeypatch.setattr(dependency_utils, "build_ephemeral_package", no_packaging)
    workers = _run(messy_folder, tmp_path / "workers",
                   beam_pipeline_args=local_runner.beam_worker_args(2), **options)
    for split in ("train", "eval", "test"):
        assert sorted(e.SerializeToString(deterministic=True)
                      for e in _read_split(workers.uri, split)) == \
            sorted(e.SerializeToString(deterministic=True)
                   for e in _read_split(in_process.uri, split))
    assert _rejects(workers) == _rejects(in_process)
    assert len(_paths(workers)) == 44


def test_reject_fraction_above_the_threshold_fails_with_a_summary(tmp_path, messy_folder):
    with pytest.raises(errors.IngestionError, match=r"(?s)7 of 51 images rejected.*truncated"):
        _run(messy_folder, tmp_path / "out", max_image_pixels=1_000_000)


def test_oversized_file_is_refused_without_reading(tmp_path):
    root = write_folder(tmp_path / "images", classes=(0,), per_class=30)
    (root_path := tmp_path / "images" / "0" / "big.png").write_bytes(b"\x89PNG" + b"\0" * 5000)
    examples = _run(root, tmp_path / "out", max_image_bytes=4000, max_reject_fraction=0.1)
    assert "above max_image_bytes=4000" in _rejects(examples)["0/big.png"]["reason"]
    assert root_path.exists()


@pytest.mark.parametrize("name, problem", [("  ", "empty after trimming"),
                                           ("bad\x07name", "control characters"),
                                           ("a\\b", "path separator")])
def test_invalid_class_folder_names_are_refused(tmp_path, name, problem):
    root = write_folder(tmp_path / "images", classes=(0,), per_class=2)
    os.makedirs(os.path.join(root, name))
    _good_png(os.path.join(root, name, "a.png"))
    with pytest.raises(errors.IngestionError, match=problem):
        listing.list_folder(root)


def test_too_few_images_in_a_class_fails_naming_it(tmp_path):
    root = write_folder(tmp_path / "images", classes=(0, 1), per_class=6)
    for name in os.listdir(os.path.join(root, "1"))[:4]:
        os.remove(os.path.join(root, "1", name))
    with pytest.raises(errors.IngestionError, match=r"'1' \(2\)"):
        _run(root, tmp_path / "out", min_images_per_class=5)


def test_missing_or_empty_root_is_a_clear_error(tmp_path):
    with pytest.raises(errors.IngestionError, match="does not exist"):
        listing.list_folder(str(tmp_path / "nope"))
    with pytest.raises(errors.IngestionError, match="no images found"):
        listing.list_folder(str(tmp_path))


@pytest.mark.slow
def test_csv_manifest_and_tfrecords_end_in_the_same_layout(tmp_path):
    root = write_folder(tmp_path / "images", classes=(0, 1), per_class=5)
    folder = _run(root, tmp_path / "folder")
    manifest = tmp_path / "images" / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for label in ("0", "1"):
            for name in sorted(os.listdir(os.path.join(root, label))):
                writer.writerow([f"{label}/{name}", label])
        writer.writerow(["../../etc/passwd.png", "0"])
    from_csv = _run(manifest, tmp_path / "csv", input_format="csv", max_reject_fraction=0.2)
    assert _paths(from_csv) == _paths(folder)
    assert "outside the input root" in _rejects(from_csv)["../../etc/passwd.png"]["reason"]

    records_dir = tmp_path / "records"
    records_dir.mkdir()
    with tf.io.TFRecordWriter(str(records_dir / "data.tfrecord")) as writer:
        for e in (e for s in ("train", "eval", "test") for e in _read_split(folder.uri, s)):
            renamed = tf.train.Example()
            renamed.features.feature["jpeg"].CopyFrom(e.features.feature["image"])
            renamed.features.feature["class"].int64_list.value.append(
                int(_feature(e, "label")))
            renamed.features.feature["path"].CopyFrom(e.features.feature["path"])
            writer.write(renamed.SerializeToString())
    from_records = _run(records_dir, tmp_path / "rec", input_format="tfrecord",
                        image_feature="jpeg", label_feature="class")
    assert _paths(from_records) == _paths(folder)
    for split in ("train", "eval", "test"):
        assert sorted(e.SerializeToString(deterministic=True)
                      for e in _read_split(from_records.uri, split)) == \
            sorted(e.SerializeToString(deterministic=True) for e in _read_split(folder.uri, split))


def _int_label_records(records_dir, folder_examples, label_of=int):
    """The folder's examples rewritten as TFRecords with int64 `label` indices."""
    records_dir.mkdir()
    with tf.io.TFRecordWriter(str(records_dir / "data.tfrecord")) as writer:
        for e in (e for s in ("train", "eval", "test") for e in _read_split(folder_examples, s)):
            record = tf.train.Example()
            record.features.feature["image"].CopyFrom(e.features.feature["image"])
            record.features.feature["path"].CopyFrom(e.features.feature["path"])
            record.features.feature["label"].int64_list.value.append(
                label_of(_feature(e, "label").decode()))
            writer.write(record.SerializeToString())
    return records_dir


@pytest.mark.slow
def test_label_names_turn_integer_labels_into_class_names(tmp_path):
    root = write_folder(tmp_path / "images", classes=(0, 1, 2), per_class=3)
    folder = _run(root, tmp_path / "folder")
    records = _int_label_records(tmp_path / "records", folder.uri)
    named = _run(records, tmp_path / "named", input_format="tfrecord",
                 label_names=["airplane", "bird", "cat", "unused"])
    labels = {_feature(e, "path").decode(): _feature(e, "label").decode()
              for split in ("train", "eval", "test") for e in _read_split(named.uri, split)}
    assert labels == {f"{c}/{i:03d}.png": ("airplane", "bird", "cat")[c]
                      for c in range(3) for i in range(3)}
    summary = json.load(open(os.path.join(named.uri, "ingestion", "summary.json")))
    assert summary["per_class"] == {"airplane": 3, "bird": 3, "cat": 3}
    assert summary["rejected"] == summary["skipped"] == 0

    manifest = tmp_path / "images" / "manifest.csv"
    manifest.write_text("path,label\n" + "".join(
        f"{c}/{i:03d}.png,{c}\n" for c in range(3) for i in range(3)))
    from_csv = _run(manifest, tmp_path / "csv", input_format="csv",
                    label_names=["airplane", "bird", "cat"])
    assert {_feature(e, "path").decode(): _feature(e, "label").decode()
            for split in ("train", "eval", "test")
            for e in _read_split(from_csv.uri, split)} == labels


@pytest.mark.slow
def test_a_label_without_a_name_stops_ingestion_naming_it(tmp_path):
    root = write_folder(tmp_path / "images", classes=(0, 1, 2), per_class=3)
    folder = _run(root, tmp_path / "folder")
    records = _int_label_records(tmp_path / "records", folder.uri,
                                 label_of=lambda label: {"2": 12}.get(label, int(label)))
    with pytest.raises(errors.IngestionError,
                       match=r"label\(s\) 12 have no name in label_names_file, which names 2 "
                             r"labels \(0 to 1"):
        _run(records, tmp_path / "named", input_format="tfrecord", label_names=["a", "b"])


def test_content_fingerprint_changes_when_content_changes_with_size_and_mtime_kept(tmp_path):
    root = write_folder(tmp_path / "images", classes=(0,), per_class=3)
    target = os.path.join(root, "0", "000.png")
    stat = os.stat(target)
    component = _component(root)

    def fingerprint():
        properties = dict(component.exec_properties)
        return driver.ContentFingerprintDriver(None).resolve_exec_properties(
            properties, None, None)["input_fingerprint"]

    before = fingerprint()
    data = bytearray(open(target, "rb").read())
    data[-20] ^= 0xFF
    with open(target, "wb") as f:
        f.write(data)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(target).st_size == stat.st_size
    assert fingerprint() != before


@pytest.mark.slow
def test_content_change_with_kept_size_and_mtime_reruns_ingestion(tmp_path):
    """Through the real LocalDagRunner, whose cache keys on the driver's fingerprint."""
    import ml_metadata as mlmd
    from tfx import v1 as tfx
    from tfx.orchestration import pipeline as tfx_pipeline

    # BMP is uncompressed: a changed pixel keeps the file valid and its size the same.
    root = write_folder(tmp_path / "images", classes=(0, 1), per_class=3, fmt="BMP", ext=".bmp")
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(tmp_path / "mlmd.sqlite"))

    def run_and_get_state():
        tfx.orchestration.LocalDagRunner().run(tfx_pipeline.Pipeline(
            pipeline_name="ingest", pipeline_root=str(tmp_path / "root"),
            components=[_component(root)],
            enable_cache=True, metadata_connection_config=connection))
        executions = mlmd.MetadataStore(connection).get_executions()
        return max(executions, key=lambda e: e.id).last_known_state

    complete, cached = mlmd.proto.Execution.COMPLETE, mlmd.proto.Execution.CACHED
    assert run_and_get_state() == complete
    assert run_and_get_state() == cached
    target = os.path.join(root, "1", "002.bmp")
    stat = os.stat(target)
    data = bytearray(open(target, "rb").read())
    data[-20] ^= 0xFF
    open(target, "wb").write(data)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(target).st_size == stat.st_size
    assert run_and_get_state() == complete


@pytest.mark.slow
def test_bucket_uris_are_read_through_tf_gfile(tmp_path):
    """TensorFlow's in-memory ram:// filesystem stands in for gs:// or s3://."""
    local = write_folder(tmp_path / "images", classes=(0, 1), per_class=4)
    root = f"ram://{tmp_path.name}/images"
    for label in ("0", "1"):
        for name in os.listdir(os.path.join(local, label)):
            tf.io.gfile.makedirs(f"{root}/{label}")
            tf.io.gfile.copy(os.path.join(local, label, name), f"{root}/{label}/{name}")
    with tf.io.gfile.GFile(f"{root}/1/broken.png", "wb") as f:
        f.write(b"\x89PNG truncated")
    with tf.io.gfile.GFile(f"{root}/1/big.png", "wb") as f:
        f.write(b"\x89PNG" + b"\0" * 5000)
    examples = _run(root, tmp_path / "out", max_reject_fraction=0.2, max_image_bytes=4000)
    assert _paths(examples) == _paths(_run(local, tmp_path / "local"))
    rejects = _rejects(examples)
    assert "cannot decode image" in rejects["1/broken.png"]["reason"]
    assert "file is 5004 bytes, above max_image_bytes=4000" in rejects["1/big.png"]["reason"]
    with tf.io.gfile.GFile(f"{root}/manifest.csv", "w") as f:
        f.write("path,label\n0/000.png,0\n../outside.png,0\n")
    entries, others = listing.list_csv(f"{root}/manifest.csv")
    assert [e.key for e in entries] == ["0/000.png"]
    assert others == [{"path": "../outside.png", "kind": "rejected",
                       "reason": "resolves outside the input root (not opened)"}]
