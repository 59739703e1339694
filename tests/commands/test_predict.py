"""`finetune predict` on a TFLite model: a .tflite file, a TFLite version or base directory."""
import json
import os
import shutil

import pytest
from PIL import Image

import tflite_models
from tfx_finetune.commands import cli, predict
from tfx_finetune.components import tflite


@pytest.fixture(scope="module")
def tflite_base(tmp_path_factory):
    """<base>/7/model.tflite + labels.txt, as the TFLitePusher publishes them."""
    root = tmp_path_factory.mktemp("tflite")
    representative = tflite.pixels([tflite_models.png(v) for v in range(0, 256, 8)],
                                   tflite_models.SIZE)
    tflite.convert(tflite_models.brightness_classifier(), tflite_models.SIZE, "int8",
                   str(root / "base" / "7"), tflite_models.CLASSES, representative)
    return str(root / "base")


@pytest.fixture
def labelled_folder(tmp_path):
    """Larger images than the model's input, so predict has to resize as the Transform does."""
    for level, label in tflite_models.LABELLED:
        os.makedirs(tmp_path / "images" / label, exist_ok=True)
        Image.new("RGB", (20, 30), (level,) * 3).save(
            tmp_path / "images" / label / f"{level}.png")
    (tmp_path / "images" / "dark" / "broken.png").write_bytes(b"not an image")
    return str(tmp_path / "images")


def test_model_paths_resolve_to_the_newest_model(tflite_base, tmp_path):
    model_file = os.path.join(tflite_base, "7", "model.tflite")
    assert predict.resolve_model(model_file) == model_file
    assert predict.resolve_model(os.path.join(tflite_base, "7")) == model_file
    assert predict.resolve_model(tflite_base) == model_file
    with pytest.raises(FileNotFoundError, match="pass a .tflite file"):
        predict.resolve_model(str(tmp_path))


def test_predict_command_on_a_tflite_file(tflite_base, labelled_folder, capsys):
    model_file = os.path.join(tflite_base, "7", "model.tflite")
    assert cli.main(["predict", "--model", model_file, labelled_folder, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == model_file
    rows = {os.path.basename(r["path"]): r for r in out["results"]}
    assert "error" in rows["broken.png"]
    assert rows["10.png"]["predictions"][0]["class"] == "dark"
    assert rows["250.png"]["predictions"][0]["class"] == "bright"
    assert [p["class"] for p in rows["140.png"]["predictions"]] == ["bright", "dark"]
    assert out["summary"]["images"] == 10 and out["summary"]["accuracy"] == pytest.approx(0.8)


def test_a_tflite_file_without_its_labels_is_refused(tflite_base, tmp_path):
    lone = str(tmp_path / "lone.tflite")
    shutil.copy(os.path.join(tflite_base, "7", "model.tflite"), lone)
    with pytest.raises(FileNotFoundError, match="labels.txt is missing"):
        predict.run_predict(lone, [lone], 1, True)
