"""`finetune lr-find`: the sweep's rules on synthetic loss curves, what the sweep steps (on a
small model without the upstream), then the command on a tiny real image folder through the
pipeline's cached upstream."""
import contextlib
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from imagefolders import write_folder
from tfx_finetune.commands import cli, lr_find, lr_find_training
from tfx_finetune.components import model as model_lib
from tfx_finetune.pipeline.config import ConfigError, PipelineConfig
from tfx_finetune.reports import run_summary

UPSTREAM = ("ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
            "DataGate", "Transform")
# The upstream work that depends on the data alone. The DataGate also reads the statistics it
# accepted before, so whether a re-run gets it from the cache depends on what was accepted since.
DATA_WORK = tuple(node for node in UPSTREAM if node != "DataGate")


def _curve(loss_of_rate):
    """A train step whose loss is a function of the rate, recording the rates it was given."""
    seen = []

    def train_step(rate):
        seen.append(rate)
        return loss_of_rate(rate)

    return train_step, seen


def _bowl(rate):
    """Smooth, lowest (1.0) at 1e-2, rising to 10.0 three decades either side."""
    return 1.0 + (math.log10(rate) + 2) ** 2


def test_schedule_grows_by_a_constant_factor_from_min_to_max():
    rates = lr_find.schedule(1e-5, 1.0, 51)
    assert rates[0] == pytest.approx(1e-5) and rates[-1] == pytest.approx(1.0)
    ratios = {round(b / a, 9) for a, b in zip(rates, rates[1:])}
    assert ratios == {round(10 ** 0.1, 9)}


def test_the_suggestion_is_a_tenth_of_the_rate_at_the_lowest_smoothed_loss():
    train_step, _ = _curve(_bowl)
    result = lr_find.sweep(train_step, lr_find.schedule(1e-5, 1e-1, 41))
    suggestion = lr_find.suggest(result)
    # A trailing average would put the minimum several steps later (at a larger rate).
    assert suggestion.rate == pytest.approx(1e-3)
    assert "1.0e-02" in suggestion.reason and not suggestion.warning
    assert not result.stop_reason and len(result.losses) == 41


def test_the_sweep_stops_once_the_loss_diverges():
    # Falls to 1.0 at 1e-2, then explodes: 1e-2 → 1e-1 multiplies the loss by 10.
    train_step, seen = _curve(lambda r: _bowl(r) if r <= 1e-2 else 1.0 + 100 * (r - 1e-2))
    rates = lr_find.schedule(1e-5, 1.0, 51)
    result = lr_find.sweep(train_step, rates)
    assert result.stop_reason.startswith("the mean loss of the last 3 steps passed 4x")
    assert len(seen) == len(result.losses) < len(rates)
    assert seen[-1] < 0.1  # stopped within a decade of the turn, not at the end of the range
    assert 1e-4 < lr_find.suggest(result).rate <= 1e-3  # a tenth of a rate just before it


def test_a_moderate_rise_is_not_divergence():
    # Rises to 3x its minimum (under the 4x factor): the sweep runs to the end.
    train_step, seen = _curve(lambda r: 1.0 if r <= 1e-2 else min(3.0, 1.0 + 10 * r))
    rates = lr_find.schedule(1e-5, 1.0, 51)
    result = lr_find.sweep(train_step, rates)
    assert not result.stop_reason and len(seen) == len(rates)


def test_a_non_finite_loss_stops_the_sweep_and_is_not_recorded():
    train_step, _ = _curve(lambda r: float("nan") if r > 1e-3 else 2.0 - r * 100)
    result = lr_find.sweep(train_step, lr_find.schedule(1e-6, 1.0, 61))
    assert result.stop_reason.startswith("the loss was not finite at rate")
    assert all(math.isfinite(loss) for loss in result.losses + result.smoothed)
    assert max(result.rates) <= 1e-3


def test_a_loss_that_never_falls_is_flagged_and_the_suggestion_stays_in_range():
    train_step, _ = _curve(lambda r: 1.0 + r)
    result = lr_find.sweep(train_step, lr_find.schedule(1e-4, 1.0, 20))
    suggestion = lr_find.suggest(result)
    assert suggestion.rate == pytest.approx(1e-4)
    assert "never fell" in suggestion.warning


def test_a_loss_still_falling_at_the_largest_rate_is_flagged():
    train_step, _ = _curve(lambda r: 2.0 - r)
    suggestion = lr_find.suggest(lr_find.sweep(train_step, lr_find.schedule(1e-4, 1.0, 20)))
    assert suggestion.rate == pytest.approx(0.1)
    assert "raise --max-lr" in suggestion.warning


def test_no_finite_loss_at_all_is_an_error():
    train_step, _ = _curve(lambda r: float("inf"))
    with pytest.raises(lr_find.LrFindError, match="lower --min-lr"):
        lr_find.suggest(lr_find.sweep(train_step, lr_find.schedule(1e-4, 1.0, 20)))


@pytest.mark.parametrize("min_lr,max_lr,steps,flag", [
    (1e-3, 1e-3, 100, "--max-lr"), (1e-2, 1e-3, 100, "--max-lr"), (0.0, 1.0, 100, "--min-lr"),
    (1e-6, 2.0, 100, "--max-lr"), (1e-6, 1.0, 9, "--steps")])
def test_bad_ranges_name_the_flag(min_lr, max_lr, steps, flag):
    with pytest.raises(ConfigError, match=flag):
        lr_find.check_range(min_lr, max_lr, steps)


def test_bad_flags_fail_before_anything_runs(tmp_path, capsys):
    code = cli.main(["lr-find", "--workspace", str(tmp_path / "ws"), "--min-lr", "0.1",
                     "--max-lr", "0.01"])
    assert code == 2 and "--max-lr" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "ws")


BACKBONE, SIZE, HEAD_UNITS, CLASSES, BATCH = "mobilenet_v3_small", 32, 8, 3, 4


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A weights file for the base, so that the model is built as a pretrained one (frozen)."""
    path = str(tmp_path_factory.mktemp("base") / "base.weights.h5")
    model_lib.build_base(BACKBONE, SIZE, "none").save_weights(path)
    return path


@contextlib.contextmanager
def _random_split(hp, transform_graph_uri, examples, batch_size):
    """Stands in for the Trainer's cached training split: 12 random images in [0, 255]."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (12, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.integers(0, CLASSES, 12)
    yield tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size), CLASSES


def _record_steps(monkeypatch):
    """Records, for each `train_on_batch`, the shape of one input and the number of trainable
    parameters of the model it steps."""
    seen = []
    train_on_batch = tf.keras.Model.train_on_batch

    def recording(model, x, *args, **kwargs):
        seen.append((tuple(x.shape[1:]),
                     sum(int(np.prod(w.shape)) for w in model.trainable_weights)))
        return train_on_batch(model, x, *args, **kwargs)

    monkeypatch.setattr(tf.keras.Model, "train_on_batch", recording)
    return seen


@pytest.mark.parametrize("flags,on_features,measured", [
    ([], True, lr_find.ON_FEATURES),
    (["--no-phase1-on-features"], False,
     "whole model on augmented images (phase1_on_features off)")])
def test_the_sweep_steps_what_the_trainers_phase1_fits(pretrained, tmp_path, monkeypatch, capfd,
                                                       flags, on_features, measured):
    """With phase1_on_features (the default) the head alone steps on the frozen base's pooled
    features; without it, the model steps on the images. Either way only the head trains."""
    seen = _record_steps(monkeypatch)
    monkeypatch.setattr(lr_find_training, "run_upstream", lambda config: ("", []))
    monkeypatch.setattr(lr_find_training, "training_split", _random_split)
    workspace = str(tmp_path / "ws")
    assert cli.main(["lr-find", "--workspace", workspace, "--data", str(tmp_path),
                     "--weights", pretrained, "--backbone", BACKBONE, "--image-size", str(SIZE),
                     "--head", "dense", "--head-units", str(HEAD_UNITS), "--augment", "flip",
                     "--batch-size", str(BATCH), "--min-lr", "1e-4", "--max-lr", "0.1",
                     "--steps", "10", *flags]) == 0
    channels = model_lib.build_base(BACKBONE, SIZE, "none").output_shape[-1]
    head = channels * HEAD_UNITS + HEAD_UNITS + HEAD_UNITS * CLASSES + CLASSES
    inputs = (channels,) if on_features else (SIZE, SIZE, 3)
    with open(os.path.join(workspace, "lr_find", "lr_find.json")) as f:
        written = json.load(f)
    assert seen == [(inputs, head)] * len(written["losses"]) and len(seen) >= 2
    assert written["measured"] == measured
    assert written["model"]["phase1_on_features"] == on_features
    assert f"measured: {measured}" in capfd.readouterr().out


def _node_states(config):
    return {c.node_id: c.state for c in run_summary.summarize(config).components}


@pytest.mark.slow
def test_lr_find_on_a_real_folder_then_the_upstream_is_served_from_the_cache(tmp_path, capfd):
    workspace = str(tmp_path / "ws")
    data = write_folder(tmp_path / "data", classes=(0, 1, 2), per_class=20)
    flags = ["--data", data, "--workspace", workspace, "--weights", "none",
             "--image-size", "32", "--head-units", "16", "--batch-size", "8"]
    assert cli.main(["lr-find", *flags, "--min-lr", "1e-5", "--max-lr", "1", "--steps",
                     "20"]) == 0
    out = capfd.readouterr().out  # progress lines reach the terminal's descriptor, not sys.stdout
    [log] = os.listdir(os.path.join(workspace, "logs"))
    assert f"full log: {os.path.join(workspace, 'logs', log)}" in out
    with open(os.path.join(workspace, "lr_find", "lr_find.json")) as f:
        written = json.load(f)
    assert os.path.getsize(os.path.join(workspace, "lr_find", "lr_find.png")) > 10_000
    assert 1e-5 <= written["suggested_learning_rate"] <= 1
    assert written["model"]["weights"] == "none" and written["model"]["head_units"] == 16
    assert 1 < len(written["losses"]) == len(written["rates"]) == len(written["smoothed"]) <= 20
    assert all(math.isfinite(v) for v in written["losses"] + written["smoothed"])
    rate = f"{written['suggested_learning_rate']:.1e}"
    assert f"suggested phase1_learning_rate: {rate}" in out
    assert f"--phase1-learning-rate {rate}" in out and "step 1/20" in out
    # From scratch every layer trains in phase 1, on images, whatever phase1_on_features says.
    assert written["model"]["phase1_on_features"]
    assert written["measured"].startswith(lr_find.ON_IMAGES)
    assert written["measured"].endswith("(weights: none)")
    assert f"measured: {written['measured']}" in out
    config = PipelineConfig(workspace=workspace)
    first = _node_states(config)
    assert {first[node] for node in UPSTREAM} == {"complete"}
    assert "Trainer" not in first  # the partial run stops at Transform
    # A following run with other training settings reuses every upstream execution.
    lr_find_training.run_upstream(PipelineConfig(data_dir=data, workspace=workspace, weights="none",
                                        image_size=32, head_units=64, batch_size=4))
    second = _node_states(config)
    assert {second[node] for node in DATA_WORK} == {"cached"}, second
