"""Classification heads: ``binary`` (e.g. EF < 40 %) and ``multiclass``.

Both are a dropout + linear layer on the feature vector ``[B, D]``. Predictions carry the
class probabilities, a ``score`` and an ``uncertainty``: the predictive entropy normalised to
``[0, 1]`` (0 = certain, 1 = uniform), the head's own uncertainty; ensembles and MC dropout
add the epistemic part in ``hidim.training.predict``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hidim.errors import TaskError
from hidim.tasks.base import Batch, Head, register_head

__all__ = ["BinaryHead", "MulticlassHead", "binary_entropy", "normalised_entropy"]


def binary_entropy(p: Tensor) -> Tensor:
    """Entropy in bits of Bernoulli(``p``), ``[B]`` → ``[B]`` in ``[0, 1]``."""
    p = p.clamp(1e-7, 1 - 1e-7)
    return -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))


def normalised_entropy(prob: Tensor) -> Tensor:
    """Entropy of each row of ``prob`` ``[B, K]`` divided by ``log K`` → ``[B]`` in ``[0, 1]``."""
    k = prob.shape[1]
    ent = -(prob * torch.log(prob.clamp_min(1e-12))).sum(dim=1)
    return ent / math.log(k) if k > 1 else torch.zeros_like(ent)


def _weights(batch: Batch, n: int, like: Tensor) -> Tensor | None:
    w = batch.get("sample_weight")
    if w is None:
        return None
    w = torch.as_tensor(w, dtype=like.dtype, device=like.device).reshape(-1)
    if w.shape[0] != n or bool((w < 0).any()):
        raise TaskError(f"sample_weight must be [B] = [{n}] non-negative, got {tuple(w.shape)}")
    return w


def _reduce(loss: Tensor, weight: Tensor | None) -> Tensor:
    if weight is None:
        return loss.mean()
    return (loss * weight).sum() / weight.sum().clamp_min(1e-12)


def _target(batch: Batch, n: int) -> Tensor:
    if "target" not in batch:
        raise TaskError(
            "classification heads need the batch key 'target'; set data.target to a label column"
        )
    t = torch.as_tensor(batch["target"]).reshape(-1)
    if t.shape[0] != n:
        raise TaskError(f"target must be [B] = [{n}], got {tuple(t.shape)}")
    if t.is_floating_point() and bool(torch.isnan(t).any()):
        raise TaskError(
            "target has missing values (NaN); rows without a label must be dropped before "
            "training (the DataModule does this for data.target)"
        )
    return t


@register_head("binary")
class BinaryHead(Head):
    """Binary classifier: one logit per sample.

    Args:
        in_features: Feature width ``D``.
        dropout: Dropout before the linear layer (enables MC-dropout uncertainty).
        pos_weight: Weight of positive examples in the loss (``n_neg / n_pos`` balances).
        label_smoothing: Targets become ``t * (1 - s) + s / 2``.

    Outputs: ``logits`` ``[B]``. Predictions: ``score`` = P(positive) ``[B]``, ``prob``
    ``[B, 2]``, ``uncertainty`` = binary entropy in bits ``[B]``.
    """

    task: ClassVar[str] = "binary"
    pos_weight: Tensor

    def __init__(
        self,
        *,
        in_features: int,
        dropout: float = 0.0,
        pos_weight: float | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if in_features < 1:
            raise TaskError(f"in_features must be >= 1, got {in_features}")
        if pos_weight is not None and pos_weight <= 0:
            raise TaskError(f"pos_weight must be > 0, got {pos_weight}")
        if not 0.0 <= label_smoothing < 0.5:
            raise TaskError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, 1)
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight or 1.0)))

    def fit_target(self, target: Sequence[float] | np.ndarray) -> None:
        """Initialise the bias at the training prevalence's log-odds (a calibrated start)."""
        t = np.asarray(target, dtype=float)
        t = t[np.isfinite(t)]
        if t.size == 0 or not np.isin(t, (0.0, 1.0)).all():
            raise TaskError("binary targets must be 0/1; got other values in the training split")
        p = float(np.clip(t.mean(), 1e-3, 1 - 1e-3))
        with torch.no_grad():
            self.linear.bias.fill_(math.log(p / (1 - p)))

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        """``[B, D]`` → ``{"logits": [B]}``."""
        return {"logits": self.linear(self.dropout(features))[:, 0]}

    def loss(self, outputs: Mapping[str, Tensor], batch: Batch) -> Tensor:
        """Binary cross-entropy (optionally weighted per sample and for positives)."""
        logits = outputs["logits"]
        t = _target(batch, logits.shape[0]).to(logits.device, logits.dtype)
        if bool(((t != 0) & (t != 1)).any()):
            raise TaskError("binary targets must be 0 or 1; threshold the label first")
        if self.label_smoothing:
            t = t * (1 - self.label_smoothing) + self.label_smoothing / 2
        loss = F.binary_cross_entropy_with_logits(
            logits, t, pos_weight=self.pos_weight.to(logits.dtype), reduction="none"
        )
        return _reduce(loss, _weights(batch, logits.shape[0], logits))

    def predict(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``score`` (P(positive)), ``prob`` ``[B, 2]``, ``uncertainty`` (entropy, bits)."""
        p = torch.sigmoid(outputs["logits"].float())
        return {
            "score": p,
            "prob": torch.stack([1 - p, p], dim=1),
            "uncertainty": binary_entropy(p),
        }


@register_head("multiclass")
class MulticlassHead(Head):
    """``K``-class classifier (softmax).

    Args:
        in_features: Feature width ``D``.
        n_classes: ``K`` >= 2; targets are integer codes ``0 .. K-1``.
        dropout: Dropout before the linear layer.
        class_weights: Loss weight per class (``K`` values) or ``None``.
        label_smoothing: Passed to :func:`torch.nn.functional.cross_entropy`.

    Predictions: ``prob`` ``[B, K]``, ``label`` (argmax) ``[B]``, ``score`` (probability of
    the predicted class) ``[B]``, ``uncertainty`` (entropy / log K) ``[B]``.
    """

    task: ClassVar[str] = "multiclass"
    class_weights: Tensor

    def __init__(
        self,
        *,
        in_features: int,
        n_classes: int,
        dropout: float = 0.0,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if in_features < 1:
            raise TaskError(f"in_features must be >= 1, got {in_features}")
        if n_classes < 2:
            raise TaskError(f"n_classes must be >= 2 (use the binary head for 2), got {n_classes}")
        if class_weights is not None and len(class_weights) != n_classes:
            raise TaskError(
                f"class_weights needs one value per class ({n_classes}), got {len(class_weights)}"
            )
        self.n_classes = int(n_classes)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, n_classes)
        self.label_smoothing = float(label_smoothing)
        cw = torch.tensor(class_weights if class_weights is not None else [1.0] * n_classes)
        self.register_buffer("class_weights", cw.float())

    def fit_target(self, target: Sequence[Any] | np.ndarray) -> None:
        """Initialise the biases at the training class frequencies' log."""
        t = np.asarray(target, dtype=float)
        t = t[np.isfinite(t)].astype(int)
        if t.size == 0 or t.min() < 0 or t.max() >= self.n_classes:
            raise TaskError(
                f"multiclass targets must be codes 0..{self.n_classes - 1} in the training split"
            )
        freq = np.bincount(t, minlength=self.n_classes) + 1.0
        with torch.no_grad():
            self.linear.bias.copy_(torch.as_tensor(np.log(freq / freq.sum()), dtype=torch.float32))

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        """``[B, D]`` → ``{"logits": [B, K]}``."""
        return {"logits": self.linear(self.dropout(features))}

    def loss(self, outputs: Mapping[str, Tensor], batch: Batch) -> Tensor:
        """Cross-entropy (class weights, label smoothing, per-sample weights)."""
        logits = outputs["logits"]
        t = _target(batch, logits.shape[0])
        if t.is_floating_point():
            t = t.round()
        t = t.long().to(logits.device)
        if bool(((t < 0) | (t >= self.n_classes)).any()):
            raise TaskError(f"multiclass targets must be codes 0..{self.n_classes - 1}")
        loss = F.cross_entropy(
            logits.float(),
            t,
            weight=self.class_weights.to(logits.device),
            label_smoothing=self.label_smoothing,
            reduction="none",
        )
        return _reduce(loss, _weights(batch, logits.shape[0], loss))

    def predict(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``prob``, ``label``, ``score`` (max probability), ``uncertainty``."""
        prob = torch.softmax(outputs["logits"].float(), dim=1)
        score, label = prob.max(dim=1)
        return {
            "score": score,
            "prob": prob,
            "label": label,
            "uncertainty": normalised_entropy(prob),
        }
