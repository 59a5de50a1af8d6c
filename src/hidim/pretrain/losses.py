"""Self-supervised objectives on paired embeddings: pure functions of ``z1, z2`` ``[N, D]``.

Row ``i`` of ``z1`` and row ``i`` of ``z2`` are the projections of two views of the same
series (two clips at different start times, differently augmented); every other row comes
from another series.

* :func:`nt_xent` — SimCLR's normalised temperature-scaled cross-entropy (Chen et al. 2020):
  each of the ``2N`` embeddings must pick its partner out of the other ``2N - 1``.
* :func:`vicreg` — VICReg (Bardes et al. 2022): invariance (MSE between partners) +
  variance (hinge keeping each dimension's batch SD above 1) + covariance (decorrelated
  dimensions). No negatives.
* :func:`pair_top1` and :func:`embedding_spread` — monitors: how often a view's nearest
  neighbour is its partner (chance ``1 / N``), and whether embeddings collapse.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from hidim.errors import TrainingError

__all__ = ["nt_xent", "vicreg", "pair_top1", "embedding_spread"]


def _check_pair(z1: Tensor, z2: Tensor, *, min_rows: int) -> None:
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise TrainingError(
            f"expected two embeddings of the same shape [N, D], got {tuple(z1.shape)} and "
            f"{tuple(z2.shape)}"
        )
    if z1.shape[0] < min_rows:
        raise TrainingError(
            f"a self-supervised batch needs at least {min_rows} series, got {z1.shape[0]}; "
            "raise data.batch_size or use a store with more series"
        )


def nt_xent(
    z1: Tensor,
    z2: Tensor,
    *,
    temperature: float,
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """NT-Xent loss of SimCLR.

    With ``u = normalise(cat(z1, z2))`` (``[2N, D]``) and ``s_ij = u_i . u_j / tau``, anchor
    ``i`` has loss ``-log(exp(s_ip) / sum_{j != i} exp(s_ij))`` where ``p`` is its partner.

    Args:
        z1: ``[N, D]`` projections of the first views.
        z2: ``[N, D]`` projections of the second views (row ``i`` pairs with ``z1[i]``).
        temperature: ``tau > 0``.
        reduction: ``"mean"`` over the ``2N`` anchors, or ``"none"``: ``[2N]`` losses with the
            anchors of ``z1`` first.

    Returns:
        A scalar, or ``[2N]``. Permuting the pairs permutes the per-anchor losses.
    """
    _check_pair(z1, z2, min_rows=2)
    if temperature <= 0:
        raise TrainingError(f"expected temperature > 0, got {temperature}")
    n = z1.shape[0]
    u = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = (u @ u.T) / temperature
    eye = torch.eye(2 * n, dtype=torch.bool, device=u.device)
    logits = logits.masked_fill(eye, float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(u.device)
    return F.cross_entropy(logits, partner, reduction=reduction)


def _off_diagonal_sq(cov: Tensor) -> Tensor:
    return cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()


def vicreg(
    z1: Tensor,
    z2: Tensor,
    *,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    eps: float = 1e-4,
) -> dict[str, Tensor]:
    """VICReg loss and its three terms.

    * invariance ``= mean((z1 - z2)^2)``;
    * variance ``= (mean_d relu(1 - sqrt(var_d(z1) + eps)) + same for z2) / 2`` (unbiased
      batch variance per dimension);
    * covariance ``= (sum_{i != j} C1_ij^2 + sum_{i != j} C2_ij^2) / D`` with ``C`` the
      unbiased batch covariance of each branch.

    Args:
        z1, z2: ``[N, D]`` projections of the two views (``N >= 2``).
        sim_weight, var_weight, cov_weight: ``lambda``, ``mu``, ``nu``.
        eps: Added to the variance inside the square root.

    Returns:
        ``{"loss", "invariance", "variance", "covariance"}`` (scalars).
    """
    _check_pair(z1, z2, min_rows=2)
    a, b = z1.float(), z2.float()
    n, d = a.shape
    invariance = F.mse_loss(a, b)
    a = a - a.mean(dim=0)
    b = b - b.mean(dim=0)
    std_a = torch.sqrt(a.var(dim=0) + eps)
    std_b = torch.sqrt(b.var(dim=0) + eps)
    variance = (F.relu(1 - std_a).mean() + F.relu(1 - std_b).mean()) / 2
    cov_a = (a.T @ a) / (n - 1)
    cov_b = (b.T @ b) / (n - 1)
    covariance = (_off_diagonal_sq(cov_a) + _off_diagonal_sq(cov_b)) / d
    loss = sim_weight * invariance + var_weight * variance + cov_weight * covariance
    return {
        "loss": loss,
        "invariance": invariance,
        "variance": variance,
        "covariance": covariance,
    }


@torch.no_grad()
def pair_top1(z1: Tensor, z2: Tensor) -> Tensor:
    """Share of rows whose most cosine-similar row of the *other* view is their partner.

    Computed both ways (``z1 → z2`` and ``z2 → z1``) and averaged; chance is ``1 / N``.
    """
    _check_pair(z1, z2, min_rows=1)
    sim = F.normalize(z1.float(), dim=1) @ F.normalize(z2.float(), dim=1).T
    target = torch.arange(z1.shape[0], device=z1.device)
    hits = (sim.argmax(dim=1) == target).float().mean() + (
        sim.argmax(dim=0) == target
    ).float().mean()
    return hits / 2


@torch.no_grad()
def embedding_spread(h: Tensor) -> Tensor:
    """``sqrt(D) x`` mean per-dimension SD of the L2-normalised embeddings ``h`` ``[N, D]``.

    About 1 for embeddings spread over the sphere, near 0 when they collapse to one point
    (the failure mode of self-supervised training to watch for).
    """
    if h.ndim != 2 or h.shape[0] < 2:
        raise TrainingError(f"expected embeddings [N >= 2, D], got {tuple(h.shape)}")
    u = F.normalize(h.float(), dim=1)
    return u.std(dim=0).mean() * (u.shape[1] ** 0.5)
