"""Pure maths for statistics assembled from per-site aggregates (never from pooled rows).

Each function has a *site* half (what a hospital computes on its own data and sends) and a
*merge* half (what the server computes from those aggregates):

* :func:`moments` / :func:`merge_moments` — count, mean and sum of squared deviations
  (Chan et al. 1979), exact: the pooled mean and population SD equal the ones of the
  pooled data up to rounding;
* :func:`site_quantiles` / :func:`merge_quantiles` — a pooled quantile from each site's
  quantile function at fixed levels (the pooled CDF is the count-weighted mixture of the
  sites' CDFs, each linearly interpolated between its levels) — approximate, to within the
  level spacing;
* :func:`pem_statistics` / :func:`pem_cumulative_hazard` — the Cox baseline as the
  piecewise-exponential MLE on a fine grid: per interval, the event count ``D_m`` and the
  risk-weighted exposure ``E_m = sum_j exp(eta_j) * |[0, T_j] ∩ interval m|``; then
  ``H0(t) = sum_m D_m / E_m * |[0, t] ∩ interval m|``. Both sums decompose over sites, so
  the federated estimate equals the pooled-data PEM exactly; as the grid is refined it
  converges to Breslow's estimator (tested against it);
* :class:`DensityMoments` / :func:`merge_density_moments` / :func:`fill_density` — per-class
  counts, means and within-class scatter of feature vectors, merged exactly, then the
  tied-covariance Gaussian of :class:`~hidim.tasks.feature_density.FeatureDensity` built
  from them with the same shrinkage and whitening as its ``fit``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hidim.errors import FederatedError
from hidim.tasks.feature_density import FeatureDensity

__all__ = [
    "QUANTILE_LEVELS",
    "moments",
    "merge_moments",
    "site_quantiles",
    "merge_quantiles",
    "pem_statistics",
    "pem_cumulative_hazard",
    "DensityMoments",
    "density_moments",
    "merge_density_moments",
    "fill_density",
    "pack_arrays",
    "unpack_arrays",
]

#: Levels at which a site reports a quantile function (0, 0.005, ..., 1).
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 201)


# ---- moments --------------------------------------------------------------------------------
def moments(values: np.ndarray) -> tuple[int, float, float]:
    """``(n, mean, M2)`` of the finite entries of ``values`` (``M2 = sum (x - mean)^2``)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return 0, 0.0, 0.0
    mean = float(x.mean())
    return int(x.size), mean, float(((x - mean) ** 2).sum())


def merge_moments(parts: Sequence[tuple[int, float, float]]) -> tuple[int, float, float]:
    """Merge ``(n, mean, M2)`` triples into the pooled triple (exact; Chan et al.)."""
    n, mean, m2 = 0, 0.0, 0.0
    for nb, mb, m2b in parts:
        if nb <= 0:
            continue
        total = n + nb
        delta = mb - mean
        mean = mean + delta * nb / total
        m2 = m2 + m2b + delta * delta * n * nb / total
        n = total
    return n, mean, m2


# ---- quantiles ------------------------------------------------------------------------------
def site_quantiles(values: np.ndarray, levels: np.ndarray = QUANTILE_LEVELS) -> np.ndarray:
    """The quantile function of ``values`` at ``levels`` (linear interpolation, numpy's)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise FederatedError("site_quantiles: no finite values")
    return np.quantile(x, levels)


def merge_quantiles(
    quantiles: Sequence[np.ndarray],
    counts: Sequence[int],
    levels_out: np.ndarray,
    *,
    levels_in: np.ndarray = QUANTILE_LEVELS,
) -> np.ndarray:
    """Quantiles of the pooled distribution at ``levels_out`` from per-site quantiles.

    Args:
        quantiles: Per site, its quantile function at ``levels_in`` (non-decreasing).
        counts: Per site, the number of values it summarised (the mixture weights).
        levels_out: Levels in [0, 1] wanted.
        levels_in: The levels the sites reported at.

    Returns:
        ``[len(levels_out)]`` pooled quantiles (exact for one site at levels in
        ``levels_in``; otherwise accurate to the level spacing).
    """
    parts = [
        (np.asarray(q, dtype=np.float64), int(n))
        for q, n in zip(quantiles, counts, strict=True)
        if int(n) > 0
    ]
    if not parts:
        raise FederatedError("merge_quantiles: no site reported any value")
    total = sum(n for _, n in parts)
    grid = np.unique(np.concatenate([q for q, _ in parts]))
    cdf = np.zeros_like(grid)
    for q, n in parts:
        if q.shape != levels_in.shape:
            raise FederatedError(
                f"merge_quantiles: expected {levels_in.shape[0]} levels, received {q.shape}"
            )
        lo, hi = q[0], q[-1]
        if hi > lo:
            inside = np.interp(grid, q, levels_in)
            site_cdf = np.where(grid < lo, 0.0, np.where(grid >= hi, 1.0, inside))
        else:  # a point mass
            site_cdf = (grid >= lo).astype(np.float64)
        cdf += n / total * site_cdf
    return np.interp(np.asarray(levels_out, dtype=np.float64), cdf, grid)


# ---- Cox baseline (piecewise exponential) ---------------------------------------------------
def pem_statistics(
    log_hazard: np.ndarray, time: np.ndarray, event: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One site's ``(D [M], E [M])`` on the fine grid ``edges`` ``[M + 1]`` (from 0).

    Events after ``edges[-1]`` are not counted and exposure is truncated there.
    """
    eta = np.asarray(log_hazard, dtype=np.float64).reshape(-1)
    t = np.asarray(time, dtype=np.float64).reshape(-1)
    e = np.asarray(event).astype(bool).reshape(-1)
    f = np.asarray(edges, dtype=np.float64)
    if not (eta.shape == t.shape == e.shape):
        raise FederatedError(
            f"pem_statistics: log_hazard, time and event must have one value per sample, "
            f"received {eta.shape}, {t.shape}, {e.shape}"
        )
    ok = np.isfinite(t) & np.isfinite(eta)
    eta, t, e = eta[ok], t[ok], e[ok]
    m = f.shape[0] - 1
    idx = np.searchsorted(f, t[e], side="left") - 1  # interval (f[k], f[k+1]] holding t
    inside = (idx >= 0) & (idx < m)
    deaths = np.bincount(idx[inside], minlength=m).astype(np.float64)
    overlap = np.clip(t[:, None] - f[None, :-1], 0.0, np.diff(f)[None, :])  # [n, M]
    exposure = (np.exp(eta)[:, None] * overlap).sum(axis=0)
    return deaths, exposure


def pem_cumulative_hazard(
    deaths: np.ndarray, exposure: np.ndarray, edges: np.ndarray, at: np.ndarray
) -> np.ndarray:
    """``H0`` at times ``at`` from pooled ``D``, ``E`` on ``edges`` (piecewise constant hazard)."""
    d = np.asarray(deaths, dtype=np.float64)
    ex = np.asarray(exposure, dtype=np.float64)
    f = np.asarray(edges, dtype=np.float64)
    rate = np.divide(d, ex, out=np.zeros_like(d), where=ex > 0)
    widths = np.diff(f)
    overlap = np.clip(np.asarray(at, dtype=np.float64)[:, None] - f[None, :-1], 0.0, widths)
    return (overlap * rate[None, :]).sum(axis=1)


# ---- feature densities ------------------------------------------------------------------------
@dataclass(frozen=True)
class DensityMoments:
    """Per-class count ``n [K]``, mean ``[K, D]`` and within-class scatter ``[D, D]``."""

    n: np.ndarray
    mean: np.ndarray
    scatter: np.ndarray


def density_moments(features: np.ndarray, target: np.ndarray, n_classes: int) -> DensityMoments:
    """One site's :class:`DensityMoments` of ``features`` ``[N, D]`` with classes ``[N]``."""
    z = np.asarray(features, dtype=np.float64)
    y = np.asarray(target).astype(np.int64).reshape(-1)
    if z.ndim != 2 or z.shape[0] != y.shape[0]:
        raise FederatedError(
            f"density_moments: expected features [N, D] and target [N], received "
            f"{z.shape} and {y.shape}"
        )
    d = z.shape[1]
    n = np.zeros(n_classes)
    mean = np.zeros((n_classes, d))
    scatter = np.zeros((d, d))
    for k in range(n_classes):
        zk = z[y == k]
        n[k] = zk.shape[0]
        if zk.shape[0]:
            mean[k] = zk.mean(axis=0)
            c = zk - mean[k]
            scatter += c.T @ c
    return DensityMoments(n=n, mean=mean, scatter=scatter)


def merge_density_moments(parts: Sequence[DensityMoments]) -> DensityMoments:
    """Pool per-site moments exactly (within-class scatter + between-site mean shifts)."""
    if not parts:
        raise FederatedError("merge_density_moments: no site moments")
    n = np.sum([p.n for p in parts], axis=0)
    weights = np.stack([p.n for p in parts])  # [S, K]
    means = np.stack([p.mean for p in parts])  # [S, K, D]
    safe = np.where(n > 0, n, 1.0)
    mean = (weights[:, :, None] * means).sum(axis=0) / safe[:, None]
    scatter = np.sum([p.scatter for p in parts], axis=0)
    diff = means - mean[None]  # [S, K, D]
    scatter = scatter + np.einsum("sk,ski,skj->ij", weights, diff, diff)
    return DensityMoments(n=n, mean=mean, scatter=scatter)


def fill_density(density: FeatureDensity, merged: DensityMoments) -> None:
    """Set ``density``'s means and whitener from pooled moments (as ``FeatureDensity.fit``).

    The reference distance (its training-distance quantile) is set separately, from the
    sites' distance quantiles. Marks the density fitted.
    """
    k, d = density.means.shape
    if merged.mean.shape != (k, d):
        raise FederatedError(
            f"density moments have shape {merged.mean.shape}, the density expects {(k, d)}"
        )
    if (merged.n < 2).any():
        raise FederatedError(
            f"every class needs >= 2 training samples across sites, received {merged.n.tolist()}"
        )
    total = float(merged.n.sum())
    cov = torch.as_tensor(merged.scatter / max(total - k, 1.0), dtype=torch.float64)
    scale = torch.trace(cov) / d
    shrink = density.shrinkage
    cov = (1 - shrink) * cov + shrink * scale * torch.eye(d, dtype=cov.dtype)
    chol = torch.linalg.cholesky(cov)
    with torch.no_grad():
        density.means.copy_(torch.as_tensor(merged.mean, dtype=torch.float64))
        density.whitener.copy_(torch.linalg.inv(chol).T)
        density.fitted.fill_(True)


# ---- transport of small arrays ---------------------------------------------------------------
def pack_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """A dict of numeric arrays as ``.npz`` bytes (no pickling; read by :func:`unpack_arrays`)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    return buf.getvalue()


def unpack_arrays(data: bytes) -> dict[str, np.ndarray]:
    """The arrays :func:`pack_arrays` wrote (``allow_pickle=False``)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}
