"""Survival heads: contract, training on a synthetic Weibull cohort, discretisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hidim.errors import SurvivalDataError, TaskError
from hidim.evaluate import concordance_index
from hidim.tasks.base import Head, get_head
from hidim.tasks.survival import (
    CoxHead,
    DeepHitHead,
    DiscreteHazardHead,
    SurvivalTarget,
    discretize,
    make_time_grid,
)

SURVIVAL_HEADS = ["cox", "deephit", "discrete_hazard"]


def _cohort(n: int, seed: int, d: int = 5):
    """Weibull proportional hazards: T = (E / exp(x.beta))^(1/k), uniform censoring."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    beta = np.linspace(1.0, -0.6, d)
    eta = x @ beta
    k = 1.5
    t = (rng.exponential(size=n) / np.exp(eta)) ** (1 / k)
    c = rng.uniform(0.2, 4.0, n)
    time = np.round(np.minimum(t, c), 2) + 0.01  # rounded: tied times
    return x.astype(np.float32), time, t <= c, eta


@pytest.mark.parametrize("name", SURVIVAL_HEADS)
def test_survival_head_contract(name) -> None:
    x, t, e, _ = _cohort(64, 0)
    head = get_head(name)(in_features=5)
    assert isinstance(head, Head) and head.task == "survival"
    head.fit_time_grid(t, e)
    feats = torch.as_tensor(x)
    out = head(feats)
    batch = {"time": torch.as_tensor(t), "event": torch.as_tensor(e)}
    loss = head.loss(out, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in head.parameters())
    if isinstance(head, CoxHead):
        head.fit_baseline(out["log_hazard"].detach(), t, e)
    pred = head.predict(out)
    assert pred["score"].shape == (64,) and pred["risk"].shape == (64,)
    surv = pred["survival"]
    assert surv.shape == (64, head.survival_times.shape[0])
    assert bool(((surv >= 0) & (surv <= 1)).all())
    assert bool((surv.diff(dim=1) <= 1e-6).all())  # non-increasing in time
    # grid and baseline travel in the state dict
    clone = get_head(name)(in_features=5)
    clone.load_state_dict(head.state_dict())
    torch.testing.assert_close(clone.predict(clone(feats))["survival"], surv)
    with pytest.raises(SurvivalDataError, match="need batch keys 'time' and 'event'"):
        head.loss(out, {"time": batch["time"]})


@pytest.mark.parametrize("name", ["deephit", "discrete_hazard"])
def test_survival_discrete_heads_need_a_time_grid(name) -> None:
    head = get_head(name)(in_features=3, n_bins=4)
    out = head(torch.zeros(2, 3))
    with pytest.raises(TaskError, match=r"call head.fit_time_grid\(train_time, train_event\)"):
        head.loss(out, {"time": torch.tensor([1.0, 2.0]), "event": torch.tensor([True, False])})


def _train(head: torch.nn.Module, x, t, e, *, epochs: int, batch: int, lr: float) -> None:
    gen = torch.Generator().manual_seed(0)
    feats, time, event = torch.as_tensor(x), torch.as_tensor(t), torch.as_tensor(e)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    head.train()
    for _ in range(epochs):
        perm = torch.randperm(len(time), generator=gen)
        for s in range(0, len(time), batch):
            b = perm[s : s + batch]
            loss = head.loss(head(feats[b]), {"time": time[b], "event": event[b]})
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()


@pytest.mark.parametrize(
    "make",
    [
        lambda: CoxHead(in_features=5),
        lambda: CoxHead(in_features=5, memory_size=256),
        lambda: DeepHitHead(in_features=5, n_bins=15),
        lambda: DiscreteHazardHead(in_features=5, n_bins=15),
        lambda: DiscreteHazardHead(in_features=5, n_bins=15, proportional=True),
    ],
    ids=["cox", "cox+bank", "deephit", "discrete_hazard", "discrete_hazard_ph"],
)
def test_survival_heads_reach_the_true_risk_concordance(make) -> None:
    torch.manual_seed(0)
    x, t, e, _ = _cohort(1500, 1)
    xt, tt, et, eta_test = _cohort(1000, 2)
    head = make()
    head.fit_time_grid(t, e)
    small = isinstance(head, CoxHead) and head.bank.size > 0
    _train(head, x, t, e, epochs=3 if small else 15, batch=8 if small else 64, lr=0.02)
    with torch.no_grad():
        out = head(torch.as_tensor(xt))
        if isinstance(head, CoxHead):
            head.fit_baseline(head(torch.as_tensor(x))["log_hazard"], t, e)
        score = head.predict(out)["score"].numpy()
    c_true = concordance_index(tt, et, eta_test)
    c_model = concordance_index(tt, et, score)
    assert c_model > c_true - 0.02, (c_model, c_true)


def test_survival_cox_head_survival_curve_matches_the_true_weibull() -> None:
    torch.manual_seed(0)
    x, t, e, _ = _cohort(3000, 3)
    head = CoxHead(in_features=5, n_times=10)
    _train(head, x, t, e, epochs=10, batch=256, lr=0.05)
    with torch.no_grad():
        head.fit_baseline(head(torch.as_tensor(x))["log_hazard"], t, e)
        pred = head.predict(head(torch.as_tensor(x[:200])))
    grid = head.survival_times.numpy()
    beta = np.linspace(1.0, -0.6, 5)
    true = np.exp(-np.exp(x[:200].astype(float) @ beta)[:, None] * grid[None, :] ** 1.5)
    assert np.abs(pred["survival"].numpy() - true).mean() < 0.03


def test_survival_make_time_grid_and_discretize() -> None:
    t = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0])
    e = np.array([True, True, False, True, True, False, True, False])
    edges = make_time_grid(t, 2, event=e)
    np.testing.assert_allclose(edges, [0.0, np.quantile([0.5, 1, 2, 2.5, 3.5], 0.5), 3.5])
    np.testing.assert_allclose(make_time_grid(t, 4, scheme="equidistant"), [0, 1, 2, 3, 4])
    idx, ev = discretize(t, e, [0.0, 1.0, 2.0, 3.0])
    # events: interval (e_k, e_k+1]; censored: survived intervals, midpoint rule; beyond grid
    np.testing.assert_array_equal(idx, [0, 0, 2, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(ev, [True, True, False, True, True, False, False, False])
    idx_left, _ = discretize(t, e, [0.0, 1.0, 2.0, 3.0], censored="left")
    assert idx_left[2] == 1 and idx_left[5] == 2
    with pytest.raises(TaskError, match="distinct event times cannot make 10 intervals"):
        make_time_grid(t, 10, event=e)
    with pytest.raises(TaskError, match="start at 0 and increase strictly"):
        discretize(t, e, [0.0, 2.0, 1.0])


def test_survival_target_validates_like_scikit_survival() -> None:
    y = SurvivalTarget.from_arrays([3.0, 1.0, 2.0], [1, 0, 1])
    assert y.n_events == 2 and len(y) == 3
    rec = y.to_structured()
    assert rec.dtype.names == ("event", "time")
    back = SurvivalTarget.from_structured(rec)
    np.testing.assert_array_equal(back.time, y.time)
    with pytest.raises(SurvivalDataError, match="All samples are censored"):
        SurvivalTarget.from_arrays([1.0, 2.0], [False, False])
    with pytest.raises(SurvivalDataError, match=r"time must be > 0, received -2.0 at index 1"):
        SurvivalTarget.from_arrays([1.0, -2.0], [True, False])
    with pytest.raises(SurvivalDataError, match=r"time must be finite, received nan at index 0"):
        SurvivalTarget.from_arrays([np.nan, 2.0], [True, False])
    with pytest.raises(SurvivalDataError, match="different lengths"):
        SurvivalTarget.from_arrays([1.0, 2.0], [True])
    with pytest.raises(SurvivalDataError, match="event must be boolean"):
        SurvivalTarget.from_arrays([1.0, 2.0], ["yes", "no"])
    with pytest.raises(SurvivalDataError, match="structured array"):
        SurvivalTarget.from_structured(np.zeros(3))
    assert SurvivalTarget.from_arrays([1.0], [False], allow_all_censored=True).n_events == 0
