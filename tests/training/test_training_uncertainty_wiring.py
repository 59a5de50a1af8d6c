"""Training wires the evidential head end to end: epoch → KL annealing, feature density
fitted after training and saved with the run, head uncertainty → ``predict``'s abstention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hidim.training.bundle import load_run
from hidim.training.config import config_from_dict
from hidim.training.train import train


def test_evidential_run_fits_density_and_abstains(
    tiny_store: Path, base_config, tmp_path: Path
) -> None:
    cfg = config_from_dict(
        base_config(
            data={"threshold": 40, "positive_below": True, "balanced_batches": "classes"},
            task={"head": "evidential_classification", "params": {"n_classes": 2}},
            trainer={"max_epochs": 2},
        )
    )
    run = tmp_path / "evi"
    train(cfg, run)  # set_epoch reaches the head: without it the KL weight raises TaskError

    head = load_run(run).model.head
    density = head.density
    assert bool(density.fitted)
    assert float(density.reference) > 0
    assert not torch.equal(density.whitener, torch.eye(density.whitener.shape[0]).double())
    # the loaded head gates evidence by the fitted density: far-off features get a
    # negative log gate, training-like features none
    far = torch.full((1, density.means.shape[1]), 1e3)
    assert float(density.log_gate(far)) < 0
    assert float(density.log_gate(density.means.float()[:1])) == 0.0

    studies = pd.read_parquet(run / "predictions.parquet")
    assert {"uncertainty", "abstain", "uncertainty_head"} <= set(studies.columns)
    assert (studies["uncertainty_source"] == "head").all()
    u = studies["uncertainty"].to_numpy(float)
    assert np.isfinite(u).all() and ((u > 0) & (u <= 1)).all()  # u = K / S in (0, 1]
    assert studies["abstain"].dtype == bool


def test_evidential_ensemble_reports_mean_head_uncertainty(
    tiny_store: Path, base_config, tmp_path: Path
) -> None:
    cfg = config_from_dict(
        base_config(
            data={"threshold": 40, "positive_below": True, "balanced_batches": "classes"},
            task={"head": "evidential_classification", "params": {"n_classes": 2}},
        )
    )
    train(cfg, tmp_path / "ens", ensemble=2, evaluate=False)
    from hidim.training.predict import predict

    studies = predict(tmp_path / "ens", tiny_store, show_progress=False).studies
    assert (studies["uncertainty_source"] == "ensemble_head_mean").all()
    # the members' mean head uncertainty, with the member spread kept beside it
    np.testing.assert_allclose(studies["uncertainty"], studies["uncertainty_head"])
    np.testing.assert_allclose(studies["uncertainty_spread"], studies["member_sd"])
    assert (studies["uncertainty_spread"] >= 0).all()
