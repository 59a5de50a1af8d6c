"""Harrell's and Uno's C against scikit-survival on its bundled real datasets, and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hidim.errors import EvaluationError, SurvivalDataError
from hidim.evaluate import concordance_counts, concordance_index, concordance_index_ipcw


def _dataset(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import sksurv.datasets as ds

    x, y = getattr(ds, name)()
    event_field, time_field = y.dtype.names
    t, e = y[time_field].astype(float), y[event_field].astype(bool)
    keep = t > 0  # flchain has follow-up 0 (hidim requires time > 0, see the error test)
    x = x.select_dtypes("number").fillna(0.0).to_numpy(float)[keep]
    return x, t[keep], e[keep]


DATASETS = ["load_whas500", "load_gbsg2", "load_veterans_lung_cancer", "load_flchain"]


@pytest.mark.parametrize("name", DATASETS)
def test_evaluate_harrell_c_equals_sksurv_on_real_data(name) -> None:
    from sksurv.metrics import concordance_index_censored

    x, t, e = _dataset(name)
    rng = np.random.default_rng(0)
    risks = {
        "linear": x @ rng.normal(size=x.shape[1]),
        "one column (tied risks)": x[:, 0],
        "coarse (many ties)": rng.integers(0, 4, t.shape[0]).astype(float),
        "near ties at tol": np.round(x[:, 0], 0) + rng.choice([0, 1e-8, 2e-8, 5e-9], t.shape[0]),
    }
    assert len(np.unique(t)) < t.shape[0]  # tied times present
    for label, r in risks.items():
        c, conc, disc, tied_r, tied_t = concordance_index_censored(e, t, r)
        ours = concordance_counts(t, e, r)
        assert abs(ours.cindex - c) < 1e-12, label
        assert (ours.concordant, ours.discordant, ours.tied_risk, ours.tied_time) == (
            conc,
            disc,
            tied_r,
            tied_t,
        ), label


@pytest.mark.parametrize("name", ["load_whas500", "load_gbsg2", "load_veterans_lung_cancer"])
def test_evaluate_uno_c_equals_sksurv_on_real_data(name) -> None:
    from sksurv.metrics import concordance_index_ipcw as sk_ipcw
    from sksurv.util import Surv

    x, t, e = _dataset(name)
    r = x @ np.random.default_rng(1).normal(size=x.shape[1])
    train = np.arange(t.shape[0]) % 2 == 0
    y_tr, y_te = Surv.from_arrays(e[train], t[train]), Surv.from_arrays(e[~train], t[~train])
    tau = np.quantile(t[train], 0.8)
    expected = sk_ipcw(y_tr, y_te, r[~train], tau=tau)[0]
    got = concordance_index_ipcw(
        t[~train], e[~train], r[~train], train_time=t[train], train_event=e[train], tau=tau
    )
    assert abs(got - expected) < 1e-12
    # without truncation, where test times stay inside the training follow-up
    inside = t[~train] < t[train].max()
    expected = sk_ipcw(y_tr, y_te[inside], r[~train][inside])[0]
    got = concordance_index_ipcw(
        t[~train][inside],
        e[~train][inside],
        r[~train][inside],
        train_time=t[train],
        train_event=e[train],
    )
    assert abs(got - expected) < 1e-12


def test_evaluate_harrell_c_equals_lifelines_when_no_event_is_tied_with_a_censoring() -> None:
    """lifelines and scikit-survival differ on one rule only: an event and a censoring at the
    same time are comparable in sksurv (and hidim), not in lifelines. Censoring half a week
    after the events of the same week removes the difference; lifelines also treats only
    exactly equal risks as tied (``tied_tol=0``)."""
    from lifelines.datasets import load_rossi
    from lifelines.utils import concordance_index as ll_c

    df = load_rossi()
    e = df["arrest"].to_numpy(bool)
    t = df["week"].to_numpy(float) + np.where(e, 0.0, 0.5)
    r = df["age"].to_numpy(float) * -0.05 + df["prio"].to_numpy(float) * 0.1
    assert abs(concordance_index(t, e, r, tied_tol=0.0) - ll_c(t, -r, e)) < 1e-12


survival_data = st.integers(min_value=3, max_value=60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 12), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.lists(st.floats(-5, 5, allow_nan=False), min_size=n, max_size=n),
    )
)


def _usable(t: np.ndarray, e: np.ndarray) -> bool:
    return bool(e.any()) and any(((t > ti) | ((t == ti) & ~e)).any() for ti in t[e])


@settings(max_examples=60, deadline=None)
@given(survival_data)
def test_evaluate_c_is_invariant_to_monotone_transforms_of_risk(data) -> None:
    t, e, r = (np.asarray(a) for a in data)
    t, e, r = t.astype(float), e.astype(bool), np.round(r.astype(float), 2)
    if not _usable(t, e):
        return
    c = concordance_index(t, e, r, tied_tol=0.0)
    assert concordance_index(t, e, np.exp(r / 2) * 3 + 1, tied_tol=0.0) == pytest.approx(
        c, abs=1e-12
    )
    assert concordance_index(t, e, np.arctan(r), tied_tol=0.0) == pytest.approx(c, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(survival_data)
def test_evaluate_reversed_risk_gives_one_minus_c_without_ties(data) -> None:
    t, e, _ = (np.asarray(a) for a in data)
    t, e = t.astype(float), e.astype(bool)
    if not _usable(t, e):
        return
    r = np.random.default_rng(int(t.sum())).permutation(t.shape[0]).astype(float)  # no ties
    assert concordance_index(t, e, -r) == pytest.approx(1.0 - concordance_index(t, e, r), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(survival_data)
def test_evaluate_c_equals_sksurv_on_random_small_data(data) -> None:
    from sksurv.metrics import concordance_index_censored

    t, e, r = (np.asarray(a) for a in data)
    t, e, r = t.astype(float), e.astype(bool), np.round(r.astype(float), 1)
    if not _usable(t, e):
        return
    assert concordance_index(t, e, r) == pytest.approx(
        concordance_index_censored(e, t, r)[0], abs=1e-12
    )


def test_evaluate_c_perfect_and_reversed_ranking() -> None:
    t = np.arange(1.0, 11.0)
    e = np.ones(10, dtype=bool)
    assert concordance_index(t, e, -t) == 1.0
    assert concordance_index(t, e, t) == 0.0
    assert concordance_index(t, e, np.zeros(10)) == 0.5


def test_evaluate_c_rejects_bad_input() -> None:
    t = np.array([1.0, 2.0, 3.0])
    with pytest.raises(SurvivalDataError, match="All samples are censored"):
        concordance_index(t, [False, False, False], [1.0, 2.0, 3.0])
    with pytest.raises(SurvivalDataError, match=r"time must be > 0, received 0.0 at index 1"):
        concordance_index([1.0, 0.0, 3.0], [True, True, False], [1.0, 2.0, 3.0])
    with pytest.raises(
        SurvivalDataError, match=r"event must be boolean or 0/1, received 2 at index 2"
    ):
        concordance_index(t, [1, 0, 2], [1.0, 2.0, 3.0])
    with pytest.raises(
        EvaluationError, match=r"risk: expected finite values, received nan at index 0"
    ):
        concordance_index(t, [True, True, False], [np.nan, 2.0, 3.0])
    with pytest.raises(EvaluationError, match="one entry per sample"):
        concordance_index(t, [True, True, False], [1.0, 2.0])
    with pytest.raises(EvaluationError, match="no comparable pairs"):
        concordance_index([1.0, 2.0], [False, True], [1.0, 2.0])


def test_evaluate_uno_c_rejects_times_beyond_training_follow_up() -> None:
    with pytest.raises(EvaluationError, match="largest training follow-up time"):
        concordance_index_ipcw(
            [1.0, 5.0, 9.0],
            [True, True, False],
            [3.0, 2.0, 1.0],
            train_time=[1.0, 2.0, 3.0],
            train_event=[True, False, True],
        )
