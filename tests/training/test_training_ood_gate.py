"""The image-density OOD gate: fitted after training for every head, saved with the run,
reported by ``predict`` as ``ood_distance`` and used to abstain on inputs unlike the
training data (blank and noise loops), with the combined rule calibrated on validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hidim.evaluate.uncertainty import fit_abstention_threshold
from hidim.store.writer import init_store, write_manifest, write_series_array
from hidim.training.abstention import apply_rule, fit_rule
from hidim.training.bundle import load_run
from hidim.training.config import config_from_dict
from hidim.training.ood_gate import (
    DENSITY_FILE,
    fit_image_density,
    load_density,
    ood_distance,
    save_density,
)
from hidim.training.predict import predict
from hidim.training.train import train

_NORM = json.dumps({"method": "scale", "scale": 1 / 255, "offset": 0.0, "clip": None})


def _ood_store(root: Path, *, frames: int = 12, size: int = 32) -> Path:
    """Blank and noise 'loops' labelled A4C: they reach the model, which must refuse them."""
    rng = np.random.default_rng(5)
    init_store(root)
    rows = []
    for i in range(6):
        kind = "blank" if i % 2 == 0 else "noise"
        if kind == "blank":
            array = np.full((1, frames, size, size), 0, np.uint8)
        else:
            array = rng.integers(0, 256, (1, frames, size, size), dtype=np.uint8)
        key = f"{9000 + i:04d}ood0".ljust(16, "0")
        info = write_series_array(root, key, array)
        rows.append(
            {
                "series_key": key,
                "series_uid": f"9.9.{i}.1",
                "study_uid": f"9.9.{i}",
                "patient_key": f"OOD{i}",
                "modality": "US",
                "view": "A4C",
                "channels": 1,
                "n_frames": frames,
                "rows": size,
                "cols": size,
                "fps": 30.0,
                "intensity_norm": _NORM,
                "split": "test",
                "array_path": info["array_path"],
                "deidentified": True,
            }
        )
    volume = rng.integers(0, 256, (1, frames, size, size), dtype=np.uint8)
    info = write_series_array(root, "9100ct000000000", volume)
    rows.append(
        {**rows[-1], "series_key": "9100ct000000000", "series_uid": "9.9.9.1", "study_uid": "9.9.9",
         "patient_key": "CT0", "modality": "CT", "view": None, "array_path": info["array_path"]}
    )  # fmt: skip
    write_manifest(root, rows)
    return root


def test_cox_ensemble_gate_refuses_blank_and_noise(
    tiny_store: Path, base_config, tmp_path: Path
) -> None:
    cfg = config_from_dict(
        base_config(
            data={"target": None, "balanced_batches": "events", "min_events": 2},
            task={"head": "cox"},
            trainer={"max_epochs": 2},
            uncertainty={"coverage": 0.8},
        )
    )
    run = tmp_path / "cox"
    train(cfg, run, ensemble=2)
    for member in ("members/0", "members/1"):
        density = load_density(run / member / "checkpoints" / DENSITY_FILE)
        assert density is not None and bool(density.fitted)
        assert density.means.shape[0] == 1  # one mean: a Cox head has no classes
    bundle = load_run(run)
    assert all(m.density is not None for m in bundle.members)

    studies = pd.read_parquet(run / "predictions.parquet")
    assert {"ood_distance", "abstain", "abstain_reason", "abstain_score"} <= set(studies)
    d = studies["ood_distance"].to_numpy(float)
    assert np.isfinite(d).all() and (d > 0).all()
    rule = json.loads((run / "abstention.json").read_text())
    assert rule["ood_threshold"] is not None and rule["ood_quantile"] == 0.99
    # abstain == (uncertainty > thr) | (ood_distance > ood_thr), and the score agrees
    u = studies["uncertainty"].to_numpy(float)
    expected = (d > rule["ood_threshold"]) | (
        u > rule["threshold"] if rule["threshold"] is not None else False
    )
    assert (studies["abstain"].to_numpy() == expected).all()
    assert (~(studies["abstain_score"] <= 1) == studies["abstain"]).all()

    result = predict(run, _ood_store(tmp_path / "ood"), show_progress=False)
    ood = result.studies
    # the CT volume has no echo view: refused before the model, recorded with the reason
    assert result.refused is not None and result.refused["series_key"].tolist() == [
        "9100ct000000000"
    ]
    assert "no view label: the model takes only A4C" in result.refused["reason"].iloc[0]
    assert pd.read_parquet(result.paths["refused"]).shape[0] == 1
    assert "9100ct000000000" not in set(ood["series_key"])
    # the ensemble spread alone does not see these; the image density does
    assert (ood["ood_distance"] > rule["ood_threshold"]).all()
    assert ood["abstain"].all()
    assert (ood["abstain_reason"] == "out_of_distribution").all()
    assert ood["ood_distance"].min() > 2 * studies["ood_distance"].max()


def test_gate_can_be_switched_off(tiny_store: Path, base_config, tmp_path: Path) -> None:
    cfg = config_from_dict(base_config(uncertainty={"ood_gate": False}))
    run = tmp_path / "plain"
    train(cfg, run)
    assert not (run / "checkpoints" / DENSITY_FILE).exists()
    assert load_run(run).members[0].density is None
    studies = pd.read_parquet(run / "predictions.parquet")
    assert "ood_distance" not in studies
    assert (studies.loc[studies["abstain"], "abstain_reason"] == "uncertain").all()


def testfit_rule_answers_the_coverage_with_both_rules() -> None:
    rng = np.random.default_rng(0)
    u, d = rng.random(400), rng.gamma(4.0, 0.25, 400)
    thr, ood_thr = fit_rule(u, d, coverage=0.9, ood_quantile=0.97)
    assert ood_thr == fit_abstention_threshold(d, 0.97)
    answered = (u <= thr) & (d <= ood_thr)
    assert 0.9 <= answered.mean() <= 0.92  # conformal: at least the coverage, not much more
    # too few validation studies for the gate's quantile: the largest distance seen
    thr_small, ood_small = fit_rule(u[:20], d[:20], coverage=0.9, ood_quantile=0.99)
    assert ood_small == d[:20].max()
    # the gate never cuts into the training cloud (distance 1 = its 99th percentile)
    assert fit_rule(u, d / 10, coverage=0.9, ood_quantile=0.97)[1] == 1.0
    # no gate: the plain uncertainty threshold
    assert fit_rule(u, None, 0.9, 0.99) == (fit_abstention_threshold(u, 0.9), None)


def testapply_rule_reasons_and_score() -> None:
    studies = pd.DataFrame(
        {"uncertainty": [0.1, 0.9, 0.1, np.nan], "ood_distance": [0.5, 0.5, 7.0, 0.5]}
    )
    out = apply_rule(studies, threshold=0.5, ood_threshold=2.0)
    assert out["abstain"].tolist() == [False, True, True, True]
    assert out["abstain_reason"].tolist() == ["", "uncertain", "out_of_distribution", "uncertain"]
    assert out["abstain_score"].tolist()[:3] == pytest.approx([0.25, 1.8, 3.5])
    assert np.isnan(out["abstain_score"].iloc[3])  # NaN uncertainty: abstain, most uncertain


def test_density_is_class_conditional_for_classifiers_and_round_trips(tmp_path: Path) -> None:
    from hidim.models.network import HidimNet
    from hidim.models.registry import get_backbone
    from hidim.tasks.classification import BinaryHead

    torch.manual_seed(0)
    backbone = get_backbone("small3d", in_channels=1, widths=[4, 8, 8, 8])
    net = HidimNet(backbone=backbone, head=BinaryHead(in_features=backbone.out_dim))
    batches = [
        {"clip": torch.rand(4, 1, 8, 32, 32) + c, "target": torch.full((4,), float(c))}
        for c in (0, 1, 0, 1)
    ]
    density = fit_image_density(net, batches, classes=2)
    assert density.means.shape == (2, backbone.out_dim)
    save_density(density, tmp_path / "d.pt")
    again = load_density(tmp_path / "d.pt")
    z = net.image_features(torch.rand(3, 1, 8, 32, 32))
    assert torch.equal(ood_distance(density, z), ood_distance(again, z))
    assert load_density(tmp_path / "missing.pt") is None
    # one class with too few samples: falls back to a single mean rather than failing
    single = fit_image_density(
        net, batches[:1] + [batches[1] | {"target": torch.zeros(4)}], classes=2
    )
    assert single.means.shape[0] == 1
