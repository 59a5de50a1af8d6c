"""Server side of the post-training phases: the Cox baseline and the feature densities.

After the last round the server holds the global weights but no data. What central
training fits on the pooled training split *after* training is rebuilt here from the sites'
aggregates (:func:`hidim.federated.site_compute.finalise_aggregates`):

* **Cox Breslow baseline** — refitted for the global model, not averaged from per-site
  baselines (a per-site Breslow estimate depends on that site's risk set; averaging them is
  not the pooled estimator). Each site sends, on a grid 20× finer than the head's output
  grid, its event counts and risk-weighted exposure; the pooled piecewise-exponential
  baseline (exact pooled PEM, close to pooled Breslow) is evaluated at the head's grid
  times and stored in the head's ``baseline_cumhaz``;
* **image-density OOD gate** and evidential heads' **feature density** — per-class means
  and tied covariance merged exactly from per-site moments, then the reference distance
  (the ``quantile`` of training distances) from the sites' distance quantile functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from hidim.errors import FederatedError
from hidim.federated.aggregates import (
    DensityMoments,
    fill_density,
    merge_density_moments,
    merge_quantiles,
    pem_cumulative_hazard,
)
from hidim.federated.site_compute import density_classes, refine_grid
from hidim.tasks.feature_density import FeatureDensity
from hidim.training.module import HidimModule

__all__ = ["fit_cox_baseline", "build_densities", "density_payload", "set_references"]


def fit_cox_baseline(module: HidimModule, payloads: Sequence[Mapping[str, np.ndarray]]) -> bool:
    """Set a Cox head's baseline from the sites' PEM aggregates; ``False`` if not a Cox head."""
    head = module.head
    if not callable(getattr(head, "fit_baseline", None)):
        return False
    deaths = np.sum([p["pem_deaths"] for p in payloads], axis=0)
    exposure = np.sum([p["pem_exposure"] for p in payloads], axis=0)
    if deaths.sum() <= 0:
        raise FederatedError("Cox baseline: no site has an event in its training split")
    time_edges: Tensor = getattr(head, "time_edges")  # noqa: B009 - Cox head buffers
    baseline: Tensor = getattr(head, "baseline_cumhaz")  # noqa: B009
    fitted: Tensor = getattr(head, "baseline_fitted")  # noqa: B009
    edges = time_edges.detach().cpu().numpy()
    cumhaz = pem_cumulative_hazard(deaths, exposure, refine_grid(edges), edges[1:])
    with torch.no_grad():
        baseline.copy_(torch.as_tensor(cumhaz))
        fitted.fill_(True)
    return True


def _moments(payload: Mapping[str, np.ndarray], prefix: str) -> DensityMoments:
    return DensityMoments(
        n=np.asarray(payload[f"{prefix}_n"], dtype=np.float64),
        mean=np.asarray(payload[f"{prefix}_mean"], dtype=np.float64),
        scatter=np.asarray(payload[f"{prefix}_scatter"], dtype=np.float64),
    )


def _collapse(m: DensityMoments) -> DensityMoments:
    """One class from per-class moments (adds the between-class scatter)."""
    n = float(m.n.sum())
    mean = (m.n[:, None] * m.mean).sum(axis=0) / n
    diff = m.mean - mean[None]
    scatter = m.scatter + np.einsum("k,ki,kj->ij", m.n, diff, diff)
    return DensityMoments(n=np.array([n]), mean=mean[None], scatter=scatter)


def build_densities(
    module: HidimModule, payloads: Sequence[Mapping[str, np.ndarray]], *, quantile: float
) -> dict[str, FeatureDensity]:
    """Means and whiteners of the image density (and the head's, if it has one).

    The image density follows :func:`hidim.training.ood_gate.fit_image_density`: one mean
    per class for classifiers unless a class has fewer than 2 training items, then one
    mean. The head's density is the head's own ``density`` module (filled in place).

    Returns:
        ``{"image": FeatureDensity, "head": FeatureDensity}`` for the densities present
        (references still unset).
    """
    out: dict[str, FeatureDensity] = {}
    if payloads and "image_n" in payloads[0]:
        merged = merge_density_moments([_moments(p, "image") for p in payloads])
        if density_classes(module) is None or (merged.n < 2).any():
            merged = _collapse(merged)
        density = FeatureDensity(
            in_features=int(merged.mean.shape[1]),
            n_classes=int(merged.n.shape[0]),
            quantile=quantile,
        )
        fill_density(density, merged)
        out["image"] = density
    if payloads and "head_n" in payloads[0]:
        head_density: FeatureDensity = getattr(module.head, "density")  # noqa: B009
        fill_density(head_density, merge_density_moments([_moments(p, "head") for p in payloads]))
        out["head"] = head_density
    return out


def density_payload(densities: Mapping[str, FeatureDensity]) -> dict[str, np.ndarray]:
    """What the sites need to compute distances: each density's means and whitener."""
    out: dict[str, np.ndarray] = {}
    for name, d in densities.items():
        out[f"{name}_means"] = d.means.detach().cpu().numpy()
        out[f"{name}_whitener"] = d.whitener.detach().cpu().numpy()
    return out


def set_references(
    densities: Mapping[str, FeatureDensity], payloads: Sequence[Mapping[str, np.ndarray]]
) -> None:
    """Each density's reference = its ``quantile`` of the pooled training distances."""
    for name, density in densities.items():
        q = merge_quantiles(
            [p[f"{name}_quantiles"] for p in payloads],
            [int(p[f"{name}_count"][0]) for p in payloads],
            np.array([density.quantile]),
        )
        with torch.no_grad():
            density.reference.fill_(float(q[0]))
