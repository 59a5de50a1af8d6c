"""Survival metrics: concordance, time-dependent AUC, Brier / integrated Brier, calibration.

The IPCW metrics follow scikit-survival's definitions exactly (``cumulative_dynamic_auc``,
``brier_score``, ``integrated_brier_score``), estimating the censoring distribution by
Kaplan-Meier on the *training* data. Concordance lives in :mod:`hidim.evaluate.concordance`
and is re-exported here. Calibration: D-calibration (Haider et al., JMLR 2020) over the whole
curve and 1-calibration (Hosmer-Lemeshow with Kaplan-Meier) at one horizon.

Inputs are numpy arrays (or anything ``np.asarray`` takes); every metric validates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import chi2

from hidim.errors import EvaluationError
from hidim.evaluate._validation import as_1d_float, as_2d_float, check_same_length, to_numpy
from hidim.evaluate.concordance import (
    ConcordanceResult,
    censoring_survival,
    concordance_counts,
    concordance_index,
    concordance_index_ipcw,
)
from hidim.evaluate.kaplan_meier import kaplan_meier, step_at
from hidim.tasks.survival_target import check_survival_arrays

__all__ = [
    "ConcordanceResult",
    "concordance_index",
    "concordance_counts",
    "concordance_index_ipcw",
    "cumulative_dynamic_auc",
    "brier_score",
    "integrated_brier_score",
    "survival_at",
    "CalibrationTest",
    "d_calibration",
    "one_calibration",
]


def _check_times(times: Any, test_time: np.ndarray) -> np.ndarray:
    tau = as_1d_float(np.atleast_1d(to_numpy(times)), "times")
    if not (np.diff(tau) > 0).all():
        raise EvaluationError("times must increase strictly (sort and de-duplicate them)")
    if tau.min() < test_time.min() or tau.max() >= test_time.max():
        raise EvaluationError(
            f"all times must lie within the test follow-up [{test_time.min()}; "
            f"{test_time.max()}[; received [{tau.min()}, {tau.max()}]"
        )
    return tau


def _estimate_2d(estimate: Any, n: int, n_times: int, name: str) -> np.ndarray:
    est = to_numpy(estimate)
    if est.ndim == 1:
        est = as_1d_float(est, name)
        check_same_length(time=np.empty(n), **{name: est})
        return np.broadcast_to(est[:, None], (n, n_times))
    est = as_2d_float(est, name, n_rows=n)
    if est.shape[1] != n_times:
        raise EvaluationError(
            f"{name}: expected {n_times} columns (one per time), received {est.shape[1]}"
        )
    return est


def cumulative_dynamic_auc(
    time: Any,
    event: Any,
    risk: Any,
    times: Any,
    *,
    train_time: Any,
    train_event: Any,
    tied_tol: float = 1e-8,
) -> tuple[np.ndarray, float]:
    """Cumulative/dynamic time-dependent AUC with IPCW (Uno 2007, Hung & Chiang 2010).

    Cases at ``t``: events with ``T_i <= t`` (weighted ``1 / G(T_i)``); controls:
    ``T_j > t``. Equals ``sksurv.metrics.cumulative_dynamic_auc``.

    Args:
        time, event: ``[n]`` test survival data.
        risk: ``[n]`` risk (higher = earlier event) or ``[n, n_times]`` time-dependent risk
            (e.g. ``1 - S(t)``).
        times: ``[n_times]`` increasing evaluation times inside the test follow-up.
        train_time, train_event: training data for the censoring distribution.
        tied_tol: tolerance for tied risks.

    Returns:
        ``(auc [n_times], mean_auc)``; the mean is weighted by the Kaplan-Meier estimate of
        the test survival function (Lambert & Chevret 2014).
    """
    t, e = check_survival_arrays(time, event, name="test data")
    tt, te = check_survival_arrays(train_time, train_event, name="training data (censoring)")
    tau = _check_times(times, t)
    n, k = t.shape[0], tau.shape[0]
    est = _estimate_2d(risk, n, k, "risk")
    ipcw = np.zeros(n)
    g = censoring_survival(tt, te, t[e])
    if (g == 0).any():
        raise EvaluationError("censoring survival is zero at a test event time; truncate times")
    ipcw[e] = 1.0 / g
    order = np.argsort(-est, axis=0, kind="stable")
    t2 = t[order]
    e2 = e[order]
    w2 = ipcw[order]
    est_sorted = np.take_along_axis(est, order, axis=0)
    is_case = (t2 <= tau[None, :]) & e2
    is_control = t2 > tau[None, :]
    n_controls = is_control.sum(axis=0)
    if (n_controls == 0).any() or (is_case.sum(axis=0) == 0).any():
        raise EvaluationError("each time needs at least one case and one control")
    diff = np.diff(np.concatenate([np.full((1, k), np.inf), est_sorted]), axis=0)
    is_tied = np.abs(diff) <= tied_tol
    cum_tp = np.cumsum(is_case * w2, axis=0)
    tpr = cum_tp / cum_tp[-1]
    fpr = np.cumsum(is_control, axis=0) / n_controls
    auc = np.empty(k)
    for j in range(k):
        keep = np.ones(n, dtype=bool)
        keep[np.flatnonzero(is_tied[:, j]) - 1] = False  # last of a tied run only
        auc[j] = np.trapezoid(np.r_[0.0, tpr[keep, j]], np.r_[0.0, fpr[keep, j]])
    if k == 1:
        return auc, float(auc[0])
    s = kaplan_meier(t, e)(tau)
    weight = -np.diff(np.r_[1.0, s])
    return auc, float((auc * weight).sum() / (1.0 - s[-1]))


def brier_score(
    time: Any,
    event: Any,
    survival: Any,
    times: Any,
    *,
    train_time: Any,
    train_event: Any,
) -> np.ndarray:
    """Time-dependent Brier score with IPCW (Graf et al. 1999); equals sksurv's ``brier_score``.

    Args:
        time, event: ``[n]`` test survival data.
        survival: ``[n, n_times]`` predicted ``S(t)`` at ``times`` (``[n]`` if one time).
        times: ``[n_times]`` increasing evaluation times inside the test follow-up.
        train_time, train_event: training data for the censoring distribution.

    Returns:
        ``[n_times]`` Brier scores (lower is better; 0.25 = uninformative at S = 0.5).
    """
    t, e = check_survival_arrays(time, event, name="test data")
    tt, te = check_survival_arrays(train_time, train_event, name="training data (censoring)")
    tau = _check_times(times, t)
    est = _estimate_2d(survival, t.shape[0], tau.shape[0], "survival")
    if (est < 0).any() or (est > 1).any():
        raise EvaluationError("survival: expected probabilities in [0, 1] (not risk scores)")
    g_tau = censoring_survival(tt, te, tau)
    g_tau[g_tau == 0] = np.inf
    g_y = censoring_survival(tt, te, t)
    g_y[g_y == 0] = np.inf
    is_case = (t[:, None] <= tau[None, :]) & e[:, None]
    is_control = t[:, None] > tau[None, :]
    return np.mean(
        np.square(est) * is_case / g_y[:, None]
        + np.square(1.0 - est) * is_control / g_tau[None, :],
        axis=0,
    )


def integrated_brier_score(
    time: Any,
    event: Any,
    survival: Any,
    times: Any,
    *,
    train_time: Any,
    train_event: Any,
) -> float:
    """Integrated Brier score: trapezoid over ``times`` divided by their span (sksurv's IBS)."""
    tau = as_1d_float(np.atleast_1d(to_numpy(times)), "times")
    if tau.shape[0] < 2:
        raise EvaluationError("integrated Brier score: need at least two time points")
    bs = brier_score(time, event, survival, tau, train_time=train_time, train_event=train_event)
    return float(np.trapezoid(bs, tau) / (tau[-1] - tau[0]))


def survival_at(survival: Any, grid: Any, at: Any) -> np.ndarray:
    """Each sample's predicted ``S`` at its own time: ``S_i(at_i)`` ``[n]``.

    Args:
        survival: ``[n, n_times]`` curves on ``grid`` (right-continuous steps, 1 before
            ``grid[0]``).
        grid: ``[n_times]`` increasing times.
        at: ``[n]`` times (e.g. each sample's observed time).
    """
    g = as_1d_float(grid, "grid")
    s = as_2d_float(survival, "survival")
    a = as_1d_float(at, "at")
    check_same_length(survival=s, at=a)
    pos = np.searchsorted(g, a, side="right") - 1
    return np.where(pos >= 0, s[np.arange(s.shape[0]), np.maximum(pos, 0)], 1.0)


@dataclass(frozen=True)
class CalibrationTest:
    """A chi-square calibration test.

    Attributes:
        statistic: chi-square statistic.
        p_value: ``P(chi2_dof > statistic)``; small = evidence of miscalibration.
        dof: degrees of freedom.
        expected: ``[bins]`` expected proportion (D-cal) or mean predicted event probability.
        observed: ``[bins]`` observed proportion (D-cal) or Kaplan-Meier event probability.
        counts: ``[bins]`` samples per bin (fractional for D-calibration).
    """

    statistic: float
    p_value: float
    dof: int
    expected: np.ndarray
    observed: np.ndarray
    counts: np.ndarray


def d_calibration(event: Any, survival_at_time: Any, *, n_bins: int = 10) -> CalibrationTest:
    """D-calibration (Haider et al. 2020): are ``S_i(T_i)`` uniform on [0, 1]?

    Events put their mass in the bin holding ``S_i(T_i)``; a sample censored at ``c`` with
    ``s = S_i(c)`` spreads its mass uniformly over ``[0, s]`` (bin holding ``s`` gets
    ``(s - lower) / s``, bins wholly below get ``width / s``).

    Args:
        event: ``[n]`` bool.
        survival_at_time: ``[n]`` predicted ``S_i(T_i)`` (see :func:`survival_at`).
        n_bins: number of equal-width bins of [0, 1].
    """
    e = check_survival_arrays(np.ones(np.shape(to_numpy(event))), event, name="D-calibration")[1]
    s = as_1d_float(survival_at_time, "survival_at_time")
    check_same_length(event=e, survival_at_time=s)
    if (s < 0).any() or (s > 1).any():
        raise EvaluationError("survival_at_time must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.zeros(n_bins)
    b = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, n_bins - 1)
    np.add.at(counts, b[e], 1.0)
    cs, cb = s[~e], b[~e]
    width = 1.0 / n_bins
    with np.errstate(divide="ignore", invalid="ignore"):
        own = np.where(cs > 0, (cs - edges[cb]) / cs, 1.0)
        below = np.where(cs > 0, width / cs, 0.0)
    np.add.at(counts, cb, own)
    # bins strictly below the own bin get `below` each: a difference array over bin index
    add = np.zeros(n_bins + 1)
    np.add.at(add, np.zeros_like(cb), below)
    np.add.at(add, cb, -below)
    counts += np.cumsum(add)[:-1]
    n = s.shape[0]
    expected = np.full(n_bins, n / n_bins)
    stat = float(np.sum((counts - expected) ** 2 / expected))
    return CalibrationTest(
        statistic=stat,
        p_value=float(chi2.sf(stat, n_bins - 1)),
        dof=n_bins - 1,
        expected=expected / n,
        observed=counts / n,
        counts=counts,
    )


def one_calibration(
    time: Any, event: Any, survival_at_horizon: Any, horizon: float, *, n_bins: int = 10
) -> CalibrationTest:
    """1-calibration at ``horizon`` (Hosmer-Lemeshow with Kaplan-Meier, Haider et al. 2020).

    Samples are grouped into ``n_bins`` quantile bins of predicted event probability
    ``p = 1 - S(horizon)``; the observed probability in a bin is ``1 - KM(horizon)``.
    ``HL = sum_b n_b (O_b - E_b)^2 / (E_b (1 - E_b))``, chi-square with ``n_bins - 1``
    degrees of freedom.

    Args:
        time, event: ``[n]`` survival data.
        survival_at_horizon: ``[n]`` predicted ``S_i(horizon)``.
        horizon: the time (same unit as ``time``).
        n_bins: number of risk bins.
    """
    t, e = check_survival_arrays(time, event, name="1-calibration")
    s = as_1d_float(survival_at_horizon, "survival_at_horizon")
    check_same_length(time=t, survival_at_horizon=s)
    if not t.min() < horizon:
        raise EvaluationError(f"horizon {horizon} precedes every observed time")
    p = 1.0 - s
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, n_bins)
    expected, observed, counts = [], [], []
    for idx in bins:
        if idx.size == 0:
            continue
        km = kaplan_meier(t[idx], e[idx])
        observed.append(1.0 - float(step_at(km.time, km.survival, np.array([horizon]))[0]))
        expected.append(float(p[idx].mean()))
        counts.append(idx.size)
    ex, ob, cn = np.array(expected), np.array(observed), np.array(counts, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = cn * (ob - ex) ** 2 / (ex * (1 - ex))
    stat = float(np.nansum(np.where(np.isfinite(terms), terms, 0.0)))
    dof = max(len(ex) - 1, 1)
    return CalibrationTest(stat, float(chi2.sf(stat, dof)), dof, ex, ob, cn)
