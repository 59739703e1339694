"""The model card against the Model Card Toolkit's schema, and its figures against the run's.

`model_card.schema.v0.0.2.json` beside this file is a copy of the Toolkit's schema (its source
and commit are in its `$comment`). Schema v0.0.2 itself requires no property (v0.0.1 required
`model_details`; v0.0.2 keeps `required` only inside `license`), so validation checks the
types, the date format and that the card adds no top-level key; `REQUIRED` lists what issue 21
requires every card to hold.
"""
import datetime
import json
import os

import jsonschema
import numpy as np
import pytest

from tfx_finetune.pipeline.config import RECIPES, ConfigError, PipelineConfig
from tfx_finetune.reports import model_card, run_report
from tfx_finetune.reports.run_summary import RunSummary

SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "model_card.schema.v0.0.2.json")
REQUIRED = {
    "model_details": ("name", "overview", "documentation", "version", "path"),
    "model_parameters": ("model_architecture", "data", "input_format", "output_format"),
    "quantitative_analysis": ("performance_metrics",),
    "considerations": ("use_cases", "limitations"),
}
DATE = datetime.date(2026, 11, 30)
NAMES = ["6", "0", "3"]  # vocabulary (frequency) order
MATRIX = np.array([[5, 1, 0],    # actual 6
                   [0, 7, 2],    # actual 0
                   [3, 0, 4]])   # actual 3
SPLIT_COUNTS = {"train": {"6": 40, "0": 44, "3": 38}, "eval": {"6": 5, "0": 6},
                "test": {"6": 6, "0": 9, "3": 7}}
# As run_summary.json holds it.
SUMMARY = {"run_id": "2026-11-30T15:00:00.000000", "components": [],
           "test_accuracy": 16 / 22, "had_baseline": False, "blessed": True, "servable": True,
           "serving_check": "servable", "pushed_to": "/ws/serving/digits/1764514800",
           "new_version": True, "model_dir": "/ws/pipeline_root/Trainer/model/7/Format-Serving"}


def validate(card):
    with open(SCHEMA_PATH) as f:
        schema = json.load(f)
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).validate(card)


def _card(summary=None, config=None, evaluation=(MATRIX, 0), split_counts=None):
    return model_card.build_model_card(
        config or PipelineConfig(model_name="digits", alpha=0.75, weights="w/base.h5"),
        RunSummary.from_dict(dict(SUMMARY, **(summary or {}))), NAMES,
        SPLIT_COUNTS if split_counts is None else split_counts, evaluation, DATE)


def _class_counts(description):
    pairs = description.split("Images per class: ")[1].split(", ")
    return {name: int(n) for name, n in (pair.rsplit(": ", 1) for pair in pairs)}


def _metrics(card):
    """{(type, slice or None): value} of the card's performance metrics."""
    return {(m["type"], m.get("slice")): m["value"]
            for m in card["quantitative_analysis"]["performance_metrics"]}


def test_card_follows_the_toolkit_schema_and_holds_the_required_fields():
    card = _card()
    validate(card)
    assert card["schema_version"] == "0.0.2"
    for section, fields in REQUIRED.items():
        missing = [f for f in fields if f not in card[section] or card[section][f] in ("", [])]
        assert not missing, (section, missing)
    assert card["model_details"]["version"] == {
        "name": "1764514800", "date": "2026-11-30",
        "diff": "published by run 2026-11-30T15:00:00.000000"}
    assert card["model_details"]["path"] == SUMMARY["pushed_to"]


def test_the_schema_copy_refuses_what_the_toolkit_would():
    for broken in ({"model_details": {"name": 3}},                     # wrong type
                   {"model_details": {"version": {"date": "30.11.2026"}}},  # not a date
                   {"metrics": []},                                    # unknown top-level key
                   {"quantitative_analysis": {"performance_metrics": [{"value": 0.9}]}}):
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)


def test_model_details_name_backbone_alpha_weights_and_run():
    card = _card()
    architecture = card["model_parameters"]["model_architecture"]
    assert card["model_details"]["name"] == "digits"
    assert architecture.startswith("mobilenet_v3_small (keras.applications, alpha 0.75) at "
                                   "224x224 px, base weights w/base.h5;")
    assert "GlobalAveragePooling2D -> Dropout(0.2) -> Dense(3, softmax)" in architecture
    assert "recipe default: AdamW" in architecture
    assert "phase 1 trained the head on the frozen base features, computed once" in architecture
    assert "phase 2 trained the top 100 base layers (BatchNorm frozen)" in architecture
    seed = _card(config=PipelineConfig(**{**RECIPES["seed"], "unfreeze_layers": -1}, recipe="seed"))
    architecture = seed["model_parameters"]["model_architecture"]
    assert "phase 1 trained the head for up to" in architecture
    assert "phase 2 trained every base layer (BatchNorm frozen)" in architecture
    scratch = _card(config=PipelineConfig(weights="none"))["model_parameters"]
    assert "phase 1 trained the head for up to" in scratch["model_architecture"]
    assert SUMMARY["run_id"] in card["model_details"]["documentation"]
    assert "judged on the value threshold only" in card["model_details"]["documentation"]
    assert card["model_details"]["overview"].endswith("into 3 classes: 0, 3, 6.")


def test_version_of_an_identical_and_of_an_unpublished_model():
    identical = _card({"new_version": False})["model_details"]["version"]
    assert identical["name"] == "1764514800"
    assert identical["diff"].startswith("identical to the serving version 1764514800")
    unpublished = _card({"pushed_to": None, "blessed": False, "new_version": False})
    version = unpublished["model_details"]["version"]
    assert version["name"] == f"unpublished candidate of run {SUMMARY['run_id']}"
    assert version["diff"].startswith("not published (NOT blessed: ")
    assert unpublished["model_details"]["path"] == SUMMARY["model_dir"]
    validate(unpublished)


def test_datasets_carry_the_counts_per_split_and_class():
    data = _card()["model_parameters"]["data"]
    assert [d["name"] for d in data] == ["train split", "eval split", "test split"]
    for dataset, split in zip(data, ("train", "eval", "test")):
        assert _class_counts(dataset["description"]) == SPLIT_COUNTS[split]
        assert dataset["description"].startswith(f"{sum(SPLIT_COUNTS[split].values()):,} image(s)")
    assert data[2]["description"].endswith("Images per class: 0: 9, 3: 7, 6: 6")


def test_per_class_figures_are_the_report_tables():
    metrics = _metrics(_card())
    rows = run_report.per_class_table(*run_report.sorted_matrix(MATRIX, NAMES))
    assert len(metrics) == 1 + 2 * len(rows)
    for name, _, precision, recall in rows:
        assert float(metrics["precision", f"class {name}"]) == pytest.approx(precision, abs=5e-5)
        assert float(metrics["recall", f"class {name}"]) == pytest.approx(recall, abs=5e-5)
    assert metrics["recall", "class 0"] == "0.7778"    # 7 of the 9 actual 0s
    assert metrics["precision", "class 3"] == "0.6667"  # 4 of the 6 predicted 3s


def test_overall_accuracy_with_its_interval():
    card = _card()
    overall = card["quantitative_analysis"]["performance_metrics"][0]
    assert overall["type"] == "accuracy" and "slice" not in overall
    assert float(overall["value"]) == pytest.approx(SUMMARY["test_accuracy"], abs=5e-5)
    interval = overall["confidence_interval"]
    low, high = float(interval["lower_bound"]), float(interval["upper_bound"])
    assert 0.4 < low < 16 / 22 < high < 0.95  # Wilson, 16 of 22
    # Test examples outside the vocabulary count in the accuracy's denominator.
    wider = _card(evaluation=(MATRIX, 8))["quantitative_analysis"]["performance_metrics"][0]
    assert float(wider["confidence_interval"]["upper_bound"]) < high


def test_an_unevaluated_run_has_no_metrics():
    card = _card({"test_accuracy": None, "blessed": None, "pushed_to": None}, evaluation=None)
    assert card["quantitative_analysis"]["performance_metrics"] == []
    validate(card)


def test_intended_use_and_limitations_come_from_the_config():
    config = PipelineConfig(intended_use="Sorting scanned digits.", limitations="Digits only.")
    card = _card(config=config)
    assert card["considerations"]["use_cases"] == [{"description": "Sorting scanned digits."}]
    limitations = [lim["description"] for lim in card["considerations"]["limitations"]]
    assert limitations == ["Digits only.", "No eval images for class(es) 3: the eval figures "
                                           "say nothing about them."]
    default = _card()["considerations"]
    assert default["use_cases"][0]["description"] == PipelineConfig().intended_use
    assert default["limitations"][0]["description"] == PipelineConfig().limitations


@pytest.mark.parametrize("field", ["intended_use", "limitations"])
@pytest.mark.parametrize("value", ["", "   ", 3])
def test_empty_considerations_are_refused(field, value):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        PipelineConfig(**{field: value})


def test_card_file_round_trips(tmp_path):
    card = _card()
    path = model_card.write_model_card(card, str(tmp_path / "reports" / "r"))
    assert path == str(tmp_path / "reports" / "r" / "model_card.json")
    with open(path, encoding="utf-8") as f:
        assert json.load(f) == card


def test_report_renders_the_card_without_a_second_per_class_table(tmp_path):
    card = _card(config=PipelineConfig(model_name="digits", intended_use="Sorting digits."))
    summary = RunSummary.from_dict(dict(SUMMARY, model_card_path=str(tmp_path / "model_card.json")))
    path = run_report.write_report(summary, str(tmp_path), None, (MATRIX, 0), NAMES,
                                   SPLIT_COUNTS, "x", None, card)
    text = open(path).read()
    section = text.split("## Model card\n")[1]
    assert "`model_card.json` beside this report, in the Model Card Toolkit's schema v0.0.2." \
        in section
    assert "- **digits**, version 1764514800 (2026-11-30): published by run" in section
    interval = card["quantitative_analysis"]["performance_metrics"][0]["confidence_interval"]
    assert (f"- accuracy on the test split: 0.7273 (95 % interval {interval['lower_bound']} "
            f"to {interval['upper_bound']})") in section
    assert "### Intended use\n\n- Sorting digits.\n" in section
    assert "- No eval images for class(es) 3" in section.split("### Limitations")[1]
    assert "- test split: 22 image(s)" in section
    assert text.count("| class |") == 1
    no_card = run_report.write_report(summary, str(tmp_path / "none"), None, None, NAMES, {},
                                      "x")
    assert open(no_card).read().split("## Model card\n")[1].strip() == "Not written."


def test_a_tuned_run_describes_the_values_the_trainer_trained_with():
    tuned = {"trials": [{"trial_id": "0", "score": 0.9}, {"trial_id": "1", "score": 0.8}],
             "best": {"phase2_learning_rate": 5e-4, "unfreeze_layers": -1, "phase2_epochs": 7},
             "cached": False}
    architecture = _card(summary={"tuning": tuned})["model_parameters"]["model_architecture"]
    assert ("phase 2 trained every base layer (BatchNorm frozen) for up to 7 epochs at "
            "learning rate 0.0005") in architecture
    assert architecture.endswith("(phase 2's rate, depth and epochs chosen by the Tuner from "
                                 "2 trials on the eval split)")
