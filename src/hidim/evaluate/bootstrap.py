"""Percentile bootstrap confidence intervals for any metric.

One function serves every metric in hidim (C-index, AUROC, Brier, ECE, OOD AUROC, a
difference between two models...): ``metric_fn`` receives resampled copies of the arrays
and returns a number (or a fixed-length vector, e.g. AUC(t) at several times).

* ``paired=True`` (default): all arrays have one row per sample and are resampled with the
  *same* indices (rows stay aligned: time, event, risk; or label and two models' scores).
* ``paired=False``: each array is resampled on its own (e.g. in-distribution and OOD
  uncertainty scores of different lengths).
* ``stratify``: resample within groups (e.g. the event indicator or the class label), so
  each replicate keeps the group sizes -- useful when events or positives are rare.

Replicates on which the metric is undefined (it raises a :class:`hidim.errors.HidimError`
or ``ValueError``, e.g. "All samples are censored") are skipped and counted in
``n_failed``; if more than ``max_failed_fraction`` fail, an error says so. For a vector
metric, entries that are NaN in some replicates (e.g. a subgroup absent from a resample)
get their interval from the replicates where they are defined (``nanquantile``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hidim.errors import EvaluationError, HidimError
from hidim.evaluate._validation import to_numpy

__all__ = ["BootstrapResult", "bootstrap_ci"]


@dataclass(frozen=True)
class BootstrapResult:
    """A point estimate with its percentile bootstrap interval.

    Attributes:
        estimate: metric on the original data (float, or ``[k]`` array for vector metrics).
        low, high: ``alpha / 2`` and ``1 - alpha / 2`` percentiles of the replicates.
        replicates: ``[n_valid]`` or ``[n_valid, k]`` metric values of the replicates.
        n_failed: replicates on which the metric was undefined.
        alpha: 1 - confidence level.
    """

    estimate: Any
    low: Any
    high: Any
    replicates: np.ndarray
    n_failed: int
    alpha: float

    @property
    def std_error(self) -> Any:
        """Bootstrap standard error (standard deviation of the replicates)."""
        return self.replicates.std(axis=0, ddof=1)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly ``{"estimate", "low", "high", "alpha", "n_boot", "n_failed"}``."""

        def plain(x: Any) -> Any:
            return x.tolist() if isinstance(x, np.ndarray) else float(x)

        return {
            "estimate": plain(self.estimate),
            "low": plain(self.low),
            "high": plain(self.high),
            "alpha": self.alpha,
            "n_boot": int(self.replicates.shape[0] + self.n_failed),
            "n_failed": self.n_failed,
        }


def _strata_indices(stratify: np.ndarray | None, n: int) -> list[np.ndarray]:
    if stratify is None:
        return [np.arange(n)]
    _, inverse = np.unique(stratify, return_inverse=True)
    return [np.flatnonzero(inverse == k) for k in range(inverse.max() + 1)]


def _resample(strata: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([s[rng.integers(0, s.shape[0], s.shape[0])] for s in strata])


def bootstrap_ci(
    metric_fn: Callable[..., Any],
    *arrays: Any,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | None = 0,
    stratify: Any | None = None,
    paired: bool = True,
    max_failed_fraction: float = 0.1,
) -> BootstrapResult:
    """Percentile bootstrap CI of ``metric_fn(*arrays)``.

    Args:
        metric_fn: ``f(*arrays) -> float | array [k]``; bind other arguments with
            ``functools.partial`` (e.g. training data for IPCW metrics).
        *arrays: the data; numpy arrays, lists or tensors, resampled along axis 0.
        n_boot: number of bootstrap replicates.
        alpha: 1 - confidence level (0.05 gives a 95 % interval).
        seed: seed of ``numpy.random.default_rng`` (None = fresh entropy; not reproducible).
        stratify: ``[n]`` group labels to resample within (``paired=True`` only).
        paired: resample all arrays with the same indices (True) or independently.
        max_failed_fraction: raise if more replicates than this fraction are undefined.

    Returns:
        :class:`BootstrapResult`.

    Raises:
        EvaluationError: bad arguments, the metric undefined on the original data, or too
            many undefined replicates.
    """
    if not arrays:
        raise EvaluationError("bootstrap_ci: pass at least one array to resample")
    if not isinstance(n_boot, int) or n_boot < 2:
        raise EvaluationError(f"n_boot must be an int >= 2, received {n_boot!r}")
    if not 0 < alpha < 1:
        raise EvaluationError(f"alpha must lie in (0, 1), received {alpha}")
    data = [to_numpy(a) for a in arrays]
    if any(a.ndim == 0 for a in data):
        raise EvaluationError("bootstrap_ci: every array needs a leading sample axis")
    lengths = [a.shape[0] for a in data]
    if paired and len(set(lengths)) != 1:
        raise EvaluationError(
            f"bootstrap_ci: paired resampling needs arrays of one length, received {lengths}; "
            "pass paired=False to resample each array on its own"
        )
    if stratify is not None:
        if not paired:
            raise EvaluationError("bootstrap_ci: stratify works with paired=True only")
        stratify = to_numpy(stratify)
        if stratify.shape[0] != lengths[0]:
            raise EvaluationError(
                f"stratify has {stratify.shape[0]} entries, the arrays {lengths[0]}"
            )
    try:
        estimate = metric_fn(*data)
    except (HidimError, ValueError) as exc:
        raise EvaluationError(f"bootstrap_ci: the metric is undefined on the data: {exc}") from exc
    rng = np.random.default_rng(seed)
    strata = (
        [_strata_indices(stratify, lengths[0])] if paired else [[np.arange(n)] for n in lengths]
    )
    values: list[Any] = []
    failed = 0
    for _ in range(n_boot):
        if paired:
            idx = _resample(strata[0], rng)
            sample = [a[idx] for a in data]
        else:
            sample = [a[_resample(s, rng)] for a, s in zip(data, strata, strict=True)]
        try:
            values.append(metric_fn(*sample))
        except (HidimError, ValueError):
            failed += 1
    if failed > max_failed_fraction * n_boot:
        raise EvaluationError(
            f"bootstrap_ci: the metric was undefined on {failed} of {n_boot} replicates "
            "(e.g. no events or one class in a resample); stratify by the event/label, or "
            "collect more data"
        )
    est = np.asarray(estimate, dtype=np.float64)
    reps = np.asarray(values, dtype=np.float64).reshape(len(values), *est.shape)
    if reps.shape[0] == 0:  # every replicate undefined (allowed by max_failed_fraction=1)
        low = high = np.full(est.shape, np.nan)
    else:
        with warnings.catch_warnings():  # an entry NaN in every replicate stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanquantile(reps, [alpha / 2, 1 - alpha / 2], axis=0)
    scalar = est.ndim == 0
    return BootstrapResult(
        estimate=float(est) if scalar else est,
        low=float(low) if scalar else low,
        high=float(high) if scalar else high,
        replicates=reps,
        n_failed=failed,
        alpha=alpha,
    )
