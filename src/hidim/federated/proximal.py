"""FedProx's proximal term ``mu / 2 * ||w - w_global||^2`` as a hidim training penalty.

FedProx (Li et al., MLSys 2020) adds to each site's local loss a pull towards the global
weights received at the start of the round, which limits client drift when sites' data
differ (case mix, scanner). :func:`proximal_term` is the pure function;
:class:`ProximalPenalty` is the thin stateful wrapper that
:class:`~hidim.training.module.HidimModule` calls as one of its ``penalties``
(``penalty(outputs, batch) -> scalar``), re-anchored each round with :meth:`anchor`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hidim.errors import FederatedError

__all__ = ["proximal_term", "ProximalPenalty"]


def proximal_term(params: Sequence[Tensor], anchors: Sequence[Tensor], mu: float) -> Tensor:
    """``mu / 2 * sum_i ||params_i - anchors_i||^2`` (differentiable in ``params``).

    Args:
        params: The local tensors being trained.
        anchors: The global tensors of the round (same shapes; no gradient).
        mu: Strength ``>= 0`` (0: plain FedAvg).

    Returns:
        A scalar tensor (0 when ``mu == 0`` or ``params == anchors``).
    """
    if mu < 0:
        raise FederatedError(f"FedProx mu must be >= 0, received {mu}")
    if len(params) != len(anchors):
        raise FederatedError(f"proximal term: {len(params)} parameters but {len(anchors)} anchors")
    if not params:
        return torch.zeros(())
    total = params[0].new_zeros(())
    if mu == 0:
        return total
    for p, a in zip(params, anchors, strict=True):
        total = total + (p - a.to(p)).pow(2).sum()
    return 0.5 * mu * total


class ProximalPenalty:
    """The proximal term of a model's trainable parameters, as a ``HidimModule`` penalty.

    Args:
        mu: Strength ``>= 0``.
        exclude: Parameter names not pulled (e.g. batch-norm weights kept local by FedBN).
    """

    def __init__(self, *, mu: float, exclude: Sequence[str] = ()) -> None:
        if mu < 0:
            raise FederatedError(f"FedProx mu must be >= 0, received {mu}")
        self.mu = float(mu)
        self.exclude = frozenset(exclude)
        self._params: list[Tensor] = []
        self._anchors: list[Tensor] = []

    def anchor(self, model: nn.Module) -> None:
        """Take ``model``'s current trainable parameters as the global weights ``w_global``."""
        self._params, self._anchors = [], []
        for name, p in model.named_parameters():
            if p.requires_grad and name not in self.exclude:
                self._params.append(p)
                self._anchors.append(p.detach().clone())

    def __call__(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any]) -> Tensor:
        """The proximal term (the arguments are the penalty interface; unused)."""
        if self.mu == 0 or not self._params:
            return torch.zeros(())
        return proximal_term(self._params, self._anchors, self.mu)
