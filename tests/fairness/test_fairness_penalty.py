"""Fairness penalties: finite with missing groups and tiny batches, and they reduce the gap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sksurv.metrics import concordance_index_censored

from hidim.errors import TrainingError
from hidim.training.fairness import (
    PENALTY_KINDS,
    build_penalty,
    concordance_gap,
    group_means,
    spread,
)

SURVIVAL = {"concordance_gap"}


def _batch(codes, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(codes)
    return {
        "group__eth": torch.tensor(codes, dtype=torch.long),
        "target": (torch.rand(n, generator=g) < 0.5).float(),
        "time": torch.rand(n, generator=g) * 10 + 0.1,
        "event": torch.rand(n, generator=g) < 0.6,
    }


@settings(max_examples=60, deadline=None)
@given(
    codes=st.lists(st.integers(min_value=-1, max_value=4), min_size=1, max_size=12),
    kind=st.sampled_from(PENALTY_KINDS),
    reduction=st.sampled_from(["mean_abs", "max_gap", "variance"]),
    survival=st.booleans(),
)
def test_penalty_is_finite_with_finite_gradients_for_any_group_pattern(
    codes, kind, reduction, survival
) -> None:
    """Absent groups, only-missing codes, one group, batch of one: never NaN (FairTorch's bug)."""
    if kind == "concordance_gap":
        survival = True
    if kind in ("demographic_parity", "equalized_odds"):
        survival = False
    pen = build_penalty(kind=kind, group="eth", weight=2.0, reduction=reduction)
    z = torch.randn(len(codes), requires_grad=True)
    outputs = {"risk": z, "score": z} if survival else {"logits": z, "score": torch.sigmoid(z)}
    value = pen(outputs, _batch(codes))
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)
    assert torch.isfinite(z.grad).all()
    if len({c for c in codes if c >= 0}) < 2:
        assert float(value.detach()) == 0.0


def test_group_means_ignore_missing_and_absent_groups() -> None:
    means, counts = group_means(torch.tensor([1.0, 3.0, 5.0, 7.0]), torch.tensor([0, 0, -1, 2]))
    assert means.tolist() == [2.0, 0.0, 7.0] and counts.tolist() == [2.0, 0.0, 1.0]
    gap = spread(means, counts >= 1, torch.tensor(4.0), reduction="max_gap")
    assert float(gap) == 5.0


def test_concordance_gap_tracks_sksurv_c_index_difference() -> None:
    rng = np.random.default_rng(0)
    n = 80
    groups = np.repeat([0, 1], n // 2)
    risk = rng.normal(size=n)
    time = np.where(groups == 0, np.exp(-risk), rng.exponential(1.0, n)) + 0.01
    event = rng.random(n) < 0.8
    gap = concordance_gap(
        torch.tensor(risk), torch.tensor(time), torch.tensor(event), torch.tensor(groups),
        temperature=1e-3, reduction="max_gap",
    )  # fmt: skip
    c = [concordance_index_censored(event[groups == k], time[groups == k], risk[groups == k])[0]
         for k in (0, 1)]  # fmt: skip
    assert float(gap) == pytest.approx(abs(c[0] - c[1]), abs=0.01)


def _toy(seed: int = 0):
    """Labels depend on x0; group 1 has shifted x0, so an unconstrained model selects it more."""
    g = torch.Generator().manual_seed(seed)
    n = 400
    group = (torch.rand(n, generator=g) < 0.4).long()
    x = torch.randn(n, 2, generator=g)
    x[:, 0] += 1.2 * group
    y = ((x[:, 0] + 0.5 * torch.randn(n, generator=g)) > 0.6).float()
    return x, y, group


def _fit(kind: str | None, weight: float, seed: int = 0):
    torch.manual_seed(seed)
    x, y, group = _toy()
    lin = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(lin.parameters(), lr=0.05)
    pen = build_penalty(kind=kind, group="eth", weight=weight) if kind else None
    gen = torch.Generator().manual_seed(seed)
    for _ in range(150):
        idx = torch.randint(0, len(y), (32,), generator=gen)
        z = lin(x[idx])[:, 0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y[idx])
        if pen is not None:
            loss = loss + pen({"logits": z}, {"group__eth": group[idx], "target": y[idx]})
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        p = torch.sigmoid(lin(x)[:, 0])
    sel = [float((p[group == k] >= 0.5).float().mean()) for k in (0, 1)]
    acc = float(((p >= 0.5).float() == y).float().mean())
    return abs(sel[1] - sel[0]), acc


def test_demographic_parity_penalty_reduces_the_gap_at_a_cost() -> None:
    gap0, acc0 = _fit(None, 0.0)
    gap1, acc1 = _fit("demographic_parity", 5.0)
    assert gap0 > 0.3
    assert gap1 < 0.5 * gap0
    assert acc1 <= acc0 + 0.01  # fairness is not free here


def test_build_penalty_validates_its_options() -> None:
    with pytest.raises(TrainingError, match="Did you mean 'equalized_odds'"):
        build_penalty(kind="equalised_odds", group="eth", weight=1.0)
    with pytest.raises(TrainingError, match="weight must be >= 0"):
        build_penalty(kind="demographic_parity", group="eth", weight=-1.0)
    with pytest.raises(TrainingError, match="unknown fairness options \\['lambda'\\]"):
        build_penalty(kind="demographic_parity", group="eth", weight=1.0, **{"lambda": 1})
    with pytest.raises(TrainingError, match="unknown reduction"):
        build_penalty(kind="demographic_parity", group="eth", weight=1.0, reduction="sum")
    pen = build_penalty(kind="demographic_parity", group="eth", weight=1.0)
    with pytest.raises(TrainingError, match="list 'eth' in data.group_columns"):
        pen({"logits": torch.zeros(3)}, {"target": torch.zeros(3)})
    with pytest.raises(TrainingError, match="'risk' or 'score'"):
        build_penalty(kind="concordance_gap", group="eth", weight=1.0)({"x": torch.zeros(2)},
                                                                        _batch([0, 1]))  # fmt: skip
