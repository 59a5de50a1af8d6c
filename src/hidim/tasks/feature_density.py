"""Class-conditional Gaussian density of a head's input features (for OOD-aware evidence).

Fitted *after* training on the training split's features (Lee et al. 2018 "Mahalanobis";
Mukhoti et al. 2021 "Deep Deterministic Uncertainty"): one mean per class and one shared
(tied) covariance, shrunk towards a scaled identity. For a feature vector ``z`` the squared
Mahalanobis distance to the nearest class, ``m2(z) = min_k (z - mu_k)' S^-1 (z - mu_k)``,
is ``-2 log`` of the Gaussian density up to a constant. The *gate*

    log g(z) = -0.5 * max(0, m2(z) - m2_ref),

with ``m2_ref`` the ``quantile`` (default 99 %) of the training distances, is the log of
the density ratio ``q(z) / q_ref`` capped at 1: it leaves inputs inside the training
feature cloud alone and shrinks towards 0 for inputs far outside it. Multiplying evidence
by ``g`` is the Posterior-Network idea (evidence proportional to training density) applied
post hoc, without changing what the head learnt.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hidim.errors import TaskError

__all__ = ["FeatureDensity"]


class FeatureDensity(nn.Module):
    """Tied-covariance class-conditional Gaussians on features ``[N, D]`` (buffers only).

    Args:
        in_features: feature width ``D``.
        n_classes: number of classes ``K``.
        quantile: training-distance quantile that sets ``m2_ref``.
        shrinkage: weight of the scaled identity mixed into the covariance (0..1).
    """

    means: Tensor
    whitener: Tensor
    reference: Tensor
    fitted: Tensor

    def __init__(
        self, *, in_features: int, n_classes: int, quantile: float = 0.99, shrinkage: float = 0.05
    ) -> None:
        super().__init__()
        if not 0.5 <= quantile < 1.0:
            raise TaskError(f"quantile must lie in [0.5, 1), received {quantile}")
        if not 0.0 <= shrinkage <= 1.0:
            raise TaskError(f"shrinkage must lie in [0, 1], received {shrinkage}")
        self.quantile, self.shrinkage = quantile, shrinkage
        self.register_buffer("means", torch.zeros(n_classes, in_features, dtype=torch.float64))
        self.register_buffer("whitener", torch.eye(in_features, dtype=torch.float64))
        self.register_buffer("reference", torch.zeros((), dtype=torch.float64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, features: Any, target: Any) -> None:
        """Fit means, tied covariance and ``m2_ref`` on training ``features`` and class ``target``."""
        z = torch.as_tensor(np.asarray(features), dtype=torch.float64)
        y = torch.as_tensor(np.asarray(target)).reshape(-1)
        k, d = self.means.shape
        if z.ndim != 2 or z.shape[1] != d or z.shape[0] != y.shape[0]:
            raise TaskError(
                f"expected features [N, {d}] and target [N], received {tuple(z.shape)} and "
                f"{tuple(y.shape)}"
            )
        if not bool(torch.isfinite(z).all()):
            raise TaskError("features contain non-finite values")
        y = y.long()
        counts = torch.bincount(y, minlength=k)
        if counts.shape[0] != k or bool((counts < 2).any()):
            raise TaskError(
                f"every class needs >= 2 training samples, received counts {counts.tolist()}"
            )
        means = torch.stack([z[y == c].mean(0) for c in range(k)])
        centred = z - means[y]
        cov = centred.T @ centred / max(z.shape[0] - k, 1)
        scale = torch.trace(cov) / d
        cov = (1 - self.shrinkage) * cov + self.shrinkage * scale * torch.eye(d, dtype=cov.dtype)
        chol = torch.linalg.cholesky(cov)
        self.means.copy_(means)
        # whitener W with W W' = cov^-1: m2 = ||(z - mu) W||^2
        self.whitener.copy_(torch.linalg.inv(chol).T)
        self.fitted.fill_(True)
        self.reference.copy_(torch.quantile(self.mahalanobis_sq(z), self.quantile))

    def mahalanobis_sq(self, features: Tensor) -> Tensor:
        """Squared Mahalanobis distance to the nearest class mean ``[B]`` (float64)."""
        z = features.detach().to(torch.float64)
        diff = z[:, None, :] - self.means[None, :, :]  # [B, K, D]
        return ((diff @ self.whitener) ** 2).sum(-1).min(dim=1).values

    def log_gate(self, features: Tensor) -> Tensor:
        """``log g(z) = -0.5 max(0, m2(z) - m2_ref)`` ``[B]`` (0 until fitted)."""
        if not bool(self.fitted):
            return features.new_zeros(features.shape[0])
        m2 = self.mahalanobis_sq(features)
        return (-0.5 * torch.clamp(m2 - self.reference, min=0.0)).to(features.dtype)
