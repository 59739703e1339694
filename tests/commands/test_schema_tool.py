"""`finetune infer-schema` on real TFDV statistics of a handful of ExampleGen-shaped records."""
import io
import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from PIL import Image
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import schema_utils

from tfx_finetune.commands import cli, schema_tool
from tfx_finetune.components import features
from tfx_finetune.components.label_counts import statistics_path
from tfx_finetune.pipeline.pipeline import statistics_options
from tfx_finetune.reports import run_summary

CURATED = os.path.join(os.path.dirname(__file__), "..", "..", "schemas",
                       "image_classification.pbtxt")
KEYS = (features.IMAGE_KEY, features.LABEL_KEY, features.PATH_KEY)


def _png(value):
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _statistics(tmp_path, labels, without_path=()):
    """A StatisticsGen-like artifact URI: the train split's statistics, computed by TFDV with
    the pipeline's options from one example per label (examples in `without_path` lack the
    path feature)."""
    records = str(tmp_path / "train.tfrecord")
    with tf.io.TFRecordWriter(records) as writer:
        for i, label in enumerate(labels):
            values = {features.IMAGE_KEY: _png(40 * i), features.LABEL_KEY: label.encode(),
                      features.PATH_KEY: f"{label}/{i}.png".encode()}
            if i in without_path:
                del values[features.PATH_KEY]
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
                for key, value in values.items()})).SerializeToString())
    stats = tfdv.generate_statistics_from_tfrecord(records, stats_options=statistics_options())
    uri = str(tmp_path / "statistics")
    os.makedirs(os.path.dirname(statistics_path(uri, "train")))
    with open(statistics_path(uri, "train"), "wb") as f:
        f.write(stats.SerializeToString())
    return uri


def _features(text):
    schema = text_format.Parse(text, schema_pb2.Schema())  # the header is comments
    return {f.name: f for f in schema.feature}, schema


def _latest_run_has(monkeypatch, statistics_uri):
    """The latest run's summary, as `command` reads it from ML Metadata."""
    monkeypatch.setattr(run_summary, "summarize", lambda config: run_summary.RunSummary(
        run_id="run", components=[], statistics_uri=statistics_uri))


def test_infer_schema_writes_the_curated_schema_plus_the_label_domain(tmp_path, monkeypatch,
                                                                     capsys):
    uri = _statistics(tmp_path, ["3", "7", "7", "3", "7"])
    # Numeric-looking class names: TFDV alone would give the label an int domain.
    inferred = tfdv.infer_schema(tfdv.load_stats_binary(statistics_path(uri, "train")))
    assert tfdv.get_feature(inferred, features.LABEL_KEY).HasField("int_domain")
    _latest_run_has(monkeypatch, uri)
    output = tmp_path / "schema.pbtxt"

    assert cli.main(["infer-schema", "--workspace", str(tmp_path / "ws"),
                     "--output", str(output)]) == 0

    text = output.read_text()
    assert text.startswith("# proto-file: tensorflow_metadata/proto/v0/schema.proto\n"
                           "# proto-message: Schema\n")
    assert f"from {statistics_path(uri, 'train')}." in text
    written, schema = _features(text)
    assert sorted(written) == sorted(KEYS)
    curated, _ = _features(open(CURATED).read())
    for key in (features.IMAGE_KEY, features.PATH_KEY):
        assert written[key] == curated[key], key  # required, one value, no domain
    label = schema_pb2.Feature()
    label.CopyFrom(curated[features.LABEL_KEY])
    label.string_domain.name = features.LABEL_KEY
    label.string_domain.value.extend(["3", "7"])
    assert written[features.LABEL_KEY] == label
    # TFDV lists every path and label in global domains on small data: none is kept.
    assert tfdv.infer_schema(tfdv.load_stats_binary(statistics_path(uri, "train"))).string_domain
    assert not schema.string_domain
    # What the Transform and the Trainer parse the raw examples with.
    assert schema_utils.schema_as_feature_spec(schema).feature_spec == {
        key: tf.io.FixedLenFeature([1], tf.string) for key in KEYS}
    assert f"wrote {output}; review it" in capsys.readouterr().out


def test_a_feature_missing_from_some_examples_is_still_required_once(tmp_path):
    """TFDV gives such a feature a value count and no shape; the pipeline parses it as [1]."""
    uri = _statistics(tmp_path, ["cat", "dog", "dog"], without_path={0})
    inferred = tfdv.infer_schema(tfdv.load_stats_binary(statistics_path(uri, "train")))
    assert not tfdv.get_feature(inferred, features.PATH_KEY).HasField("shape")

    written, _ = _features(schema_tool.infer_schema_text(uri))

    path = written[features.PATH_KEY]
    assert not path.HasField("value_count") and path.presence.min_fraction == 1.0
    assert [d.size for d in path.shape.dim] == [1]
    assert list(written[features.LABEL_KEY].string_domain.value) == ["cat", "dog"]


def test_without_statistics_nothing_is_written_and_the_user_is_told_to_run(tmp_path,
                                                                        monkeypatch, capsys):
    empty = str(tmp_path / "statistics")
    with pytest.raises(FileNotFoundError, match=(
            "no train statistics at .*Split-train/FeatureStats.pb: run the pipeline first")):
        schema_tool.infer_schema_text(empty)
    output = tmp_path / "schema.pbtxt"
    for uri, says in ((None, "the latest run in .* has no statistics"),
                      (empty, "no train statistics at")):
        _latest_run_has(monkeypatch, uri)
        assert cli.main(["infer-schema", "--workspace", str(tmp_path / "ws"),
                         "--output", str(output)]) == 2
        error = capsys.readouterr().err
        assert error.startswith("finetune: ") and re.search(says, error), error
        assert not output.exists()
