"""Cross-run state in the workspace: what the Evaluator and the DataGate compare with."""
import json
import os
import re
import shutil

import pytest

from tfx_finetune.components import published


def _folder(path, files):
    for name, content in files.items():
        os.makedirs(os.path.dirname(os.path.join(path, name)) or path, exist_ok=True)
        with open(os.path.join(path, name), "w") as f:
            f.write(content)
    return str(path)


def _version(base, version, files):
    return _folder(os.path.join(base, str(version)), files)


def test_baseline_is_the_newest_served_version_other_than_the_candidate(tmp_path):
    base = str(tmp_path / "serving")
    old = _version(base, 10, {"saved_model.pb": "old"})
    new = _version(base, 20, {"saved_model.pb": "new"})
    _version(base, 30, {"variables/v": "no saved_model.pb: not a complete version"})
    other = _folder(tmp_path / "other", {"saved_model.pb": "other"})
    same_as_new = _folder(tmp_path / "same", {"saved_model.pb": "new"})
    assert published.baseline_model(base, other) == new
    # An unchanged re-run: its model is the one now serving, so it gets what the first got.
    assert published.baseline_model(base, same_as_new) == old


def test_no_baseline_on_a_first_run(tmp_path, caplog):
    candidate = _folder(tmp_path / "m", {"saved_model.pb": "m"})
    caplog.set_level("INFO", logger="absl")
    assert published.baseline_model(str(tmp_path / "missing"), candidate) is None
    assert "baseline model: nothing earlier to compare with" in caplog.text
    only = _version(str(tmp_path / "serving"), 1, {"saved_model.pb": "m"})
    assert published.baseline_model(os.path.dirname(only), candidate) is None


def test_accepted_statistics_are_published_once_per_content(tmp_path):
    store = str(tmp_path / "accepted")
    stats = _folder(tmp_path / "stats", {"Split-train/FeatureStats.pb": "a"})
    first = published.accept_statistics(stats, store, {"run": 1})
    assert first.new and os.path.isfile(os.path.join(first.path, "Split-train",
                                                     "FeatureStats.pb"))
    with open(os.path.join(first.path, published.ACCEPTED_FILE)) as f:
        assert json.load(f)["run"] == 1
    again = published.accept_statistics(stats, store, {"run": 2})
    assert not again.new and again.path == first.path
    changed = _folder(tmp_path / "stats2", {"Split-train/FeatureStats.pb": "b"})
    second = published.accept_statistics(changed, store, {})
    assert second.new and second.version > first.version
    # What the next run compares with: the newest other than its own statistics.
    assert published.previous_statistics(store, changed) == first.path
    assert published.previous_statistics(store, stats) == second.path
    new = _folder(tmp_path / "stats3", {"Split-train/FeatureStats.pb": "c"})
    assert published.previous_statistics(store, new) == second.path


def test_an_interrupted_publish_leaves_no_version(tmp_path, monkeypatch):
    store = str(tmp_path / "accepted")
    stats = _folder(tmp_path / "stats", {"Split-train/FeatureStats.pb": "a"})

    def fail(copy):
        raise KeyboardInterrupt("killed before the rename")

    with pytest.raises(KeyboardInterrupt):
        published.publish_directory(stats, store, "Split-train/FeatureStats.pb", prepare=fail)
    assert os.listdir(store) == []
    assert published.previous_statistics(store, stats) is None


def test_object_store_copies_write_the_last_file_last(tmp_path, monkeypatch):
    """No atomic rename on a bucket: readers wait for the last file, so it is copied last."""
    copied = []
    real_copy = published.tf.io.gfile.copy

    def record_copy(src, dst, *args, **kwargs):
        copied.append(os.path.basename(dst))
        return real_copy(src, dst, *args, **kwargs)

    def copy_dir(src, dst, deny_regex_patterns=()):
        for name in sorted(os.listdir(src)):
            if not any(re.search(p, os.path.join(src, name))
                       for p in deny_regex_patterns):
                os.makedirs(dst, exist_ok=True)
                copied.append(name)
                shutil.copy(os.path.join(src, name), dst)

    monkeypatch.setattr(published, "is_uri", lambda path: True)
    monkeypatch.setattr(published.tf.io.gfile, "copy", record_copy)
    staging = _folder(tmp_path / "staging", {"a.txt": "a", "saved_model.pb": "m", "z.txt": "z"})
    monkeypatch.setattr(published.io_utils, "copy_dir", copy_dir)
    assert published._move_into_place(staging, str(tmp_path / "7"), "saved_model.pb")
    assert copied == ["a.txt", "z.txt", "saved_model.pb"]


def _driver_answer(driver_cls, input_dict, exec_properties):
    from tfx.orchestration.portable import data_types

    output = driver_cls(None).run(data_types.ExecutionInfo(
        input_dict=input_dict, exec_properties=exec_properties))
    return output.exec_properties[driver_cls.EXEC_PROPERTY].string_value


def test_drivers_put_what_they_found_into_the_exec_properties(tmp_path):
    from tfx.types import standard_artifacts

    from tfx_finetune.components.data_gate import driver as gate_driver, executor as gate_executor
    from tfx_finetune.components.evaluator import driver as evaluator_driver, executor as evaluator_executor

    model = standard_artifacts.Model()
    model.uri = _folder(tmp_path / "model", {"Format-Serving/saved_model.pb": "candidate"})
    base = str(tmp_path / "serving")
    properties = {evaluator_executor.BASELINE_BASE_DIRECTORY_KEY: base}
    assert _driver_answer(evaluator_driver.BaselineDriver, {"model": [model]},
                          properties) == published.NOTHING_EARLIER
    served = _version(base, 5, {"saved_model.pb": "served"})
    assert _driver_answer(evaluator_driver.BaselineDriver, {"model": [model]},
                          properties) == served
    assert _driver_answer(evaluator_driver.BaselineDriver, {"model": [model]},
                          {}) == published.NOTHING_EARLIER  # no base directory: no baseline

    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = _folder(tmp_path / "stats", {"Split-train/FeatureStats.pb": "s"})
    store = str(tmp_path / "accepted")
    properties = {gate_executor.ACCEPTED_STATISTICS_DIR_KEY: store}
    inputs = {gate_executor.STATISTICS_KEY: [statistics]}
    assert _driver_answer(gate_driver.PreviousStatisticsDriver, inputs,
                          properties) == published.NOTHING_EARLIER
    earlier = published.accept_statistics(
        _folder(tmp_path / "earlier", {"Split-train/FeatureStats.pb": "e"}), store, {})
    assert _driver_answer(gate_driver.PreviousStatisticsDriver, inputs,
                          properties) == earlier.path
