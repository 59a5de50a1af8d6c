"""cox_nll against lifelines (Efron), statsmodels (Breslow) and a direct formula; gradients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hidim.errors import SurvivalDataError, TaskError
from hidim.tasks.cox import CoxMemoryBank, breslow_cumulative_hazard
from hidim.tasks.survival import cox_nll


def _rossi() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from lifelines.datasets import load_rossi

    df = load_rossi()
    x = df.drop(columns=["week", "arrest"]).to_numpy(float)
    return x, df["week"].to_numpy(float), df["arrest"].to_numpy(bool)


def _whas500() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sksurv.datasets import load_whas500

    x, y = load_whas500()
    x = x.select_dtypes("number").to_numpy(float)
    x = (x - x.mean(0)) / x.std(0)
    return x, y["lenfol"].astype(float), y["fstat"].astype(bool)


def _lifelines_loglik(x: np.ndarray, t: np.ndarray, e: np.ndarray, beta: np.ndarray) -> float:
    """lifelines' own Efron partial log-likelihood at ``beta`` (its fitting routine's value)."""
    from lifelines.fitters.coxph_fitter import SemiParametricPHFitter

    order = np.argsort(t, kind="stable")
    _, _, loglik = SemiParametricPHFitter()._get_efron_values_single(
        pd.DataFrame(x[order]),
        pd.Series(t[order]),
        pd.Series(e[order]),
        pd.Series(np.ones(t.shape[0])),
        None,
        beta,
    )
    return float(loglik)


def _direct_nll(eta: np.ndarray, t: np.ndarray, e: np.ndarray, ties: str) -> float:
    """Textbook O(n^2) formula, loop over distinct event times."""
    total = 0.0
    for tk in np.unique(t[e]):
        dead = (t == tk) & e
        risk = t >= tk
        d = dead.sum()
        total += eta[dead].sum()
        r, s = np.exp(eta[risk]).sum(), np.exp(eta[dead]).sum()
        if ties == "breslow":
            total -= d * np.log(r)
        else:
            total -= sum(np.log(r - (j / d) * s) for j in range(d))
    return -total


def _t(*arrays: np.ndarray) -> list[torch.Tensor]:
    return [torch.as_tensor(a) for a in arrays]


@pytest.mark.parametrize("loader", [_rossi, _whas500])
def test_survival_efron_equals_lifelines_at_fitted_coefficients(loader) -> None:
    from lifelines import CoxPHFitter

    x, t, e = loader()
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])]).assign(T=t, E=e)
    cph = CoxPHFitter().fit(df, "T", "E")
    eta = x @ cph.params_.to_numpy()
    nll = cox_nll(*_t(eta, t, e), ties="efron", reduction="sum")
    assert nll.dtype == torch.float64
    assert abs(float(nll) + cph.log_likelihood_) < 1e-9
    assert len(np.unique(t[e])) < e.sum()  # the data really has tied event times


@pytest.mark.parametrize("loader", [_rossi, _whas500])
@pytest.mark.parametrize("seed", [0, 1])
def test_survival_efron_equals_lifelines_at_random_coefficients(loader, seed) -> None:
    x, t, e = loader()
    beta = np.random.default_rng(seed).normal(scale=0.3, size=x.shape[1])
    nll = cox_nll(*_t(x @ beta, t, e), ties="efron", reduction="sum")
    assert abs(float(nll) + _lifelines_loglik(x, t, e, beta)) < 1e-9


def test_survival_breslow_equals_statsmodels_and_direct_formula() -> None:
    sm = pytest.importorskip("statsmodels.duration.hazard_regression")
    x, t, e = _rossi()
    beta = np.random.default_rng(3).normal(scale=0.3, size=x.shape[1])
    model = sm.PHReg(t, x, status=e.astype(float), ties="breslow")
    nll = float(cox_nll(*_t(x @ beta, t, e), ties="breslow", reduction="sum"))
    assert abs(nll + model.loglike(beta)) < 1e-9
    assert abs(nll - _direct_nll(x @ beta, t, e, "breslow")) < 1e-9
    efron = sm.PHReg(t, x, status=e.astype(float), ties="efron").loglike(beta)
    assert abs(float(cox_nll(*_t(x @ beta, t, e), reduction="sum")) + efron) < 1e-9


def test_survival_cox_nll_mean_is_sum_over_events_and_dtype_is_kept() -> None:
    x, t, e = _rossi()
    eta = x @ np.full(x.shape[1], 0.05)
    total = cox_nll(*_t(eta, t, e), reduction="sum")
    mean = cox_nll(*_t(eta, t, e), reduction="mean")
    assert float(mean) == pytest.approx(float(total) / e.sum(), rel=1e-14)
    f32 = cox_nll(torch.tensor(eta, dtype=torch.float32), *_t(t, e))
    assert f32.dtype == torch.float32
    assert float(f32) == pytest.approx(float(mean), rel=1e-5)


def test_survival_cox_nll_is_stable_for_extreme_log_hazards() -> None:
    rng = np.random.default_rng(0)
    t = rng.integers(1, 20, 200).astype(float)
    e = rng.random(200) < 0.6
    eta = rng.normal(scale=300.0, size=200)  # exp overflows float64 without care
    for ties in ("efron", "breslow"):
        v64 = cox_nll(*_t(eta, t, e), ties=ties, reduction="sum")
        assert np.isfinite(float(v64))
        assert float(v64) == pytest.approx(_direct_nll_stable(eta, t, e, ties), rel=1e-12)
        v32 = cox_nll(torch.tensor(eta / 3, dtype=torch.float32), *_t(t, e), ties=ties)
        assert torch.isfinite(v32)


def _direct_nll_stable(eta: np.ndarray, t: np.ndarray, e: np.ndarray, ties: str) -> float:
    from scipy.special import logsumexp

    total = 0.0
    for tk in np.unique(t[e]):
        dead = (t == tk) & e
        rest = (t >= tk) & ~dead
        d = dead.sum()
        total += eta[dead].sum()
        for j in range(d):
            frac = 1.0 if ties == "breslow" else 1 - j / d
            parts = np.r_[eta[rest], eta[dead] + np.log(frac) if ties == "efron" else eta[dead]]
            total -= logsumexp(parts)
    return -total


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("scale", [1.0, 400.0], ids=["sum-of-exp path", "log-domain path"])
def test_survival_cox_nll_gradcheck_with_ties(ties, scale) -> None:
    gen = torch.Generator().manual_seed(0)
    t = torch.tensor([1, 2, 2, 2, 3, 3, 4, 5, 5, 6, 7, 7], dtype=torch.float64)
    e = torch.tensor([1, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1], dtype=torch.bool)
    eta = torch.randn(12, generator=gen, dtype=torch.float64) * scale
    eta.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: cox_nll(z, t, e, ties=ties), (eta,))
    if scale == 1.0:  # second derivatives: sum-of-exp path only (see cox.py)
        assert torch.autograd.gradgradcheck(lambda z: cox_nll(z, t, e, ties=ties), (eta,))


def test_survival_cox_nll_invariances() -> None:
    rng = np.random.default_rng(1)
    t = rng.integers(1, 10, 50).astype(float)
    e = rng.random(50) < 0.5
    eta = rng.normal(size=50)
    base = float(cox_nll(*_t(eta, t, e)))
    perm = rng.permutation(50)
    assert float(cox_nll(*_t(eta[perm], t[perm], e[perm]))) == pytest.approx(base, rel=1e-13)
    assert float(cox_nll(*_t(eta + 123.0, t, e))) == pytest.approx(base, rel=1e-12)
    assert float(cox_nll(*_t(eta[:, None], t, e))) == pytest.approx(base, rel=1e-15)


def test_survival_cox_nll_batch_without_events_is_zero_with_zero_gradient() -> None:
    eta = torch.randn(4, dtype=torch.float64, requires_grad=True)
    loss = cox_nll(eta, torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.zeros(4, dtype=torch.bool))
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert torch.equal(eta.grad, torch.zeros(4, dtype=torch.float64))


def test_survival_cox_nll_rejects_bad_input() -> None:
    eta = torch.zeros(3)
    t = torch.tensor([1.0, 2.0, 3.0])
    e = torch.tensor([True, False, True])
    with pytest.raises(TaskError, match="ties must be 'efron' or 'breslow'"):
        cox_nll(eta, t, e, ties="exact")
    with pytest.raises(TaskError, match="reduction must be"):
        cox_nll(eta, t, e, reduction="none")
    with pytest.raises(
        SurvivalDataError, match=r"time must be finite and > 0, received -1.0 at batch index 1"
    ):
        cox_nll(eta, torch.tensor([1.0, -1.0, 3.0]), e)
    with pytest.raises(SurvivalDataError, match="expected 3 .time, event. pairs"):
        cox_nll(eta, t[:2], e[:2])
    with pytest.raises(TaskError, match="float tensor"):
        cox_nll(torch.zeros(3, dtype=torch.long), t, e)


def test_survival_breslow_baseline_matches_scikit_survival() -> None:
    from sksurv.datasets import load_veterans_lung_cancer
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    x, y = load_veterans_lung_cancer()
    x = x.select_dtypes("number").to_numpy(float)
    t, e = y["Survival_in_days"].astype(float), y["Status"].astype(bool)
    est = CoxPHSurvivalAnalysis(ties="breslow").fit(x, y)
    eta = x @ est.coef_
    times, h0 = breslow_cumulative_hazard(eta, t, e)
    fns = est.predict_survival_function(x[:5])
    ours = np.exp(-np.outer(np.exp(eta[:5]), h0))
    theirs = np.stack([fn(times) for fn in fns])
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def _grad(weights: torch.Tensor, loss_fn) -> torch.Tensor:
    w = weights.clone().requires_grad_(True)
    loss_fn(w).backward()
    return w.grad


def test_survival_memory_bank_removes_the_small_batch_gradient_bias() -> None:
    """Batches of 4 from a Weibull cohort, 3 epochs: averaged over the batches, the plain
    per-batch gradient is shrunk (~55 % of the full-data gradient); the bank's is unbiased."""
    rng = np.random.default_rng(0)
    n, d = 400, 3
    x = torch.as_tensor(rng.normal(size=(n, d)))
    true_w = np.array([1.0, -0.5, 0.25])
    t = torch.as_tensor(rng.weibull(1.5, n) * np.exp(-(x.numpy() @ true_w) / 1.5) + 1e-3)
    c = torch.as_tensor(rng.exponential(2.0, n))
    e = t <= c
    t = torch.minimum(t, c)
    w0 = torch.zeros(d, dtype=torch.float64)
    full = _grad(w0, lambda w: cox_nll(x @ w, t, e))
    bank = CoxMemoryBank(size=128)
    plain, banked = [], []
    for _ in range(3):
        perm = torch.as_tensor(rng.permutation(n))
        for start in range(0, n, 4):
            b = perm[start : start + 4]
            plain.append(_grad(w0, lambda w, b=b: cox_nll(x[b] @ w, t[b], e[b])))
            banked.append(_grad(w0, lambda w, b=b: bank.loss(x[b] @ w, t[b], e[b])))
    plain_bias = float(((torch.stack(plain[40:]).mean(0) - full) ** 2).sum())
    bank_bias = float(((torch.stack(banked[40:]).mean(0) - full) ** 2).sum())
    assert bank_bias < plain_bias / 20
    assert bank_bias < 0.01 * float((full**2).sum())
    assert len(bank) == 128


def test_survival_memory_bank_gives_the_full_data_gradient_when_it_holds_the_rest() -> None:
    """Bank = every other sample with current log-hazards: batch gradients are exact."""
    rng = np.random.default_rng(2)
    n, batch = 30, 3
    t = torch.as_tensor(rng.integers(1, 8, n).astype(float))
    e = torch.as_tensor(rng.random(n) < 0.6)
    e[:batch] = torch.tensor([True, False, False])
    eta = torch.as_tensor(rng.normal(size=n))
    bank = CoxMemoryBank(size=n - batch)
    bank.loss(eta[batch:], t[batch:], e[batch:])
    full = eta.clone().requires_grad_(True)
    cox_nll(full, t, e, reduction="mean").backward()
    mine = eta[:batch].clone().requires_grad_(True)
    bank.loss(mine, t[:batch], e[:batch], update=False).backward()
    # d(bank loss)/d(eta_j) = N / B * d(full mean loss)/d(eta_j): the unbiased minibatch scale
    torch.testing.assert_close(mine.grad, full.grad[:batch] * n / batch, rtol=1e-12, atol=1e-14)
    assert float(mine.grad[1].abs()) > 0  # censored samples get their gradient too


def test_survival_memory_bank_rejects_bad_size() -> None:
    with pytest.raises(TaskError, match="memory bank size must be an int >= 0"):
        CoxMemoryBank(size=-1)
