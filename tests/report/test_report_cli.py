"""`hidim report RUN` and `hidim demo --help` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from report_fixtures import make_run
from typer.testing import CliRunner

from hidim.cli.main import app


def test_hidim_report_writes_html_and_json(tmp_path: Path) -> None:
    run = make_run(tmp_path, sections=("metrics", "audit"))
    out = tmp_path / "review" / "model.html"
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and (out.parent / "report.json").is_file()
    assert str(out) in result.output.replace("\n", "")
    doc = json.loads((out.parent / "report.json").read_text())
    assert doc["bias"]["status"] == "ok" and doc["explanations"]["status"] == "not_run"
    assert "subgroup_gap" in result.output or "Performance gap" in result.output


def test_hidim_report_rejects_a_missing_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code != 0
    assert "expected a run directory" in str(result.exception) + result.output


def test_help_explains_the_commands() -> None:
    runner = CliRunner()
    report = runner.invoke(app, ["report", "--help"])
    demo = runner.invoke(app, ["demo", "--help"])
    assert report.exit_code == 0 and "self-contained HTML" in report.output
    assert demo.exit_code == 0 and "--quick" in demo.output and "phantom" in demo.output
