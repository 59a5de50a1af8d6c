"""Probability calibration: expected calibration error, reliability diagram, temperature scaling.

``prob`` may be binary (``[n]``, probability of the positive class) or multi-class
(``[n, K]``); multi-class ECE uses the top-label confidence (Guo et al. 2017).
Temperature scaling fits one scalar ``T > 0`` on *validation* logits by minimising the
negative log-likelihood (L-BFGS on ``log T``); it changes confidence, never the ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from hidim.errors import EvaluationError
from hidim.evaluate._validation import as_1d_float, as_binary_labels, check_same_length, to_numpy

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ReliabilityBins",
    "reliability_bins",
    "expected_calibration_error",
    "plot_reliability_diagram",
    "fit_temperature",
    "apply_temperature",
]


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin confidence vs accuracy.

    Attributes:
        edges: ``[n_bins + 1]`` bin edges on [0, 1].
        confidence: ``[n_bins]`` mean predicted confidence per bin (NaN if empty).
        accuracy: ``[n_bins]`` observed frequency / accuracy per bin (NaN if empty).
        counts: ``[n_bins]`` samples per bin.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray


def _confidence_and_hit(prob: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = to_numpy(prob)
    if p.ndim == 1:
        p = as_1d_float(p, "prob")
        y = as_binary_labels(labels)
        check_same_length(prob=p, labels=y)
        if (p < 0).any() or (p > 1).any():
            raise EvaluationError(
                "prob: expected probabilities in [0, 1] (apply a sigmoid to logits)"
            )
        return p, y.astype(np.float64)  # reliability of P(y = 1)
    if p.ndim != 2:
        raise EvaluationError(f"prob: expected [n] or [n, K], received shape {p.shape}")
    p = p.astype(np.float64)
    y = to_numpy(labels).astype(np.int64).reshape(-1)
    check_same_length(prob=p, labels=y)
    if not np.allclose(p.sum(1), 1.0, atol=1e-4) or (p < 0).any():
        raise EvaluationError("prob: rows must be probability vectors summing to 1 (apply softmax)")
    if (y < 0).any() or (y >= p.shape[1]).any():
        raise EvaluationError(f"labels: expected class indices in 0..{p.shape[1] - 1}")
    return p.max(1), (p.argmax(1) == y).astype(np.float64)


def reliability_bins(
    prob: Any, labels: Any, *, n_bins: int = 15, strategy: str = "uniform"
) -> ReliabilityBins:
    """Bin predictions by confidence (``"uniform"`` width or ``"quantile"`` mass)."""
    conf, hit = _confidence_and_hit(prob, labels)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(conf, np.linspace(0, 1, n_bins + 1)))
        edges[0], edges[-1] = 0.0, 1.0
    else:
        raise EvaluationError(f"strategy must be 'uniform' or 'quantile', received {strategy!r}")
    k = edges.shape[0] - 1
    b = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, k - 1)
    counts = np.bincount(b, minlength=k).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.bincount(b, weights=conf, minlength=k) / counts
        a = np.bincount(b, weights=hit, minlength=k) / counts
    return ReliabilityBins(edges, c, a, counts)


def expected_calibration_error(
    prob: Any, labels: Any, *, n_bins: int = 15, strategy: str = "uniform"
) -> float:
    """Binned ECE: ``sum_b (n_b / n) |accuracy_b - confidence_b|`` (Naeini 2015, Guo 2017)."""
    bins = reliability_bins(prob, labels, n_bins=n_bins, strategy=strategy)
    full = bins.counts > 0
    n = bins.counts.sum()
    return float(
        np.sum(bins.counts[full] / n * np.abs(bins.accuracy[full] - bins.confidence[full]))
    )


def plot_reliability_diagram(
    prob: Any, labels: Any, *, n_bins: int = 15, ax: Axes | None = None, label: str | None = None
) -> Figure:
    """Reliability diagram (accuracy vs confidence per bin) with the ECE in the legend."""
    import matplotlib.pyplot as plt

    bins = reliability_bins(prob, labels, n_bins=n_bins)
    ece = expected_calibration_error(prob, labels, n_bins=n_bins)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    fig = cast("Figure", ax.get_figure(root=True))
    full = bins.counts > 0
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    ax.plot(
        bins.confidence[full],
        bins.accuracy[full],
        marker="o",
        label=f"{label or 'model'} (ECE = {ece:.3f})",
    )
    ax.set_xlabel("predicted confidence")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    return fig


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    if z.ndim == 1:  # binary logits: log sigmoid
        return float(np.mean(np.logaddexp(0.0, -z) * y + np.logaddexp(0.0, z) * (1 - y)))
    return float(-np.mean(log_softmax(z, axis=1)[np.arange(y.shape[0]), y]))


def fit_temperature(
    logits: Any, labels: Any, *, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """Temperature ``T`` minimising the validation NLL of ``logits / T``.

    Args:
        logits: ``[n]`` binary logits or ``[n, K]`` class logits from the *validation* set.
        labels: ``[n]`` 0/1 labels or class indices.
        bounds: search interval for ``T``.

    Returns:
        ``T`` (> 1 softens over-confident models; < 1 sharpens).
    """
    z = to_numpy(logits).astype(np.float64)
    y: np.ndarray
    if z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim == 1:
        z = as_1d_float(z, "logits")
        y = as_binary_labels(labels).astype(np.float64)
    elif z.ndim == 2:
        if not np.isfinite(z).all():
            raise EvaluationError("logits: expected finite values")
        y = to_numpy(labels).astype(np.int64).reshape(-1)
        if (y < 0).any() or (y >= z.shape[1]).any():
            raise EvaluationError(f"labels: expected class indices in 0..{z.shape[1] - 1}")
    else:
        raise EvaluationError(f"logits: expected [n] or [n, K], received shape {z.shape}")
    check_same_length(logits=z, labels=y)
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    res = minimize_scalar(
        lambda s: _nll(z, y, float(np.exp(s))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(res.x))


def apply_temperature(logits: Any, temperature: float) -> np.ndarray:
    """Calibrated probabilities: ``sigmoid(z / T)`` for ``[n]``, ``softmax(z / T)`` for ``[n, K]``."""
    if temperature <= 0:
        raise EvaluationError(f"temperature must be > 0, received {temperature}")
    z = to_numpy(logits).astype(np.float64) / temperature
    if z.ndim == 1:
        return 1.0 / (1.0 + np.exp(-z))
    return np.exp(log_softmax(z, axis=1))
