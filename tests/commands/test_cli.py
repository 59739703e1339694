"""The `finetune` command line: flags reach the config, errors are one line, no traceback."""
import dataclasses

import pytest

from tfx_finetune.commands import cli, options
from tfx_finetune.pipeline.config import PipelineConfig, make_config


def test_cli_flags_reach_the_config():
    args = cli.build_parser().parse_args(
        ["run", "--data", "/d", "--workspace", "/w", "--unfreeze-layers", "30",
         "--split-ratios", "70,15,15"])
    c = make_config(options.overrides(args), args.config)
    assert (c.data_dir, c.workspace, c.unfreeze_layers, c.split_ratios) == \
        ("/d", "/w", 30, (70, 15, 15))


def test_every_boolean_field_can_be_switched_both_ways_from_the_cli(tmp_path):
    booleans = [f.name for f in dataclasses.fields(PipelineConfig) if isinstance(f.default, bool)]
    assert "accept_data_changes" in booleans
    config_file = tmp_path / "on.yaml"
    # The seed recipe's constant rate, which reduce_lr_on_plateau needs.
    config_file.write_text("recipe: seed\n" + "".join(f"{name}: true\n" for name in booleans))
    parser = cli.build_parser()

    def config(*flags):
        args = parser.parse_args(["run", "--config", str(config_file), *flags])
        return make_config(options.overrides(args), args.config)

    for name in booleans:
        flag = name.replace("_", "-")
        assert getattr(config(), name) is True  # no flag: the YAML's value stands
        assert getattr(config(f"--no-{flag}"), name) is False
        assert getattr(config(f"--no-{flag}", f"--{flag}"), name) is True
    args = parser.parse_args(["run", "--accept-data-changes"])
    assert make_config(options.overrides(args)).accept_data_changes is True


def test_cli_reports_config_errors_without_a_traceback(capsys):
    assert cli.main(["run", "--image-size", "0"]) == 2
    assert "'image_size'" in capsys.readouterr().err


def test_beam_workers_flag_chooses_in_process_or_worker_processes(capsys):
    from tfx_finetune.pipeline import local_runner

    parser = cli.build_parser()
    assert local_runner.beam_worker_args(parser.parse_args(["demo"]).beam_workers) == []
    assert local_runner.beam_worker_args(parser.parse_args(["run", "--beam-workers", "2"])
                                         .beam_workers) == [
        "--direct_running_mode=multi_processing", "--direct_num_workers=2",
        f"--setup_file={local_runner.SETUP_FILE}"]
    with pytest.raises(SystemExit):
        parser.parse_args(["compare", "--beam-workers", "-1"])
    assert "use 0 (Beam in this process) or a number of worker processes" in \
        capsys.readouterr().err


def test_alpha_flag_reaches_the_trainer_and_the_help(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("backbone: mobilenet\nalpha: 0.5\n")
    assert make_config(config_file=str(path)).trainer_config().alpha == 0.5
    args = cli.build_parser().parse_args(["run", "--backbone", "mobilenet_v2", "--alpha", "0.35"])
    assert make_config(options.overrides(args), args.config).trainer_config().alpha == 0.35
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "--help"])
    assert "--alpha VALUE" in capsys.readouterr().out
