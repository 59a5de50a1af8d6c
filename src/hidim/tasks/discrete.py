"""Discrete-time survival: the time grid, discretisation, and the logistic-hazard likelihood.

Conventions shared with :mod:`hidim.tasks.deephit`. A grid of ``K`` intervals is given by
edges ``0 = e_0 < e_1 < ... < e_K``; interval ``k`` is ``(e_k, e_{k+1}]``. A sample is
encoded as ``(idx, event)``:

* ``event=True``: the event happened in interval ``idx`` (all earlier intervals survived);
* ``event=False``: the first ``idx`` intervals were survived, nothing is known afterwards.

Censored samples use the nnet-survival rule (Gensheimer & Narasimhan 2019): a sample
censored in the second half of an interval counts as having survived it
(``censored="midpoint"``); ``censored="left"`` is the conservative alternative. Event times
beyond the last edge become "survived every interval".

The logistic-hazard model (nnet-survival, pycox ``LogisticHazard``) predicts the
conditional probability ``h_k = P(T in interval k | T > e_k)``; ``S(e_{k+1}) = prod_{j<=k}
(1 - h_j)``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hidim.errors import SurvivalDataError, TaskError
from hidim.tasks.survival_target import check_survival_arrays

__all__ = [
    "make_time_grid",
    "discretize",
    "logistic_hazard_nll",
    "hazard_to_survival",
    "restricted_mean_time_lost",
]


def make_time_grid(
    time: Any,
    n_bins: int,
    *,
    event: Any | None = None,
    scheme: Literal["quantile", "equidistant"] = "quantile",
) -> np.ndarray:
    """Interval edges ``[n_bins + 1]`` (``e_0 = 0``) from training times.

    Args:
        time: ``[n]`` training follow-up times > 0.
        n_bins: number of intervals ``K`` (e.g. 10-50).
        event: ``[n]`` event indicator; with ``scheme="quantile"`` the edges are quantiles
            of the *event* times (so every interval holds events), as in pycox.
        scheme: ``"quantile"`` or ``"equidistant"`` (``linspace(0, max time)``).

    Returns:
        float64 edges, strictly increasing, ``edges[-1]`` = largest (event) time.

    Raises:
        TaskError: bad ``n_bins``/``scheme``, or fewer distinct event times than ``n_bins``.
    """
    if not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise TaskError(f"n_bins must be a positive int, received {n_bins!r}")
    if scheme not in ("quantile", "equidistant"):
        raise TaskError(f"scheme must be 'quantile' or 'equidistant', received {scheme!r}")
    if event is None:
        t = check_survival_arrays(time, np.ones(np.shape(time), bool), name="time grid")[0]
        source = t
    else:
        t, e = check_survival_arrays(time, event, name="time grid")
        source = t[e]
    if scheme == "equidistant":
        return np.linspace(0.0, float(source.max()), n_bins + 1)
    uniq = np.unique(source)
    if uniq.shape[0] < n_bins:
        raise TaskError(
            f"quantile time grid: {uniq.shape[0]} distinct event times cannot make {n_bins} "
            f"intervals; use n_bins <= {uniq.shape[0]} or scheme='equidistant'"
        )
    inner = np.quantile(uniq, np.linspace(0.0, 1.0, n_bins + 1)[1:])
    return np.r_[0.0, inner]


def _check_edges(edges: Any) -> np.ndarray:
    e = np.asarray(edges.detach().cpu() if isinstance(edges, Tensor) else edges, dtype=np.float64)
    if e.ndim != 1 or e.shape[0] < 2 or e[0] != 0.0 or not (np.diff(e) > 0).all():
        raise TaskError(
            "time-grid edges must be 1-D, start at 0 and increase strictly (see "
            f"make_time_grid); received {e.tolist()[:6]}..."
        )
    return e


def discretize(
    time: Any,
    event: Any,
    edges: Any,
    *,
    censored: Literal["midpoint", "left"] = "midpoint",
) -> tuple[np.ndarray, np.ndarray]:
    """Map continuous ``(time, event)`` to ``(idx, event)`` on a grid (see module doc).

    Args:
        time: ``[n]`` times > 0.
        event: ``[n]`` bool.
        edges: ``[K + 1]`` grid edges from :func:`make_time_grid`.
        censored: ``"midpoint"`` (nnet-survival) or ``"left"`` (no credit for the interval
            in which the sample was censored).

    Returns:
        ``idx`` int64 ``[n]`` in ``0..K`` and ``event`` bool ``[n]`` (events beyond the
        grid become censored with ``idx = K``).
    """
    t, e = check_survival_arrays(time, event, allow_all_censored=True, name="discretize")
    edges_ = _check_edges(edges)
    if censored not in ("midpoint", "left"):
        raise TaskError(f"censored must be 'midpoint' or 'left', received {censored!r}")
    n_bins = edges_.shape[0] - 1
    k = np.searchsorted(edges_, t, side="left") - 1  # t in (e_k, e_{k+1}]
    beyond = k >= n_bins
    k = np.minimum(k, n_bins)
    idx = k.copy()
    if censored == "midpoint":
        inside = ~e & ~beyond
        mid = 0.5 * (edges_[np.minimum(k, n_bins - 1)] + edges_[np.minimum(k + 1, n_bins)])
        idx[inside & (t >= mid)] += 1
    ev = e & ~beyond
    return idx.astype(np.int64), ev


def _targets(idx: Tensor, event: Tensor, n_bins: int) -> None:
    if idx.ndim != 1 or event.shape != idx.shape:
        raise SurvivalDataError(
            f"expected idx and event of shape [B], received {tuple(idx.shape)} / {tuple(event.shape)}"
        )
    if bool(((idx < 0) | (idx > n_bins)).any()):
        raise SurvivalDataError(f"interval index must lie in 0..{n_bins}; use discretize()")
    if bool((event.bool() & (idx >= n_bins)).any()):
        raise SurvivalDataError(f"an event cannot lie in interval {n_bins} (beyond the grid)")


def logistic_hazard_nll(
    logits: Tensor,
    idx: Tensor,
    event: Tensor,
    *,
    weight: Tensor | None = None,
    reduction: Literal["mean", "sum"] = "mean",
) -> Tensor:
    """Negative log-likelihood of the discrete logistic-hazard model.

    ``-log L_i = -sum_{k < idx_i} log(1 - h_ik) - event_i * log h_{i, idx_i}`` with
    ``h = sigmoid(logits)``, computed with ``binary_cross_entropy_with_logits``.

    Args:
        logits: ``[B, K]`` hazard logits.
        idx: ``[B]`` long, from :func:`discretize`.
        event: ``[B]`` bool.
        weight: optional ``[B]`` sample weights.
        reduction: ``"mean"`` over samples (weighted mean with weights) or ``"sum"``.
    """
    n_bins = logits.shape[1]
    _targets(idx, event, n_bins)
    grid = torch.arange(n_bins, device=logits.device)
    ev = event.to(logits.device).bool()
    idx = idx.to(logits.device)
    target = ((grid[None, :] == idx[:, None]) & ev[:, None]).to(logits.dtype)
    mask = (grid[None, :] < idx[:, None] + ev[:, None].long()).to(logits.dtype)
    per = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * mask).sum(1)
    return _reduce(per, weight, reduction)


def _reduce(per: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    if weight is not None:
        w = weight.to(per)
        if w.shape != per.shape or bool((w < 0).any()):
            raise TaskError(f"sample weights must be >= 0 with shape {tuple(per.shape)}")
        return (
            (per * w).sum() / w.sum().clamp_min(1e-12) if reduction == "mean" else (per * w).sum()
        )
    return per.mean() if reduction == "mean" else per.sum()


def hazard_to_survival(logits: Tensor) -> Tensor:
    """``S(e_{k+1}) = prod_{j<=k} (1 - h_j)`` ``[B, K]`` from hazard logits ``[B, K]``.

    Computed as ``exp(cumsum(log sigmoid(-logits)))`` for stability.
    """
    return torch.exp(torch.cumsum(F.logsigmoid(-logits), dim=1))


def restricted_mean_time_lost(survival: Tensor, edges: Tensor) -> Tensor:
    """``sum_k (1 - S(e_{k+1})) (e_{k+1} - e_k)`` ``[B]``: time lost before ``e_K``.

    A risk score (higher = earlier event) that uses the whole curve; in the units of time.
    """
    widths = (edges[1:] - edges[:-1]).to(survival)
    return ((1.0 - survival) * widths).sum(1)
