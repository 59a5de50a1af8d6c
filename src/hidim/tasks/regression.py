"""Regression head (``regression``): a continuous target such as ejection fraction (%).

The head learns a standardised target ``(y - mean) / std`` with ``mean``/``std`` taken from
the training split (:meth:`RegressionHead.fit_target`, stored as buffers so they travel in the
checkpoint), which keeps the output layer well-scaled whatever the unit. Predictions are in
the original unit.

With ``heteroscedastic=True`` it also predicts a per-sample log-variance and trains with the
Gaussian negative log-likelihood, so ``uncertainty`` is a predicted standard deviation in the
target's unit (aleatoric); otherwise the head has no uncertainty of its own and ensembles /
MC dropout supply it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hidim.errors import TaskError
from hidim.tasks.base import Batch, Head, register_head

__all__ = ["RegressionHead"]

RegressionLoss = Literal["mse", "huber", "l1"]
_LOSSES = ("mse", "huber", "l1")


@register_head("regression")
class RegressionHead(Head):
    """Continuous target.

    Args:
        in_features: Feature width ``D``.
        loss: ``"mse"``, ``"huber"`` (``delta`` in standardised units) or ``"l1"``;
            ignored when ``heteroscedastic`` (Gaussian NLL).
        dropout: Dropout before the linear layer.
        heteroscedastic: Also predict a log-variance; ``uncertainty`` = predicted SD.
        delta: Huber threshold (standardised units).
        target_mean, target_std: Standardisation (overwritten by :meth:`fit_target`).

    Outputs: ``z`` ``[B]`` (standardised prediction) and, if heteroscedastic, ``log_var``.
    Predictions: ``value`` and ``score`` (same) ``[B]`` in target units, ``uncertainty``
    (SD in target units) when heteroscedastic.
    """

    task: ClassVar[str] = "regression"
    target_mean: Tensor
    target_std: Tensor

    def __init__(
        self,
        *,
        in_features: int,
        loss: RegressionLoss = "mse",
        dropout: float = 0.0,
        heteroscedastic: bool = False,
        delta: float = 1.0,
        target_mean: float = 0.0,
        target_std: float = 1.0,
    ) -> None:
        super().__init__()
        if in_features < 1:
            raise TaskError(f"in_features must be >= 1, got {in_features}")
        if loss not in _LOSSES:
            raise TaskError(f"regression loss must be one of {_LOSSES}, got {loss!r}")
        if target_std <= 0 or delta <= 0:
            raise TaskError(f"target_std and delta must be > 0, got {target_std}, {delta}")
        self.loss_name = loss
        self.heteroscedastic = bool(heteroscedastic)
        self.delta = float(delta)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, 2 if heteroscedastic else 1)
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std)))

    def fit_target(self, target: Sequence[float] | np.ndarray) -> None:
        """Set the standardisation from *training* targets (finite values only)."""
        t = np.asarray(target, dtype=float)
        t = t[np.isfinite(t)]
        if t.size < 2:
            raise TaskError(
                f"regression needs >= 2 finite training targets to standardise, got {t.size}"
            )
        std = float(t.std())
        self.target_mean.fill_(float(t.mean()))
        self.target_std.fill_(std if std > 0 else 1.0)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        """``[B, D]`` → ``{"z": [B]}`` (+ ``"log_var": [B]``)."""
        out = self.linear(self.dropout(features))
        if self.heteroscedastic:
            return {"z": out[:, 0], "log_var": out[:, 1].clamp(-10.0, 10.0)}
        return {"z": out[:, 0]}

    def loss(self, outputs: Mapping[str, Tensor], batch: Batch) -> Tensor:
        """Loss on the standardised target (per-sample weights supported)."""
        z = outputs["z"].float()
        if "target" not in batch:
            raise TaskError("the regression head needs the batch key 'target' (data.target)")
        y = torch.as_tensor(batch["target"]).reshape(-1).to(z.device, torch.float32)
        if y.shape[0] != z.shape[0]:
            raise TaskError(f"target must be [B] = [{z.shape[0]}], got {tuple(y.shape)}")
        if not bool(torch.isfinite(y).all()):
            raise TaskError(
                "regression target has missing/infinite values; drop unlabelled rows first"
            )
        t = (y - self.target_mean) / self.target_std
        if self.heteroscedastic:
            var = outputs["log_var"].float().exp()
            per = F.gaussian_nll_loss(z, t, var, reduction="none", full=False)
        elif self.loss_name == "huber":
            per = F.huber_loss(z, t, delta=self.delta, reduction="none")
        elif self.loss_name == "l1":
            per = F.l1_loss(z, t, reduction="none")
        else:
            per = F.mse_loss(z, t, reduction="none")
        w = batch.get("sample_weight")
        if w is None:
            return per.mean()
        w = torch.as_tensor(w, dtype=per.dtype, device=per.device).reshape(-1)
        return (per * w).sum() / w.sum().clamp_min(1e-12)

    def predict(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``value``/``score`` in target units; ``uncertainty`` (SD) if heteroscedastic."""
        value = outputs["z"].float() * self.target_std + self.target_mean
        out = {"score": value, "value": value}
        if self.heteroscedastic:
            out["uncertainty"] = (0.5 * outputs["log_var"].float()).exp() * self.target_std
        return out
