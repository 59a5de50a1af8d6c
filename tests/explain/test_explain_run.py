"""explain_run and the CLI on a real (tiny) run: phantom → store → trained model → summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hidim.cli.main import app


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A 24-patient phantom (shortcut planted), curated and trained for one epoch."""
    from hidim.curate.labels import import_labels
    from hidim.curate.pipeline import curate
    from hidim.phantom.config import EffectsConfig, PhantomConfig
    from hidim.phantom.generate import generate
    from hidim.training.config import config_from_dict
    from hidim.training.train import train

    root = tmp_path_factory.mktemp("explain_run")
    cfg = PhantomConfig(
        patients=24, seed=3, size=32, views=("A4C",), burn_in_text=False, private_tags=False,
        effects=EffectsConfig(shortcut=True, shortcut_site="northgate"),
    )  # fmt: skip
    generate(root / "phantom", cfg)
    curate(root / "phantom" / "dicom", root / "store", fps=25.0, allow_identified=True)
    import_labels(root / "store", root / "phantom" / "labels.csv")
    raw = {
        "data": {"store": str(root / "store"), "views": ["A4C"], "target": "ef",
                 "threshold": 40.0, "clip_frames": 8, "batch_size": 8,
                 "group_columns": ["sex", "site"]},
        "model": {"backbone": "small3d", "backbone_kwargs": {"widths": [4, 4, 8, 8]}},
        "task": {"head": "binary"},
        "trainer": {"max_epochs": 1, "early_stopping_patience": 0, "loggers": [],
                    "progress_bar": False},
    }  # fmt: skip
    torch.manual_seed(0)
    train(config_from_dict(raw), root / "run")
    return root


def test_explain_run_writes_the_report_contract(tiny_run: Path) -> None:
    from hidim.explain import explain_run

    run = tiny_run / "run"
    summary = explain_run(
        run, truth=tiny_run / "phantom", n_boot=50, grid=(2, 2), n_cases=2, sanity_clips=2,
        sanity_steps=2, progress=False, methods=("gradcam", "smoothgrad"), split="test",
    )  # fmt: skip
    on_disk = json.loads((run / "explain" / "summary.json").read_text())
    assert on_disk["schema"] == "hidim.explain/1" and on_disk == summary
    assert summary["methods"] == ["gradcam", "smoothgrad"]
    assert summary["truth"]["matched_series"] == 24
    regions = {r["region"] for r in summary["occlusion"]}
    assert {"lv_cavity", "myocardium", "shortcut_marker", "outside_sector"} <= regions
    row = summary["occlusion"][0]
    assert set(row) == {"region", "anatomical", "metric", "original", "occluded", "drop",
                        "p_value", "subset"}  # fmt: skip
    assert any((r["subset"] or "").startswith("site=") for r in summary["occlusion"])
    assert {p["phase"] for p in summary["phases"]} == {
        "end_diastole", "end_systole", "mid_systole", "mid_diastole"}  # fmt: skip
    assert summary["details"]["temporal"]["phase_source"] == {"truth": summary["n_items"]}
    assert {(s["method"], s["test"]) for s in summary["sanity_checks"]} == {
        ("gradcam", "model_randomisation"),
        ("smoothgrad", "model_randomisation"),
    }
    assert summary["details"]["sanity"]["negative_control"][0]["passed"] is False
    assert len(summary["cases"]) == 2
    for case in summary["cases"]:
        assert (run / case["image_path"]).read_bytes()[:4] == b"\x89PNG"
    assert (run / summary["details"]["occlusion"]["grid"]["figure"]).is_file()
    fi = summary["frame_importance"]
    assert len(fi["frames"]) == len(fi["importance"]) == len(fi["phase"]) == 8
    assert (run / "explain" / "run.json").is_file()


def test_cli_audit_and_explain_errors(tiny_run: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["audit", str(tiny_run / "run"), "--by", "sex,site",
                              "--n-boot", "50", "--split", "all"])  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((tiny_run / "run" / "audit" / "summary.json").read_text())
    assert summary["settings"]["split"] is None and summary["rows"]
    out = tiny_run / "cli_explain"
    res = runner.invoke(app, ["explain", str(tiny_run / "run"), "--out", str(out),
                              "--methods", "gradcam", "--n-cases", "1", "--n-boot", "20",
                              "--grid", "0", "--max-items", "3", "--region", "outside_sector"])  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert [r["region"] for r in summary["occlusion"]][0] == "outside_sector"
    assert summary["n_items"] == 3 and "grid" not in summary["details"]["occlusion"]
    assert "Sanity checks" in res.output
    res = runner.invoke(app, ["explain", str(tiny_run / "nope")])
    assert res.exit_code == 2 and "config.yaml" in res.output
    res = runner.invoke(app, ["explain", str(tiny_run / "run"), "--methods", "gradcamm"])
    assert res.exit_code == 2 and "Did you mean 'gradcam'" in res.output


def test_estimated_phases_agree_with_the_phantom_truth(tiny_run: Path) -> None:
    """LV-area phase estimation vs the phantom's true phases, through fps normalisation."""
    import numpy as np

    from hidim.explain.regions import TruthIndex
    from hidim.explain.temporal import estimate_phases
    from hidim.store import ClipDataset, Store

    store = Store(tiny_run / "store")
    index = TruthIndex(tiny_run / "phantom", store.manifest)
    ds = ClipDataset(store, split=None, clip_frames=16, sampling="centre", short="loop")
    agreement = []
    for i in range(len(ds)):
        item = ds[i]
        truth = index.frame_phases(item["series_key"], item["clip_start"], 16)
        agreement.append((estimate_phases(item["clip"]).phase == truth.phase).mean())
    assert np.mean(agreement) > 0.75, agreement


def test_fairness_sweep_trains_per_weight_and_resumes(tiny_run: Path) -> None:
    """The λ sweep (fairness wiring) on the tiny store: one run per weight, a trade-off
    file the audit can embed, and finished weights are not trained again."""
    from hidim.training.bundle import load_run
    from hidim.training.config import FairnessConfig
    from hidim.training.fairness import fairness_sweep

    cfg = load_run(tiny_run / "run").config
    cfg = cfg.model_copy(
        update={"fairness": FairnessConfig(kind="demographic_parity", group="sex", weight=1.0)}
    )
    out = tiny_run / "sweep"
    result = fairness_sweep(cfg, [0.0, 1.0], out, split="train", n_boot=20)
    assert [p["weight"] for p in result["tradeoff"]] == [0.0, 1.0]
    assert result["performance_metric"] == "auroc"
    assert result["disparity_metric"].startswith("selection_rate range")
    assert (out / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "sweep.json").read_text()) == result
    assert "fairness" in (out / "lambda_1" / "config.yaml").read_text()
    stamp = (out / "lambda_1" / "run.json").stat().st_mtime_ns
    fairness_sweep(cfg, [1.0], out, split="train", n_boot=20)  # resumes: no retraining
    assert (out / "lambda_1" / "run.json").stat().st_mtime_ns == stamp
