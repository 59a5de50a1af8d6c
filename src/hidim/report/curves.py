"""Curves the report derives from per-patient predictions (pure functions, numpy in/out).

The numbers a run already computed (``metrics.json``, the uncertainty and audit summaries)
are shown as they are; these functions only derive what a figure needs and a run does not
store: Kaplan–Meier curves by predicted-risk group (lifelines' estimator and log-rank
test), reliability bins, and the risk–coverage curve of selective prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hidim.errors import ReportError
from hidim.report.sections import Calibration, CoveragePoint, KMCurve, ReliabilityBin

__all__ = [
    "at_risk_times",
    "risk_group_cutpoints",
    "km_by_risk_group",
    "binary_calibration",
    "survival_calibration",
    "risk_coverage",
    "harrell_c",
]

_GROUP_NAMES = {2: ("low risk", "high risk"), 3: ("low risk", "medium risk", "high risk")}


def _check_1d(name: str, *arrays: np.ndarray) -> int:
    n = arrays[0].shape[0]
    for a in arrays:
        if a.ndim != 1 or a.shape[0] != n:
            raise ReportError(
                f"{name}: expected 1-D arrays of equal length, got shapes "
                f"{[x.shape for x in arrays]}; pass one value per patient"
            )
    return n


def risk_group_cutpoints(risk: np.ndarray, n_groups: int = 3) -> np.ndarray:
    """Quantile cut-points (``n_groups - 1`` values) that split ``risk`` into equal groups.

    Compute them on training or validation predictions and apply them to the test set, so
    the grouping is not tuned on the data it is shown on.
    """
    if n_groups < 2:
        raise ReportError(f"n_groups must be >= 2, got {n_groups}")
    qs = np.linspace(0, 1, n_groups + 1)[1:-1]
    return np.quantile(np.asarray(risk, dtype=float), qs)


def at_risk_times(time: np.ndarray, n: int = 6) -> np.ndarray:
    """Round time points from 0 to the last follow-up for a number-at-risk table."""
    from matplotlib.ticker import MaxNLocator

    tmax = float(np.max(time)) if np.size(time) else 1.0
    ticks = np.asarray(
        MaxNLocator(nbins=n - 1, steps=[1, 2, 2.5, 5, 10]).tick_values(0.0, tmax), dtype=float
    )
    return ticks[(ticks >= 0) & (ticks <= tmax)]


def km_by_risk_group(
    time: np.ndarray,
    event: np.ndarray,
    risk: np.ndarray,
    *,
    cutpoints: np.ndarray | None = None,
    n_groups: int = 3,
    at_risk_at: np.ndarray | None = None,
) -> tuple[tuple[KMCurve, ...], float | None]:
    """Kaplan–Meier curves (95 % CI) per predicted-risk group and the log-rank p-value.

    Args:
        time: Follow-up times ``[N]`` (> 0).
        event: Event indicators ``[N]`` (bool).
        risk: Predicted risk ``[N]`` (higher = earlier event).
        cutpoints: Group boundaries (ascending); default: tertiles of ``risk``.
        n_groups: Groups when ``cutpoints`` is None.
        at_risk_at: Times at which to count patients still at risk (``time >= t``).

    Returns:
        One curve per non-empty group (low → high risk) and the multivariate log-rank p
        (``None`` with fewer than two non-empty groups).
    """
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    risk = np.asarray(risk, dtype=float)
    _check_1d("km_by_risk_group", time, event, risk)
    cuts = risk_group_cutpoints(risk, n_groups) if cutpoints is None else np.asarray(cutpoints)
    group = np.searchsorted(cuts, risk, side="right")
    k = len(cuts) + 1
    names = _GROUP_NAMES.get(k, tuple(f"risk group {i + 1}" for i in range(k)))
    curves = []
    for g in range(k):
        m = group == g
        if not m.any():
            continue
        km = KaplanMeierFitter().fit(time[m], event_observed=event[m])
        sf = km.survival_function_.iloc[:, 0]
        ci = km.confidence_interval_survival_function_
        t = sf.index.to_numpy(dtype=float)
        keep = t > 0
        curves.append(
            KMCurve(
                group=names[g],
                n=int(m.sum()),
                events=int(event[m].sum()),
                times=tuple(float(x) for x in t[keep]),
                survival=tuple(float(x) for x in sf.to_numpy()[keep]),
                lower=tuple(float(x) for x in ci.iloc[:, 0].to_numpy()[keep]),
                upper=tuple(float(x) for x in ci.iloc[:, 1].to_numpy()[keep]),
                at_risk=tuple(
                    int((time[m] >= t0).sum())
                    for t0 in (at_risk_at if at_risk_at is not None else ())
                ),
            )
        )
    p = None
    if len(curves) >= 2 and event.any():
        p = float(multivariate_logrank_test(time, group, event).p_value)
    return tuple(curves), p


def _bins(pred: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """Equal-count bins of ``pred`` (index arrays), robust to ties."""
    order = np.argsort(pred, kind="stable")
    return [b for b in np.array_split(order, min(n_bins, max(len(pred), 1))) if b.size]


def binary_calibration(y: np.ndarray, prob: np.ndarray, *, n_bins: int = 10) -> Calibration:
    """Reliability bins (equal counts) and ECE of binary probabilities.

    ECE = Σ_b (n_b / N) |mean(prob_b) − mean(y_b)|.
    """
    y = np.asarray(y, dtype=float)
    prob = np.asarray(prob, dtype=float)
    n = _check_1d("binary_calibration", y, prob)
    if n == 0:
        raise ReportError("binary_calibration: no predictions to calibrate")
    bins = []
    ece = 0.0
    for idx in _bins(prob, n_bins):
        p, o = float(prob[idx].mean()), float(y[idx].mean())
        bins.append(ReliabilityBin(predicted=p, observed=o, count=int(idx.size)))
        ece += idx.size / n * abs(p - o)
    return Calibration(kind="binary", ece=float(ece), bins=tuple(bins))


def survival_calibration(
    time: np.ndarray,
    event: np.ndarray,
    event_prob: np.ndarray,
    horizon: float,
    *,
    n_bins: int = 5,
) -> Calibration:
    """Calibration of predicted event probability by ``horizon`` against Kaplan–Meier.

    Patients are binned by predicted probability ``P(T <= horizon)``; in each bin the
    observed probability is ``1 − KM(horizon)`` (so censoring is handled), and
    ECE = Σ_b (n_b / N) |predicted_b − observed_b| (the 1-calibration idea of
    Haider et al. 2020, without the test statistic).
    """
    from lifelines import KaplanMeierFitter

    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    event_prob = np.asarray(event_prob, dtype=float)
    n = _check_1d("survival_calibration", time, event, event_prob)
    if n == 0:
        raise ReportError("survival_calibration: no predictions to calibrate")
    bins = []
    ece = 0.0
    for idx in _bins(event_prob, n_bins):
        km = KaplanMeierFitter().fit(time[idx], event_observed=event[idx])
        observed = 1.0 - float(km.survival_function_at_times(horizon).iloc[0])
        p = float(event_prob[idx].mean())
        bins.append(ReliabilityBin(predicted=p, observed=observed, count=int(idx.size)))
        ece += idx.size / n * abs(p - observed)
    return Calibration(kind="survival", horizon=float(horizon), ece=float(ece), bins=tuple(bins))


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C (higher risk = earlier event); NaN when undefined (e.g. no events)."""
    from hidim.errors import HidimError
    from hidim.evaluate.concordance import concordance_index

    try:
        return float(concordance_index(time, event, risk))
    except (HidimError, ZeroDivisionError):
        return float("nan")


def risk_coverage(
    uncertainty: np.ndarray,
    *,
    loss: np.ndarray | None = None,
    survival: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    coverages: Sequence[float] = tuple(np.linspace(0.2, 1.0, 17)),
) -> tuple[tuple[CoveragePoint, ...], float]:
    """Risk of the predictions kept when the most uncertain are set aside.

    Give either ``loss`` (per-case error ``[N]``: 0/1 error, absolute error…) — risk is its
    mean over kept cases — or ``survival=(time, event, risk)``, for which risk is
    ``1 − C-index`` of the kept cases (a ranking has no per-case error).

    Returns:
        The curve (coverage ascending) and AURC, the area under it by the trapezoid rule
        over the coverages given (lower = uncertainty ranks errors better).
    """
    u = np.asarray(uncertainty, dtype=float)
    if (loss is None) == (survival is None):
        raise ReportError("risk_coverage: pass exactly one of loss= or survival=")
    order = np.argsort(u, kind="stable")
    n = u.shape[0]
    if loss is not None:
        per_case = np.asarray(loss, dtype=float)

        def risk_of(keep: np.ndarray) -> float:
            return float(per_case[keep].mean())

    else:
        t, e, score = (np.asarray(a) for a in survival or ())

        def risk_of(keep: np.ndarray) -> float:
            return 1.0 - harrell_c(t[keep], e[keep].astype(bool), score[keep])

    points = []
    for c in sorted(coverages):
        r = risk_of(order[: max(int(round(c * n)), 2)])
        if np.isfinite(r):
            points.append(CoveragePoint(coverage=float(c), risk=r))
    if len(points) >= 2:
        x = np.array([p.coverage for p in points])
        y = np.array([p.risk for p in points])
        aurc = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))
    else:
        aurc = float("nan")
    return tuple(points), aurc
