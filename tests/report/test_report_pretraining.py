"""The model card names the supervised pretraining a run started from, and the uncertainty
section says that an image-density gate refuses inputs unlike the training data."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from report_fixtures import make_run

from hidim.report.collect import collect


def test_model_card_names_the_pretraining_run(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["model"].update(init_from="/runs/ef", freeze_encoder=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    init = {"file": "/runs/ef/checkpoints/model.pt", "sha256": "c0ffee" * 10 + "abcd"}
    pre = {"clip_frames": 16, "init_from": {**init, "task": "regression", "target": "ef"}}
    (run / "preprocessing.json").write_text(json.dumps(pre))
    card = collect(run).model_card
    assert card.pretrained is not None
    assert "regression of ef" in card.pretrained and "frozen" in card.pretrained
    assert "c0ffeec0ffee" in card.pretrained


def test_model_card_without_pretraining_says_nothing(tmp_path: Path) -> None:
    assert collect(make_run(tmp_path)).model_card.pretrained is None


def test_uncertainty_method_mentions_the_image_density_gate(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    (run / "uncertainty" / "summary.json").unlink(missing_ok=True)
    info = {"uncertainty_source": "ensemble_sd", "coverage": 0.9, "abstain_threshold": 0.2}
    (run / "predictions.json").write_text(json.dumps({**info, "ood_threshold": 2.5}))
    unc = collect(run).uncertainty
    method = unc.method
    assert method is not None
    assert "ensemble members" in method and "image-density gate" in method and "2.5" in method
    assert unc.ood_threshold == 2.5


def test_uncertainty_counts_test_cases_refused_by_the_gate(tmp_path: Path) -> None:
    import pandas as pd

    run = make_run(tmp_path)
    preds = pd.read_parquet(run / "predictions.parquet")
    test = preds.index[preds["split"] == "test"]
    preds["abstain_reason"] = ""
    preds.loc[test[:3], "abstain_reason"] = "out_of_distribution"
    preds.loc[test[3:5], "abstain_reason"] = "uncertain"
    preds.to_parquet(run / "predictions.parquet")
    assert collect(run).uncertainty.n_abstained_ood == 3


def test_model_card_names_self_supervised_pretraining(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    init = {"file": "/runs/ssl/checkpoints/model.pt", "sha256": "ab" * 32, "task": "ssl_simclr"}
    (run / "preprocessing.json").write_text(json.dumps({"init_from": init}))
    card = collect(run).model_card
    assert card.pretrained is not None and "self-supervised (SIMCLR" in card.pretrained
    assert "fine-tuned" in card.pretrained
