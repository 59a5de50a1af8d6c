"""``hidim ood-check``: the run's own abstain rule on a store of foreign inputs, refused
series counted as abstained, per-kind summary written where the report reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_training_ood_gate import _ood_store
from typer.testing import CliRunner

from hidim.cli.main import app
from hidim.errors import TrainingError
from hidim.training.config import config_from_dict
from hidim.training.ood_check import SUMMARY_FILE, ood_check
from hidim.training.train import train


@pytest.fixture(scope="module")
def cox_run(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = {
        "data": {
            "store": str(tiny_store),
            "views": ["A4C"],
            "clip_frames": 8,
            "batch_size": 4,
            "balanced_batches": "events",
            "min_events": 2,
        },
        "model": {"backbone": "small3d", "backbone_kwargs": {"widths": [4, 8, 8, 8]}},
        "task": {"head": "cox"},
        "trainer": {"max_epochs": 2, "loggers": [], "progress_bar": False},
        "uncertainty": {"coverage": 0.8},
    }
    run = tmp_path_factory.mktemp("ood_check") / "cox"
    train(config_from_dict(raw), run, ensemble=2)
    return run


def test_ood_check_refuses_foreign_inputs_by_kind(cox_run: Path, tmp_path: Path) -> None:
    store = _ood_store(tmp_path / "ood")
    kinds = {f"{9000 + i:04d}ood0".ljust(16, "0"): ("blank", "noise")[i % 2] for i in range(6)}
    kinds["9100ct000000000"] = "ct_volume"
    summary = ood_check(cox_run, store, kinds=kinds, n_boot=50, show_progress=False)
    assert set(summary["ood"]) == {"blank", "noise", "ct_volume"}
    assert summary["ood"]["blank"]["abstention"] == 1.0
    assert summary["ood"]["noise"]["abstention"] == 1.0
    assert summary["ood"]["noise"]["by_gate"] == 3  # refused as unlike the training data
    assert summary["ood"]["ct_volume"] == {
        "abstention": 1.0,
        "n": 1,
        "note": "refused before the model: no view label: the model takes only A4C",
    }
    assert summary["n_ood"] == 7 and summary["ood_abstention"] == 1.0
    assert summary["ood_auroc"]["estimate"] == 1.0
    assert json.loads((cox_run / SUMMARY_FILE).read_text())["n_ood"] == 7


def test_ood_check_cli_and_errors(cox_run: Path, tmp_path: Path) -> None:
    store = _ood_store(tmp_path / "ood")
    result = CliRunner().invoke(app, ["ood-check", str(cox_run), str(store), "--kind-column",
                                      "modality", "--n-boot", "50"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "US" in result.output and "CT" in result.output and "OOD AUROC" in result.output
    with pytest.raises(TrainingError, match="hidim predict"):
        ood_check(tmp_path, store)
    with pytest.raises(TrainingError, match="not a manifest column"):
        ood_check(cox_run, store, kind_column="nope", show_progress=False)
