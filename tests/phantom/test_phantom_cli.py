"""`hidim phantom`: options reach the generator; errors exit non-zero with a message."""

from __future__ import annotations

from pathlib import Path

import pydicom
import yaml
from typer.testing import CliRunner

from hidim.cli.main import app
from hidim.phantom import load_truth


def test_phantom_command_writes_a_phantom(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    result = CliRunner().invoke(
        app,
        ["phantom", str(out), "--patients", "2", "--seed", "4", "--size", "32", "--rgb",
         "--no-us-regions", "--shortcut"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "patients / series" in result.output and "shortcut" in result.output
    truth = load_truth(out)
    config = truth.parameters["config"]
    assert config["patients"] == 2 and config["seed"] == 4 and config["effects"]["shortcut"]
    files = sorted((out / "dicom").rglob("*.dcm"))
    ds = pydicom.dcmread(files[0])
    assert ds.PhotometricInterpretation == "RGB" and "SequenceOfUltrasoundRegions" not in ds
    assert (out / "run.json").is_file() and (out / "labels.csv").is_file()
    again = CliRunner().invoke(
        app,
        ["phantom", str(out), "--patients", "2", "--seed", "4", "--size", "32", "--rgb",
         "--no-us-regions", "--shortcut"],
    )  # fmt: skip
    assert again.exit_code == 0 and "already complete" in again.output


def test_yaml_config_with_command_line_override(tmp_path: Path) -> None:
    cfg = tmp_path / "phantom.yaml"
    cfg.write_text(yaml.safe_dump({"patients": 5, "seed": 9, "size": 32, "views": ["A4C"]}))
    out = tmp_path / "ph"
    result = CliRunner().invoke(app, ["phantom", str(out), "--config", str(cfg), "-n", "1"])
    assert result.exit_code == 0, result.output
    config = load_truth(out).parameters["config"]
    assert config["patients"] == 1 and config["seed"] == 9 and config["views"] == ["A4C"]


def test_bad_options_exit_with_a_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["phantom", str(tmp_path / "x"), "--patients", "0"])
    assert result.exit_code == 2 and "invalid phantom options" in result.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(app, ["phantom", str(tmp_path / "busy"), "-n", "1"])
    assert result.exit_code == 1 and "holds no phantom" in result.output


def test_help_says_what_it_is_and_is_not() -> None:
    result = CliRunner().invoke(app, ["phantom", "--help"])
    assert result.exit_code == 0
    assert "known ground truth" in result.output and "not a substitute" in result.output
