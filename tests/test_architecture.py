"""The tree is the pipeline: import-linter enforces the layer contract in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layer_contract_holds() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    out = subprocess.run(
        [exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_errors_share_one_root() -> None:
    import hidim.errors as e

    for name in e.__all__:
        assert issubclass(getattr(e, name), e.HidimError)


def test_cli_help_lists_the_pipeline() -> None:
    from typer.testing import CliRunner

    from hidim.cli.main import app

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "hidim demo" in result.output
