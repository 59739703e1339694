import dataclasses
import json
import os

import pytest

from tfx_finetune.commands import cli
from tfx_finetune.pipeline.config import (
    RECIPE_FIELDS, RECIPES, ConfigError, PipelineConfig, make_config)


def test_defaults_follow_the_documented_recipe():
    c = PipelineConfig()
    assert c.split_ratios == (80, 10, 10)
    assert c.recipe == "default" and c.unfreeze_layers == 100
    assert (c.head, c.lr_schedule, c.base_learning_rate_factor) == ("linear", "cosine", 0.1)
    assert c.phase1_on_features and c.phase1_learning_rate == 1e-2
    assert c.effective_phase2_learning_rate == 3e-3
    assert c.weights == "imagenet"


def test_the_seed_recipe_is_the_documents_recipe_and_fields_given_beside_it_win():
    seed = make_config({"recipe": "seed"})
    assert (seed.head, seed.head_units, seed.unfreeze_layers, seed.lr_schedule,
            seed.weight_decay, seed.label_smoothing, seed.augment, seed.phase1_on_features,
            seed.phase1_learning_rate) == ("dense", 1024, 10, "constant", 0.0, 0.0, "", False,
                                           1e-3)
    assert seed.effective_phase2_learning_rate == pytest.approx(1e-5)  # phase 1's ÷ 100
    phase2_rate = make_config({"recipe": "seed", "phase1_learning_rate": 1e-2}
                              ).trainer_config().phase2_learning_rate
    assert phase2_rate == pytest.approx(1e-4)
    assert make_config({"recipe": "seed", "unfreeze_layers": 30}).unfreeze_layers == 30
    back = make_config({"recipe": "default"}, base=seed)
    assert {k: getattr(back, k) for k in RECIPE_FIELDS} == RECIPES["default"]
    assert make_config({"recipe": "seed"}).trainer_config().recipe == "seed"


@pytest.mark.parametrize("fields, named", [
    ({"recipe": "fancy"}, "recipe"), ({"head": "mlp"}, "head"),
    ({"lr_schedule": "step"}, "lr_schedule"), ({"warmup_epochs": -1}, "warmup_epochs"),
    ({"weight_decay": 1.5}, "weight_decay"), ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"base_learning_rate_factor": 0.0}, "base_learning_rate_factor"),
    ({"base_learning_rate_factor": 2.0}, "base_learning_rate_factor"),
    ({"reduce_lr_on_plateau": True}, "reduce_lr_on_plateau"),
])
def test_recipe_fields_are_validated_naming_the_field(fields, named):
    with pytest.raises(ConfigError, match=f"'{named}'"):
        make_config(fields)


@pytest.mark.parametrize("field, value", [
    ("backbone", "resnet9000"), ("image_size", 0), ("image_size", 16), ("batch_size", -1),
    ("phase1_learning_rate", 0.0), ("phase2_learning_rate", 2.0), ("dropout", 1.0),
    ("split_ratios", (80, 20)), ("split_ratios", (80, 0, 20)), ("min_accuracy", 0.0),
    ("model_name", "../escape"), ("phase2_epochs", -1), ("weights", ""),
    ("augment", "flip,blur"), ("class_weights", "maybe"), ("input_format", "parquet"),
    ("max_reject_fraction", 1.5), ("phase2_learning_rate", -1e-5),
    ("tflite", "int4"), ("tflite", ""), ("tflite_max_accuracy_drop", 1.0),
    ("tflite_max_accuracy_drop", -0.01), ("tflite_max_accuracy_drop", True),
])
def test_invalid_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        dataclasses.replace(PipelineConfig(), **{field: value})


@pytest.mark.parametrize("fields, message", [
    ({"tuner_trials": -1}, "expected a whole number >= 0"),
    ({"tuner_trials": 4, "phase2_epochs": 0}, "set phase2_epochs and unfreeze_layers above 0"),
    ({"tuner_trials": 4, "unfreeze_layers": 0}, "set phase2_epochs and unfreeze_layers above 0"),
    ({"tuner_trials": 4, "unfreeze_from": "block_9_add"}, "leave unfreeze_from empty"),
])
def test_a_tuner_needs_phase_2_and_its_depth(fields, message):
    with pytest.raises(ConfigError, match=f"'tuner_trials'.*{message}"):
        dataclasses.replace(PipelineConfig(), **fields)


def test_the_tuner_hands_the_trainer_its_best_values_and_the_trainers_config():
    """With tuner_trials the Tuner trains what the Trainer would (same inputs and config,
    plus its trial budget) and the Trainer takes its best hyperparameters; without, the DAG
    has no Tuner and the Trainer no hyperparameters."""
    from tfx_finetune.components import tuner
    from tfx_finetune.pipeline import nodes
    from tfx_finetune.pipeline.pipeline import create_pipeline

    def built(**fields):
        return {c.id: c for c in create_pipeline(PipelineConfig(**fields)).components}

    plain = built()
    assert nodes.TUNER not in plain and "hyperparameters" not in plain[nodes.TRAINER].inputs
    tuned = built(tuner_trials=3)
    tuner_node, trainer_node = tuned[nodes.TUNER], tuned[nodes.TRAINER]
    assert trainer_node.inputs["hyperparameters"] is tuner_node.outputs[
        nodes.BEST_HYPERPARAMETERS]
    for key in ("examples", "transform_graph", "schema"):
        assert tuner_node.inputs[key] is trainer_node.inputs[key]
    def custom_config(node):  # TFX keeps it as JSON
        return json.loads(node.exec_properties["custom_config"])

    assert custom_config(tuner_node) == {**custom_config(trainer_node), tuner.TRIALS_KEY: 3}
    assert custom_config(trainer_node) == custom_config(plain[nodes.TRAINER])
    for key in ("train_args", "eval_args"):
        assert tuner_node.exec_properties[key] == trainer_node.exec_properties[key]


def test_tflite_reaches_the_trainer_and_adds_its_check_and_pusher_to_the_dag(tmp_path):
    from tfx_finetune.pipeline.pipeline import create_pipeline

    config = make_config({"tflite": "int8", "tflite_max_accuracy_drop": "0.03",
                          "workspace": str(tmp_path)})
    assert config.trainer_config().tflite == "int8"
    assert config.tflite_base_dir == os.path.join(str(tmp_path), "tflite", "image_classifier")
    nodes = {c.id: c for c in create_pipeline(config).components}
    assert nodes["TFLiteCheck"].exec_properties["max_accuracy_drop"] == 0.03
    assert nodes["TFLitePusher"].exec_properties["base_directory"] == os.path.abspath(
        config.tflite_base_dir)
    # Evaluated before anything is published.
    assert nodes["TFLiteCheck"] in nodes["AtomicPusher"].upstream_nodes
    default = {c.id for c in create_pipeline(PipelineConfig()).components}
    assert PipelineConfig().tflite == "none" and not {"TFLiteCheck", "TFLitePusher"} & default


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("backbone: resnet50\nphase1_epochs: 2\nsplit_ratios: [70, 15, 15]\n")
    c = make_config({"phase1_epochs": "4", "batch_size": None}, str(path))
    assert (c.backbone, c.phase1_epochs, c.split_ratios) == ("resnet50", 4, (70, 15, 15))
    assert c.batch_size == PipelineConfig().batch_size


def test_unknown_field_and_bad_type_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("phase_1_epochs: 2\n")
    with pytest.raises(ConfigError, match="unknown config field.*phase_1_epochs"):
        make_config(config_file=str(path))
    with pytest.raises(ConfigError, match="'phase1_epochs'.*int"):
        make_config({"phase1_epochs": "two"})
    with pytest.raises(ConfigError, match="cannot read config file"):
        make_config(config_file=str(tmp_path / "missing.yaml"))


def test_label_names_file_reaches_ingestion_and_bad_files_are_refused(tmp_path):
    names = tmp_path / "labels.txt"
    names.write_text("airplane\r\n automobile \nbird\n\n")
    config = make_config({"label_names_file": str(names), "input_format": "tfrecord"})
    assert config.ingestion_options().label_names == ("airplane", "automobile", "bird")
    assert PipelineConfig().ingestion_options().label_names == ()
    for text, problem in [("", "is empty"), ("cat\n\ndog\n", "line 2 \\(label 1\\)"),
                          ("cat\ndog\ncat\n", "labels 0 and 2 are both named 'cat'"),
                          ("a/b\n", "path separator")]:
        names.write_text(text)
        with pytest.raises(ConfigError, match=f"'label_names_file'.*{problem}"):
            make_config({"label_names_file": str(names)})
    with pytest.raises(ConfigError, match="'label_names_file'.*cannot read"):
        make_config({"label_names_file": str(tmp_path / "missing.txt")})


def test_trainer_parameters_change_when_the_weights_file_is_replaced_in_place(tmp_path):
    """The Trainer's TFX cache key is its parameters: the weights' content must be one."""
    weights = tmp_path / "{backbone}.weights.h5"
    path = tmp_path / "mobilenet_v2.weights.h5"
    path.write_bytes(b"first")
    config = PipelineConfig(backbone="mobilenet_v2", weights=str(weights))
    first = config.trainer_config()
    assert first.weights == str(path)
    path.write_bytes(b"other")
    assert config.trainer_config().weights_sha256 != first.weights_sha256
    assert PipelineConfig(weights="imagenet").trainer_config().weights_sha256 == ""


def test_alpha_takes_the_widths_keras_publishes_for_each_mobilenet():
    for backbone, alpha in [("mobilenet_v2", 0.35), ("mobilenet_v2", 1.4), ("mobilenet", 0.25),
                            ("mobilenet_v3_small", 0.75), ("mobilenet_v3_large", 0.75),
                            ("resnet50", 1.0)]:
        assert PipelineConfig(backbone=backbone, alpha=alpha).alpha == alpha
    with pytest.raises(ConfigError, match="'alpha' = 0.25 .*mobilenet_v2 comes in widths "
                                          "0.35, 0.5, 0.75, 1.0, 1.3, 1.4"):
        PipelineConfig(backbone="mobilenet_v2", alpha=0.25)
    with pytest.raises(ConfigError, match="'alpha' = 0.35 .*mobilenet_v3_small comes in widths "
                                          "0.75, 1.0"):
        PipelineConfig(alpha=0.35)
    with pytest.raises(ConfigError, match="'alpha' = 0.5 .*resnet50 has no width multiplier: "
                                          "leave alpha at 1.0"):
        PipelineConfig(backbone="resnet50", alpha=0.5)
    with pytest.raises(ConfigError, match="'alpha'.*float"):
        make_config({"alpha": "wide"})


@pytest.fixture(scope="module")
def narrow_mobilenet_v2(tmp_path_factory):
    """A MobileNetV2 alpha 0.35 no-top weights file, as Keras' standard ImageNet file is."""
    import tensorflow as tf

    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2_0.35_no_top.h5"
    tf.keras.applications.MobileNetV2(alpha=0.35, include_top=False, weights=None,
                                      input_shape=(32, 32, 3)).save_weights(str(path))
    return str(path)


@pytest.mark.slow
def test_check_weights_passes_a_file_that_fits(narrow_mobilenet_v2):
    from tfx_finetune.pipeline.config_checks import check_weights

    check_weights(PipelineConfig(backbone="mobilenet_v2", alpha=0.35, image_size=32,
                                 weights=narrow_mobilenet_v2))
    with pytest.raises(ConfigError, match="fits alpha 0.35; pass --alpha 0.35"):
        check_weights(PipelineConfig(backbone="mobilenet_v2", image_size=32,
                                     weights=narrow_mobilenet_v2))


@pytest.mark.parametrize("command", [["run"], ["lr-find"],
                                     ["compare", "--backbones", "mobilenet_v2", "--unfreeze", "0"]])
def test_weights_that_do_not_fit_stop_the_command_before_the_pipeline(
        command, narrow_mobilenet_v2, tmp_path, capsys):
    workspace = tmp_path / "workspace"
    data = tmp_path / "data"
    data.mkdir()
    code = cli.main([*command, "--data", str(data), "--workspace", str(workspace),
                     "--backbone", "mobilenet_v2", "--image-size", "32",
                     "--weights", narrow_mobilenet_v2])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]  # after the line naming the log file
    assert message.startswith(f"finetune: weights file {narrow_mobilenet_v2} does not fit "
                              "mobilenet_v2 alpha 1.0 at 32 px (")
    assert message.endswith("the file fits alpha 0.35; pass --alpha 0.35")
    # Nothing ran: an empty data folder would otherwise stop ingestion (exit code 1).
    assert not (workspace / "pipeline_root").exists()
    assert not (workspace / "compare").exists()
