import os
import shutil

import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import standard_artifacts

from tfx_finetune.components import published
from tfx_finetune.components.atomic_pusher import executor
from tfx_finetune.components.atomic_pusher.component import AtomicPusher
from tfx_finetune.components.properties import NEW_VERSION_KEY


def _save_model(path, scale):
    module = tf.Module()
    module.scale = tf.Variable(float(scale))
    module.serve = tf.function(lambda x: {"y": x * module.scale},
                               input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return [_save_model(root / f"m{i}", i + 1) for i in range(3)]


def _numeric(base):
    return sorted(n for n in os.listdir(base) if n.isdigit()) if os.path.isdir(base) else []


def test_publishes_a_complete_loadable_version_once(tmp_path, models):
    base = str(tmp_path / "serving" / "m")
    first = executor.publish(models[0], base)
    assert first.new and _numeric(base) == [str(first.version)]
    assert tf.saved_model.load(first.path).signatures["serving_default"]
    again = executor.publish(models[0], base)
    assert not again.new and again.version == first.version
    assert _numeric(base) == [str(first.version)]
    assert not [n for n in os.listdir(base) if not n.isdigit()]  # no staging left behind


def test_versions_strictly_increase_within_one_second(tmp_path, models, monkeypatch):
    monkeypatch.setattr(published.time, "time", lambda: 1_700_000_000.5)
    base = str(tmp_path / "m")
    versions = [executor.publish(m, base).version for m in models]
    assert versions == [1_700_000_000, 1_700_000_001, 1_700_000_002]


def test_interrupted_copy_leaves_no_numeric_directory(tmp_path, models, monkeypatch):
    base = str(tmp_path / "m")

    def copy_half_then_die(src, dst, **kwargs):
        os.makedirs(dst)
        shutil.copy(os.path.join(src, "saved_model.pb"), dst)
        raise KeyboardInterrupt("killed mid-copy")

    monkeypatch.setattr(published.io_utils, "copy_dir", copy_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        executor.publish(models[0], base)
    assert _numeric(base) == []


def test_model_that_does_not_load_is_not_published(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a saved model")
    base = str(tmp_path / "m")
    with pytest.raises(ValueError, match=f"{broken} does not load as a SavedModel"):
        executor.publish(str(broken), base)
    assert _numeric(base) == [] and os.listdir(base) == []


def test_model_without_serving_default_is_not_published(tmp_path):
    module = tf.Module()
    module.other = tf.function(lambda x: {"y": x}, input_signature=[tf.TensorSpec([None])])
    tf.saved_model.save(module, str(tmp_path / "no_default"), signatures={"other": module.other})
    base = str(tmp_path / "m")
    with pytest.raises(ValueError, match="no serving_default signature; TF Serving needs one"):
        executor.publish(str(tmp_path / "no_default"), base)
    assert os.listdir(base) == []


def test_retention_keeps_the_newest_versions(tmp_path, models):
    base = str(tmp_path / "m")
    versions = [executor.publish(m, base, keep_versions=2).version for m in models]
    assert _numeric(base) == [str(v) for v in versions[1:]]


def _run_executor(tmp_path, model_dir, blessed):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    shutil.copytree(model_dir, os.path.join(model.uri, "Format-Serving"))
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", int(blessed))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    base = str(tmp_path / "serving" / "m")
    component = AtomicPusher(
        model=tfx.dsl.Channel(type=standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=standard_artifacts.ModelBlessing),
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=base)),
        custom_config={"keep_versions": 0})
    executor.Executor().Do({"model": [model], "model_blessing": [blessing]},
                           {"pushed_model": [pushed]}, component.exec_properties)
    return base, pushed


def test_not_blessed_pushes_nothing_and_leaves_serving_untouched(tmp_path, models):
    base, pushed = _run_executor(tmp_path, models[0], blessed=False)
    assert not os.path.exists(base)
    assert pushed.get_int_custom_property("pushed") == 0


def test_blessed_model_is_published_and_recorded(tmp_path, models):
    base, pushed = _run_executor(tmp_path, models[1], blessed=True)
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_int_custom_property(NEW_VERSION_KEY) == 1
    assert pushed.get_string_custom_property("pushed_destination") == \
        os.path.join(base, _numeric(base)[0])


def test_publishes_to_a_bucket_uri(tmp_path, models):
    """TensorFlow's in-memory ram:// filesystem stands in for gs:// or s3://."""
    base = f"ram://{tmp_path.name}/serving/m"
    first = executor.publish(models[0], base)
    assert first.new and tf.io.gfile.exists(os.path.join(first.path, "saved_model.pb"))
    assert tf.saved_model.load(first.path).signatures["serving_default"]
    assert not executor.publish(models[0], base).new
    second = executor.publish(models[1], base, keep_versions=1)
    assert second.new and published.versions(base) == [second.version]
    assert [n.rstrip("/") for n in tf.io.gfile.listdir(base)] == [str(second.version)]
