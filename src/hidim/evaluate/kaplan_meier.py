"""Kaplan-Meier estimator, risk-group survival curves and their plot.

:func:`kaplan_meier` equals lifelines' ``KaplanMeierFitter`` (estimate and exponential
Greenwood confidence band) at every distinct observed time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from scipy.stats import norm

from hidim.errors import EvaluationError
from hidim.evaluate._validation import as_1d_float, check_same_length
from hidim.tasks.survival_target import check_survival_arrays

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "KaplanMeier",
    "kaplan_meier",
    "step_at",
    "RiskGroupCurves",
    "risk_group_curves",
    "plot_risk_group_curves",
]


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier curve.

    Attributes:
        time: ``[K]`` distinct observed times (events and censorings), ascending.
        survival: ``[K]`` ``S(t)`` just after each time (right-continuous step function).
        lower, upper: ``[K]`` pointwise ``1 - alpha`` exponential-Greenwood band.
        at_risk: ``[K]`` number at risk just before each time.
        events: ``[K]`` number of events at each time.
    """

    time: np.ndarray
    survival: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray

    def __call__(self, at: Any) -> np.ndarray:
        """``S`` evaluated at times ``at`` (1 before the first time)."""
        return step_at(self.time, self.survival, np.asarray(at, dtype=np.float64))


def step_at(
    knots: np.ndarray, values: np.ndarray, at: np.ndarray, *, before: float = 1.0
) -> np.ndarray:
    """Right-continuous step function through ``(knots, values)`` evaluated at ``at``."""
    pos = np.searchsorted(knots, at, side="right") - 1
    return np.where(pos >= 0, values[np.maximum(pos, 0)], before)


def kaplan_meier(time: Any, event: Any, *, alpha: float = 0.05) -> KaplanMeier:
    """Kaplan-Meier estimate of ``S(t) = P(T > t)``.

    Args:
        time: ``[n]`` times > 0.
        event: ``[n]`` bool (all-censored data is allowed: ``S = 1``).
        alpha: ``1 - alpha`` confidence level of the band (lifelines' default 0.05).

    Returns:
        :class:`KaplanMeier`.
    """
    t, e = check_survival_arrays(time, event, allow_all_censored=True, name="Kaplan-Meier")
    if not 0 < alpha < 1:
        raise EvaluationError(f"alpha must lie in (0, 1), received {alpha}")
    order = np.argsort(t, kind="stable")
    ts, es = t[order], e[order]
    uniq, first, size = np.unique(ts, return_index=True, return_counts=True)
    deaths = np.add.reduceat(es.astype(np.int64), first)
    at_risk = ts.shape[0] - np.r_[0, np.cumsum(size)[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.cumsum(np.log(at_risk - deaths) - np.log(at_risk))
        surv = np.exp(log_s)
        var = np.where(at_risk > deaths, deaths / (at_risk * (at_risk - deaths)), 0.0)
        cum_var = np.cumsum(var)
        z = norm.ppf(1 - alpha / 2)
        v = np.log(surv)
        lower = np.exp(-np.exp(np.log(-v) - z * np.sqrt(cum_var) / v))
        upper = np.exp(-np.exp(np.log(-v) + z * np.sqrt(cum_var) / v))
    lower = np.where(np.isnan(lower), 1.0, lower)
    upper = np.where(np.isnan(upper), 1.0, upper)
    return KaplanMeier(uniq, surv, lower, upper, at_risk, deaths)


@dataclass(frozen=True)
class RiskGroupCurves:
    """Kaplan-Meier curves of risk groups and the log-rank test between them.

    Attributes:
        labels: group names, lowest risk first (``"low"``, ``"medium"``, ``"high"``...).
        curves: one :class:`KaplanMeier` per group.
        cutpoints: risk thresholds between consecutive groups.
        logrank_statistic, logrank_p_value: multivariate log-rank test (lifelines).
    """

    labels: tuple[str, ...]
    curves: tuple[KaplanMeier, ...]
    cutpoints: np.ndarray
    logrank_statistic: float
    logrank_p_value: float


def risk_group_curves(
    time: Any,
    event: Any,
    risk: Any,
    *,
    n_groups: int = 3,
    cutpoints: Any | None = None,
) -> RiskGroupCurves:
    """Split samples by predicted risk and estimate one Kaplan-Meier curve per group.

    Args:
        time, event: ``[n]`` survival data (e.g. the test set).
        risk: ``[n]`` predicted risk, higher = earlier event.
        n_groups: number of equal-size groups by risk quantile (ignored with ``cutpoints``).
        cutpoints: explicit increasing risk thresholds (e.g. fixed on the training set, as
            a clinical deployment would).

    Returns:
        :class:`RiskGroupCurves`.
    """
    from lifelines.statistics import multivariate_logrank_test

    t, e = check_survival_arrays(time, event, name="risk groups")
    r = as_1d_float(risk, "risk")
    check_same_length(time=t, risk=r)
    if cutpoints is None:
        if not isinstance(n_groups, int) or n_groups < 2:
            raise EvaluationError(f"n_groups must be an int >= 2, received {n_groups!r}")
        cuts = np.quantile(r, np.linspace(0, 1, n_groups + 1)[1:-1])
    else:
        cuts = np.asarray(cutpoints, dtype=np.float64).reshape(-1)
        if not (np.diff(cuts) > 0).all():
            raise EvaluationError("cutpoints must increase strictly")
    group = np.searchsorted(cuts, r, side="right")
    n = cuts.shape[0] + 1
    names = {2: ("low", "high"), 3: ("low", "medium", "high")}.get(
        n, tuple(f"Q{k + 1}" for k in range(n))
    )
    present = [k for k in range(n) if (group == k).any()]
    if len(present) < 2:
        raise EvaluationError("risk groups: all samples fall into one group; check the cutpoints")
    test = multivariate_logrank_test(t, group, e)
    return RiskGroupCurves(
        labels=tuple(names[k] for k in present),
        curves=tuple(kaplan_meier(t[group == k], e[group == k]) for k in present),
        cutpoints=cuts,
        logrank_statistic=float(test.test_statistic),
        logrank_p_value=float(test.p_value),
    )


def plot_risk_group_curves(
    groups: RiskGroupCurves, *, ax: Axes | None = None, time_unit: str = "days"
) -> Figure:
    """Step plot of the risk-group curves with their confidence bands and log-rank p."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4))
    fig = cast("Figure", ax.get_figure(root=True))
    for label, km in zip(groups.labels, groups.curves, strict=True):
        x = np.r_[0.0, km.time]
        line = ax.step(x, np.r_[1.0, km.survival], where="post", label=f"{label} risk")[0]
        ax.fill_between(
            x,
            np.r_[1.0, km.lower],
            np.r_[1.0, km.upper],
            step="post",
            alpha=0.2,
            color=line.get_color(),
        )
    ax.set_xlabel(f"time ({time_unit})")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Kaplan-Meier by predicted risk (log-rank p = {groups.logrank_p_value:.2g})")
    ax.legend(loc="lower left")
    return fig
