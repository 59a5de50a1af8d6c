"""Evidential heads: Dirichlet classification (Sensoy et al. 2018) and Normal-Inverse-Gamma
regression (Amini et al. 2020). One forward pass gives a prediction *and* its uncertainty.

Classification. The head outputs non-negative evidence ``e = softplus(z)`` per class;
``alpha = e + 1`` parametrises a Dirichlet, ``S = sum(alpha)``, expected probabilities
``p = alpha / S`` and the uncertainty mass ``u = K / S`` in (0, 1]. Loss (Sensoy eq. 5):

    sum_k (y_k - p_k)^2 + p_k (1 - p_k) / (S + 1)  +  lambda_t * KL(Dir(alpha~) || Dir(1))

with ``alpha~ = y + (1 - y) * alpha`` (misleading evidence only) and the annealing weight
``lambda_t = min(1, epoch / annealing_epochs)``. The epoch is given explicitly: batch key
``"epoch"`` (int) or :meth:`EvidentialClassificationHead.set_epoch`; in training mode a
missing epoch is an error (silently fixing it would hide a wiring bug), in eval mode the
full weight 1 is used.

Regression. The head outputs ``(gamma, nu, alpha, beta)`` of a Normal-Inverse-Gamma
prior; prediction ``gamma``, aleatoric variance ``beta / (alpha - 1)``, epistemic variance
``beta / (nu (alpha - 1))``. Loss = NIG negative log-likelihood (Student-t marginal) +
``coeff * |y - gamma| * (2 nu + alpha)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hidim.errors import TaskError
from hidim.tasks.base import Batch, Head, register_head
from hidim.tasks.feature_density import FeatureDensity

__all__ = [
    "dirichlet_mse_loss",
    "dirichlet_kl_uniform",
    "evidential_classification_loss",
    "nig_nll",
    "nig_regularizer",
    "evidential_regression_loss",
    "EvidentialClassificationHead",
    "EvidentialRegressionHead",
]


def dirichlet_mse_loss(alpha: Tensor, target_onehot: Tensor) -> Tensor:
    """Sensoy's expected squared error under ``Dir(alpha)``, per sample ``[B]``."""
    s = alpha.sum(dim=1, keepdim=True)
    p = alpha / s
    err = (target_onehot - p) ** 2
    var = p * (1 - p) / (s + 1)
    return (err + var).sum(dim=1)


def dirichlet_kl_uniform(alpha: Tensor) -> Tensor:
    """``KL(Dir(alpha) || Dir(1, ..., 1))`` per sample ``[B]`` (closed form)."""
    k = alpha.shape[1]
    s = alpha.sum(dim=1)
    return (
        torch.lgamma(s)
        - math.lgamma(k)
        - torch.lgamma(alpha).sum(dim=1)
        + ((alpha - 1) * (torch.digamma(alpha) - torch.digamma(s)[:, None])).sum(dim=1)
    )


def evidential_classification_loss(
    evidence: Tensor, target: Tensor, *, kl_weight: float, weight: Tensor | None = None
) -> Tensor:
    """Mean Sensoy loss for evidence ``[B, K]`` (>= 0) and class indices ``target`` ``[B]``.

    Args:
        evidence: non-negative evidence per class.
        target: long class indices in ``0..K-1``.
        kl_weight: annealing coefficient ``lambda_t`` in [0, 1].
        weight: optional ``[B]`` sample weights.
    """
    k = evidence.shape[1]
    if target.ndim != 1 or target.shape[0] != evidence.shape[0]:
        raise TaskError(
            f"target must be class indices of shape [{evidence.shape[0]}], received {tuple(target.shape)}"
        )
    target = target.long()
    if bool(((target < 0) | (target >= k)).any()):
        raise TaskError(f"target class indices must lie in 0..{k - 1}")
    y = F.one_hot(target, k).to(evidence.dtype)
    alpha = evidence + 1.0
    per = dirichlet_mse_loss(alpha, y)
    if kl_weight > 0:
        per = per + kl_weight * dirichlet_kl_uniform(y + (1 - y) * alpha)
    if weight is None:
        return per.mean()
    w = weight.to(per)
    return (per * w).sum() / w.sum().clamp_min(1e-12)


def nig_nll(y: Tensor, gamma: Tensor, nu: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """Negative log marginal likelihood (Student-t) of ``y`` under NIG, per sample."""
    omega = 2 * beta * (1 + nu)
    return (
        0.5 * torch.log(math.pi / nu)
        - alpha * torch.log(omega)
        + (alpha + 0.5) * torch.log(nu * (y - gamma) ** 2 + omega)
        + torch.lgamma(alpha)
        - torch.lgamma(alpha + 0.5)
    )


def nig_regularizer(y: Tensor, gamma: Tensor, nu: Tensor, alpha: Tensor) -> Tensor:
    """Amini's evidence regulariser ``|y - gamma| * (2 nu + alpha)`` per sample."""
    return torch.abs(y - gamma) * (2 * nu + alpha)


def evidential_regression_loss(
    y: Tensor,
    gamma: Tensor,
    nu: Tensor,
    alpha: Tensor,
    beta: Tensor,
    *,
    coeff: float = 0.01,
    weight: Tensor | None = None,
) -> Tensor:
    """Mean ``NLL + coeff * regulariser`` over the batch (all tensors ``[B]``)."""
    per = nig_nll(y, gamma, nu, alpha, beta) + coeff * nig_regularizer(y, gamma, nu, alpha)
    if weight is None:
        return per.mean()
    w = weight.to(per)
    return (per * w).sum() / w.sum().clamp_min(1e-12)


@register_head("evidential_classification")
class EvidentialClassificationHead(Head):
    """Dirichlet evidential classifier (binary: ``n_classes=2``).

    Args:
        in_features: feature width ``D``.
        n_classes: number of classes ``K`` (>= 2).
        annealing_epochs: epochs over which the KL weight rises linearly from 0 to 1.
        dropout: dropout probability before the linear layer.
        density_gate: after :meth:`fit_density`, multiply the evidence by the feature-density
            gate of :class:`~hidim.tasks.feature_density.FeatureDensity` (1 inside the
            training feature cloud, -> 0 far outside it), so inputs unlike the training data
            get ``u -> 1``. Sensoy's evidence alone is not OOD-aware: a network can be
            confidently wrong far from its data.
        density_quantile: training-distance quantile where the gate starts to close.

    Batch keys: ``target`` (``[B]`` class index; 0/1 floats accepted for binary), ``epoch``
    (int, the current epoch, unless :meth:`set_epoch` was called), ``sample_weight``.
    Predictions: ``prob`` ``[B, K]``, ``score`` (``prob[:, 1]`` for binary, else the top
    probability), ``uncertainty`` ``u = K / S``, ``evidence`` ``S - K``, and once the density
    is fitted ``feature_distance`` (squared Mahalanobis distance to the nearest class).
    """

    task: ClassVar[str] = "classification"

    def __init__(
        self,
        *,
        in_features: int,
        n_classes: int = 2,
        annealing_epochs: int = 10,
        dropout: float = 0.0,
        density_gate: bool = True,
        density_quantile: float = 0.99,
    ) -> None:
        super().__init__()
        if not isinstance(in_features, int) or in_features < 1:
            raise TaskError(f"in_features must be a positive int, received {in_features!r}")
        if not isinstance(n_classes, int) or n_classes < 2:
            raise TaskError(f"n_classes must be an int >= 2, received {n_classes!r}")
        if annealing_epochs < 1:
            raise TaskError(f"annealing_epochs must be >= 1, received {annealing_epochs}")
        self.n_classes = n_classes
        self.annealing_epochs = annealing_epochs
        self.epoch: int | None = None
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, n_classes)
        self.density_gate = density_gate
        self.density = FeatureDensity(
            in_features=in_features, n_classes=n_classes, quantile=density_quantile
        )

    def fit_density(self, features: Any, target: Any) -> None:
        """Fit the feature density on the *training* split after training.

        Args:
            features: ``[N, D]`` head inputs (eval mode, e.g. centre clips).
            target: ``[N]`` class indices.
        """
        self.density.fit(features, target)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch used for KL annealing when batches carry no ``"epoch"`` key."""
        if epoch < 0:
            raise TaskError(f"epoch must be >= 0, received {epoch}")
        self.epoch = int(epoch)

    def kl_weight(self, batch: Batch) -> float:
        """``min(1, epoch / annealing_epochs)`` from the batch or :meth:`set_epoch`."""
        epoch = batch.get("epoch", self.epoch)
        if epoch is None:
            if self.training:
                raise TaskError(
                    "evidential_classification: the KL annealing needs the epoch; put "
                    "batch['epoch'] = current_epoch or call head.set_epoch(epoch) each epoch"
                )
            return 1.0
        return min(1.0, float(torch.as_tensor(epoch).flatten()[0]) / self.annealing_epochs)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        out = {"evidence": F.softplus(self.linear(self.dropout(features)))}
        if bool(self.density.fitted):
            out["feature_distance"] = self.density.mahalanobis_sq(features).to(features.dtype)
            out["log_density_gate"] = self.density.log_gate(features)
        return out

    def loss(self, outputs: Mapping[str, Tensor], batch: Batch) -> Tensor:
        if "target" not in batch:
            raise TaskError("evidential_classification needs batch key 'target' (class index)")
        ev = outputs["evidence"]
        target = torch.as_tensor(batch["target"], device=ev.device)
        if torch.is_floating_point(target) and not bool(torch.isfinite(target).all()):
            raise TaskError("target has missing (NaN) values; drop unlabelled samples")
        if torch.is_floating_point(target):
            if bool((target != target.round()).any()):
                raise TaskError("target must hold class indices (integers), received fractions")
            target = target.long()
        weight = batch.get("sample_weight")
        return evidential_classification_loss(
            ev,
            target.reshape(-1),
            kl_weight=self.kl_weight(batch),
            weight=None if weight is None else torch.as_tensor(weight),
        )

    def predict(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        evidence = outputs["evidence"]
        gated = self.density_gate and "log_density_gate" in outputs
        if gated:
            evidence = evidence * torch.exp(outputs["log_density_gate"])[:, None]
        alpha = evidence + 1.0
        s = alpha.sum(dim=1)
        prob = alpha / s[:, None]
        score = prob[:, 1] if self.n_classes == 2 else prob.max(dim=1).values
        out = {
            "prob": prob,
            "score": score,
            "uncertainty": self.n_classes / s,
            "evidence": s - self.n_classes,
        }
        if "feature_distance" in outputs:
            out["feature_distance"] = outputs["feature_distance"]
        return out


@register_head("evidential_regression")
class EvidentialRegressionHead(Head):
    """Normal-Inverse-Gamma evidential regressor (Amini et al. 2020).

    Args:
        in_features: feature width ``D``.
        coeff: weight of the evidence regulariser (Amini: 0.01; larger = more uncertain).
        dropout: dropout probability before the linear layer.

    Batch keys: ``target`` ``[B]`` float, optional ``sample_weight``. Call
    :meth:`fit_target` with the training targets first (standardisation). Predictions, in
    target units: ``value``/``score`` (``gamma``), ``aleatoric`` and ``epistemic``
    variances, ``uncertainty`` (= epistemic).
    """

    task: ClassVar[str] = "regression"
    target_mean: Tensor
    target_std: Tensor

    def __init__(self, *, in_features: int, coeff: float = 0.01, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(in_features, int) or in_features < 1:
            raise TaskError(f"in_features must be a positive int, received {in_features!r}")
        if coeff < 0:
            raise TaskError(f"coeff must be >= 0, received {coeff}")
        self.coeff = coeff
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, 4)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def fit_target(self, target: Any) -> None:
        """Standardise with *training* targets: the NIG is fitted on ``(y - mean) / std``
        and predictions are reported in target units (variances times ``std**2``)."""
        t = np.asarray(target, dtype=float)
        t = t[np.isfinite(t)]
        if t.size < 2:
            raise TaskError(f"need >= 2 finite training targets to standardise, received {t.size}")
        std = float(t.std())
        self.target_mean.fill_(float(t.mean()))
        self.target_std.fill_(std if std > 0 else 1.0)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        z = self.linear(self.dropout(features))
        return {
            "gamma": z[:, 0],
            "nu": F.softplus(z[:, 1]) + 1e-6,
            "alpha": F.softplus(z[:, 2]) + 1.0 + 1e-6,
            "beta": F.softplus(z[:, 3]) + 1e-6,
        }

    def loss(self, outputs: Mapping[str, Tensor], batch: Batch) -> Tensor:
        if "target" not in batch:
            raise TaskError("evidential_regression needs batch key 'target' (float)")
        g = outputs["gamma"]
        y = torch.as_tensor(batch["target"], device=g.device).to(g.dtype).reshape(-1)
        if y.shape != g.shape:
            raise TaskError(f"target must have shape {tuple(g.shape)}, received {tuple(y.shape)}")
        if not bool(torch.isfinite(y).all()):
            raise TaskError("target has missing (NaN) values; drop unlabelled samples")
        y = (y - self.target_mean.to(y)) / self.target_std.to(y)
        weight = batch.get("sample_weight")
        return evidential_regression_loss(
            y,
            g,
            outputs["nu"],
            outputs["alpha"],
            outputs["beta"],
            coeff=self.coeff,
            weight=None if weight is None else torch.as_tensor(weight),
        )

    def predict(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        nu, alpha, beta = outputs["nu"], outputs["alpha"], outputs["beta"]
        scale = self.target_std.to(beta) ** 2
        aleatoric = beta / (alpha - 1) * scale
        epistemic = aleatoric / nu
        value = outputs["gamma"] * self.target_std.to(beta) + self.target_mean.to(beta)
        return {
            "value": value,
            "score": value,
            "aleatoric": aleatoric,
            "epistemic": epistemic,
            "uncertainty": epistemic,
        }
