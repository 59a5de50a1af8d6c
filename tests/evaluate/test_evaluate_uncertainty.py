"""Abstention, selective prediction, OOD AUROC, MC dropout, ensembles, calibration."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from torch import nn

from hidim.errors import EvaluationError
from hidim.evaluate import (
    abstain,
    apply_temperature,
    aurc,
    ensemble_aggregate,
    expected_calibration_error,
    fit_abstention_threshold,
    fit_temperature,
    mc_dropout_predict,
    ood_auroc,
    plot_reliability_diagram,
    reliability_bins,
    risk_coverage_curve,
)


@pytest.mark.parametrize("coverage", [0.5, 0.8, 0.9, 0.95, 0.999])
def test_evaluate_abstention_threshold_gives_the_target_coverage(coverage) -> None:
    rng = np.random.default_rng(0)
    val, test = rng.gamma(2.0, size=2000), rng.gamma(2.0, size=20000)
    thr = fit_abstention_threshold(val, coverage)
    kept_val = 1 - abstain(val, thr).mean()
    assert coverage <= kept_val <= coverage + 2 / 2000  # conformal quantile on validation
    assert abs((1 - abstain(test, thr).mean()) - coverage) < 0.02  # holds out of sample


def test_evaluate_abstention_threshold_has_conformal_coverage_on_small_validation_sets() -> None:
    """n = 30 validation cases: averaged over many draws, new cases are answered at least
    at the target rate (the plain empirical quantile would give ~ n/(n+1) of it)."""
    rng = np.random.default_rng(7)
    answered = [
        1
        - abstain(rng.normal(size=5000), fit_abstention_threshold(rng.normal(size=30), 0.9)).mean()
        for _ in range(400)
    ]
    assert np.mean(answered) >= 0.9 - 0.005
    assert fit_abstention_threshold(np.arange(5.0), 0.95) == np.inf  # too few cases: answer all


def test_evaluate_abstention_with_ties_keeps_at_least_the_target() -> None:
    u = np.array([0.1, 0.2, 0.2, 0.2, 0.9])
    thr = fit_abstention_threshold(u, 0.5)
    assert thr == 0.2 and abstain(u, thr).tolist() == [False, False, False, False, True]
    assert fit_abstention_threshold(u, 1.0) == np.inf
    assert abstain(np.array([np.nan]), 1.0).tolist() == [True]
    with pytest.raises(EvaluationError, match=r"target_coverage must lie in \(0, 1\]"):
        fit_abstention_threshold(u, 0.0)


def test_evaluate_risk_coverage_and_aurc() -> None:
    rng = np.random.default_rng(1)
    loss = (rng.random(500) < 0.3).astype(float)
    oracle = loss + rng.random(500) * 0.1  # errors are the most uncertain
    cov, risk = risk_coverage_curve(oracle, loss)
    assert cov[-1] == 1.0 and risk[-1] == pytest.approx(loss.mean())
    assert risk[np.searchsorted(cov, 0.6)] == 0.0
    random_aurc = aurc(rng.random(500), loss)
    assert aurc(oracle, loss) < 0.5 * random_aurc < aurc(-oracle, loss)
    assert random_aurc == pytest.approx(loss.mean(), abs=0.05)


def test_evaluate_ood_auroc() -> None:
    assert ood_auroc([0.1, 0.2], [0.5, 0.6, 0.7]) == 1.0
    assert ood_auroc([0.5, 0.5], [0.5]) == 0.5
    with pytest.raises(EvaluationError, match="at least one"):
        ood_auroc([], [0.3])


def test_evaluate_mc_dropout_enables_only_dropout_and_restores_modes() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1)
    )
    model.train()
    x = torch.randn(8, 4)
    out = mc_dropout_predict(model, x, 30, predict_fn=lambda z: {"score": z[:, 0]}, seed=1)
    assert out["score"].shape == (8,) and bool((out["score_std"] > 0).all())
    torch.testing.assert_close(out["uncertainty"], out["score_std"])
    assert all(m.training for m in model.modules())  # modes restored
    again = mc_dropout_predict(model, x, 30, predict_fn=lambda z: {"score": z[:, 0]}, seed=1)
    torch.testing.assert_close(again["score"], out["score"])  # seeded, global RNG untouched
    # batch norm stayed in eval mode: the mean equals the eval-mode output on average
    model.eval()
    with torch.no_grad():
        det = model(x)[:, 0].double()
    assert float((out["score"] - det).abs().mean()) < 0.5 * float(det.abs().mean()) + 0.1
    with pytest.raises(EvaluationError, match="no dropout layer"):
        mc_dropout_predict(nn.Linear(4, 1), x, 5)


def test_evaluate_ensemble_aggregate_entropy_and_mutual_information() -> None:
    agree = [{"prob": torch.tensor([[0.5, 0.5]]), "score": torch.tensor([0.5])}] * 3
    disagree = [
        {"prob": torch.tensor([[1.0, 0.0]]), "score": torch.tensor([0.0])},
        {"prob": torch.tensor([[0.0, 1.0]]), "score": torch.tensor([1.0])},
    ]
    a, d = ensemble_aggregate(agree), ensemble_aggregate(disagree)
    assert float(a["entropy"]) == pytest.approx(np.log(2)) == float(d["entropy"])
    assert float(a["mutual_information"]) == pytest.approx(0.0, abs=1e-9)  # aleatoric only
    assert float(d["mutual_information"]) == pytest.approx(np.log(2))  # epistemic only
    assert float(d["score_std"]) == pytest.approx(0.5)
    surv = ensemble_aggregate(
        [
            {"score": np.array([1.0, 2.0]), "uncertainty": np.array([0.1, 0.2])},
            {"score": np.array([3.0, 2.0]), "uncertainty": np.array([0.3, 0.2])},
        ]
    )
    torch.testing.assert_close(surv["uncertainty"], torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(
        surv["uncertainty_members"], torch.tensor([0.2, 0.2], dtype=torch.float64)
    )
    with pytest.raises(EvaluationError, match="at least 2 members"):
        ensemble_aggregate(agree[:1])


def _miscalibrated(n: int, seed: int, k: int = 4):
    """Logits that are 3x too confident for the true class probabilities."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(size=(n, k)) * 1.5
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    return true_logits * 3.0, y


def test_evaluate_temperature_scaling_recovers_the_temperature_and_reduces_ece() -> None:
    z_val, y_val = _miscalibrated(4000, 0)
    z_test, y_test = _miscalibrated(4000, 1)
    temp = fit_temperature(z_val, y_val)
    assert temp == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(apply_temperature(z_test, 1.0), y_test)
    after = expected_calibration_error(apply_temperature(z_test, temp), y_test)
    assert after < 0.4 * before and after < 0.03
    # binary logits, over-confident by 2.5x
    rng = np.random.default_rng(2)
    zb = rng.normal(size=5000) * 2
    yb = rng.random(5000) < 1 / (1 + np.exp(-zb))
    tb = fit_temperature(zb * 2.5, yb)
    assert tb == pytest.approx(2.5, rel=0.1)
    assert expected_calibration_error(
        apply_temperature(zb * 2.5, tb), yb
    ) < expected_calibration_error(apply_temperature(zb * 2.5, 1.0), yb)


def test_evaluate_ece_matches_a_direct_computation_and_plots() -> None:
    rng = np.random.default_rng(3)
    p = rng.random(1000)
    y = rng.random(1000) < p**2  # over-confident positives
    bins = reliability_bins(p, y, n_bins=10)
    direct = 0.0
    for lo, hi in zip(np.linspace(0, 1, 11)[:-1], np.linspace(0, 1, 11)[1:], strict=True):
        m = (p >= lo) & (p < hi)
        direct += m.sum() / 1000 * abs(y[m].mean() - p[m].mean())
    assert expected_calibration_error(p, y, n_bins=10) == pytest.approx(direct, abs=1e-12)
    assert bins.counts.sum() == 1000
    fig = plot_reliability_diagram(p, y, n_bins=10)
    assert "ECE" in fig.axes[0].get_legend().get_texts()[1].get_text()
    with pytest.raises(EvaluationError, match="apply softmax"):
        expected_calibration_error(np.array([[0.9, 0.9]]), [0])


def test_evaluate_ood_abstention_summary() -> None:
    from hidim.evaluate import ood_abstention_summary

    rng = np.random.default_rng(4)
    val, test = rng.normal(size=1000), rng.normal(size=1000)
    ood = {
        "noise": rng.normal(4.0, 1.0, 50),
        "blank": np.full(20, np.nan),
        "near": rng.normal(size=30),
    }
    s = ood_abstention_summary(val, test, ood, target_coverage=0.9, n_boot=200)
    assert s["threshold"] == fit_abstention_threshold(val, 0.9)
    assert abs(s["id_abstention"] - 0.1) < 0.03  # conformal threshold, n_val = 1000
    assert s["ood"]["blank"]["abstention"] == 1.0  # NaN uncertainty always abstains
    assert s["ood"]["noise"]["abstention"] > 0.9 and s["ood"]["near"]["abstention"] < 0.3
    assert s["n_ood"] == 100 and s["ood_abstention"] == pytest.approx(
        (50 * s["ood"]["noise"]["abstention"] + 20 + 30 * s["ood"]["near"]["abstention"]) / 100
    )
    assert s["ood_auroc"]["low"] <= s["ood_auroc"]["estimate"] <= s["ood_auroc"]["high"]
    # a rule fitted elsewhere (hidim predict's abstain_score: threshold 1) is applied as is
    fixed = ood_abstention_summary(val, test, ood, target_coverage=0.9, n_boot=50, threshold=1.5)
    assert fixed["threshold"] == 1.5
    assert fixed["val_abstention"] == pytest.approx(np.mean(val > 1.5))
    assert fixed["id_abstention"] == pytest.approx(np.mean(test > 1.5))
