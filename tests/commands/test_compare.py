"""`finetune compare` on a tiny folder: two backbones × two unfreeze depths, for real (the
tests of the `compared` fixture, slow), and its variants and failures without a pipeline."""
import csv
import dataclasses
import os

import pytest

from imagefolders import write_folder
from tfx_finetune.commands import cli, compare
from tfx_finetune.components import model as model_lib
from tfx_finetune.components.image_example_gen.errors import IngestionError
from tfx_finetune.pipeline import local_runner
from tfx_finetune.pipeline.config import ConfigError, PipelineConfig
from tfx_finetune.pipeline.metadata_store import open_store
from tfx_finetune.reports import run_summary

BACKBONES = ("mobilenet_v3_small", "mobilenet_v2")
UPSTREAM = {"ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
            "DataGate", "Transform"}
# Where `create_pipeline(publish=False)` ends; a run's DAG goes on to the ServingCheck and
# the AtomicPusher.
COMPARE_NODES = UPSTREAM | {"Trainer", "Evaluator"}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("compare")
    data = write_folder(workspace / "data", classes=(0, 1, 2), per_class=20)
    # One weights file per backbone through the "{backbone}" placeholder; their values do not
    # matter here (the transfer benchmark measures what pretrained weights buy).
    for name in BACKBONES:
        model_lib.build_base(name, 32, "none").save_weights(
            str(workspace / f"{name}.weights.h5"))
    config = PipelineConfig(
        data_dir=data, workspace=str(workspace), model_name="tiny",
        weights=str(workspace / "{backbone}.weights.h5"), image_size=32, head_units=8,
        batch_size=16, phase1_epochs=1, phase2_epochs=1, min_accuracy=0.01)
    return config, compare.run_compare(config, BACKBONES, compare.parse_depths("0,all"))


@pytest.mark.slow  # a real pipeline run per variant (`compared`)
def test_every_variant_has_a_complete_row(compared):
    _, result = compared
    assert [(r.backbone, r.unfreeze) for r in result.rows] == [
        (b, d) for b in BACKBONES for d in ("0", "all")]
    for row in result.rows:
        assert not row.error, row.error
        assert 0 <= row.test_accuracy <= 1 and 0 <= row.phase1_val_accuracy <= 1
        assert row.phase1_trained_params > 0 and row.train_seconds > 0 and row.model_mb > 0
        if row.unfreeze == "0":  # head only: no phase 2
            assert row.phase2_trained_params is None and row.phase2_val_accuracy is None
        else:
            assert row.phase2_trained_params > row.phase1_trained_params
            assert row.phase2_val_accuracy is not None
    assert result.best in result.rows


@pytest.mark.slow  # a real pipeline run per variant (`compared`)
def test_upstream_components_are_cached_after_the_first_variant(compared):
    _, result = compared
    assert not UPSTREAM & set(result.rows[0].cached)
    for row in result.rows[1:]:
        assert UPSTREAM <= set(row.cached), (row.backbone, row.unfreeze, row.cached)
        assert "Trainer" not in row.cached


@pytest.mark.slow  # a real pipeline run per variant (`compared`)
def test_table_and_plot_are_written(compared):
    _, result = compared
    with open(os.path.join(result.out_dir, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["backbone"] for r in rows] == [b for b in BACKBONES for _ in range(2)]
    assert all(r["test_accuracy"] and r["run_id"] for r in rows)
    text = open(os.path.join(result.out_dir, "results.md")).read()
    assert f"**Best: {result.best.backbone}, unfreeze {result.best.unfreeze}**" in text
    for row in result.rows:
        # The interval is around the Evaluator's accuracy, from the variant's own answers.
        assert row.test_accuracy_low <= row.test_accuracy <= row.test_accuracy_high
        assert sum(row.test_correct) / len(row.test_correct) == pytest.approx(
            row.test_accuracy, abs=6e-4)
        assert f"{row.test_accuracy:.4f} ({row.test_accuracy_low:.3f}–" in text
    assert len({len(r.test_correct) for r in result.rows}) == 1  # the same test images
    assert "McNemar's exact test gives p = " in text
    png = os.path.join(result.out_dir, "accuracy_vs_unfreeze.png")
    assert open(png, "rb").read(4) == b"\x89PNG"


@pytest.mark.slow  # a real pipeline run per variant (`compared`)
def test_variants_are_recorded_in_ml_metadata(compared, capsys):
    config, result = compared
    recorded = compare.recorded_variants(config)
    assert [(v["backbone"], v["unfreeze"]) for v in recorded] == [
        (r.backbone, r.unfreeze) for r in result.rows]
    assert {v["run_id"] for v in recorded} == {r.run_id for r in result.rows}
    assert cli.main(["compare", "--list", "--workspace", config.workspace]) == 0
    assert capsys.readouterr().out.count("unfreeze") == 4


@pytest.mark.slow
def test_variants_are_evaluated_and_nothing_is_published(compared):
    """Every variant ran the DAG up to the Evaluator, under the compare's own pipeline name,
    blessed on the value threshold alone; no ServingCheck or Pusher ran, nothing was served."""
    config, result = compared
    store = open_store(config)
    compare_pipeline = config.pipeline_name + compare.COMPARE_SUFFIX
    assert {c.name for c in store.get_contexts_by_type("pipeline")} == {compare_pipeline}
    assert {c.name for c in store.get_contexts_by_type("node")} == {
        f"{compare_pipeline}.{node}" for node in COMPARE_NODES}
    evaluator, = [c for c in store.get_contexts_by_type("node")
                  if c.name.endswith(".Evaluator")]
    evaluations = store.get_executions_by_context(evaluator.id)
    assert len(evaluations) == len(result.rows)  # one per variant, none served from cache
    last = run_summary.summarize(dataclasses.replace(config, pipeline_name=compare_pipeline))
    assert last.run_id == result.rows[-1].run_id
    assert last.test_accuracy == result.rows[-1].test_accuracy
    assert last.blessed is not None and not last.had_baseline
    assert last.servable is None and last.pushed_to is None
    with pytest.raises(RuntimeError, match="no run of pipeline"):
        run_summary.summarize(config)  # `finetune run`'s pipeline has no run of a variant
    assert not os.path.exists(config.model_base_dir)


def test_bad_variant_lists_are_refused_before_anything_runs():
    with pytest.raises(ConfigError, match="unknown resnet9.*choose from"):
        compare.parse_backbones("mobilenet_v2,resnet9")
    with pytest.raises(ConfigError, match="'ten' is not a layer count"):
        compare.parse_depths("0,ten")
    assert compare.parse_depths("all, 0, 10, 0") == [-1, 0, 10]
    with pytest.raises(ConfigError, match="inception_v3 needs images of at least 75"):
        compare.variant_configs(PipelineConfig(image_size=32), ["inception_v3"], [0])


def test_variants_convert_no_tflite_model_and_are_not_tuned():
    """A compare publishes nothing: a TFLite conversion in its Trainers would be wasted; a
    Tuner would search the depth a variant stands for."""
    (variant,) = compare.variant_configs(PipelineConfig(tflite="int8"), ["mobilenet_v2"], [0])
    assert variant.tflite == "none" and variant.trainer_config().tflite == "none"
    (variant,) = compare.variant_configs(PipelineConfig(tuner_trials=4), ["mobilenet_v2"], [0])
    assert variant.tuner_trials == 0 and variant.unfreeze_layers == 0


def test_a_failing_variant_is_a_row_and_bad_data_stops_the_compare(tmp_path, monkeypatch):
    """Each variant goes through `run_pipeline(publish=False)` under the compare's pipeline
    name, backbone-major; one that fails (out of memory) is a row of the table and the next
    one runs; a data problem stops the compare, as it would stop a run."""
    runs = []

    def run_pipeline(config, beam_pipeline_args=None, publish=True, progress=print):
        runs.append((config.pipeline_name, config.backbone, config.unfreeze_layers, publish))
        raise MemoryError("out of memory\nallocator stats")

    monkeypatch.setattr(local_runner, "run_pipeline", run_pipeline)
    base = PipelineConfig(workspace=str(tmp_path), weights="none")
    result = compare.run_compare(base, BACKBONES, [0, -1])
    assert runs == [("tfx-finetune-compare", b, d, False) for b in BACKBONES for d in (0, -1)]
    assert [(r.backbone, r.unfreeze, r.error) for r in result.rows] == [
        (b, d, "MemoryError: out of memory") for b in BACKBONES for d in ("0", "all")]
    assert result.best is None
    assert os.path.dirname(result.out_dir) == str(tmp_path / "compare")
    text = open(os.path.join(result.out_dir, "results.md")).read()
    assert text.count("failed: MemoryError: out of memory") == 4

    def bad_data(config, beam_pipeline_args=None, publish=True, progress=print):
        runs.append(config.backbone)
        raise IngestionError("no images in data_dir")

    monkeypatch.setattr(local_runner, "run_pipeline", bad_data)
    runs.clear()
    with pytest.raises(IngestionError, match="no images"):
        compare.run_compare(base, BACKBONES, [0])
    assert runs == [BACKBONES[0]]
