"""The head interface every task implements, and the explicit head registry.

A head maps a feature tensor ``[B, D]`` (from a backbone, possibly fused with views and
tabular data) to raw outputs, computes its own loss from those outputs and a batch, and
turns outputs into user-facing predictions. ``models/`` and ``tasks/`` never import each
other; ``training/`` wires them together.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from torch import Tensor, nn

from hidim.errors import TaskError

__all__ = ["Head", "register_head", "get_head", "available_heads", "HEADS"]

Batch = Mapping[str, Any]


class Head(nn.Module, ABC):
    """Base class of every task head.

    Subclasses set ``task`` (e.g. ``"binary"``, ``"regression"``, ``"survival"``) and
    implement :meth:`forward`, :meth:`loss` and :meth:`predict`.

    Batch keys a head may read: ``"target"`` (``[B]`` float or long), ``"time"`` (``[B]``
    float, > 0) and ``"event"`` (``[B]`` bool) for survival, ``"sample_weight"`` (``[B]``).
    """

    task: ClassVar[str] = ""

    @abstractmethod
    def forward(self, features: Tensor) -> dict[str, Tensor]:
        """Raw outputs from features ``[B, D]`` (e.g. ``{"logits": [B, K]}``)."""

    @abstractmethod
    def loss(self, outputs: Mapping[str, Tensor], batch: Batch) -> Tensor:
        """Scalar training loss."""

    @abstractmethod
    def predict(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """User-facing predictions, one ``[B, ...]`` tensor per key.

        Conventional keys: ``"score"`` (``[B]``: the number metrics rank by — probability of
        the positive class, regression value, or risk where higher = earlier event),
        ``"prob"`` (``[B, K]``), ``"value"``, ``"risk"``, ``"survival"`` (``[B, n_times]``),
        ``"uncertainty"`` (``[B]``, higher = less sure).
        """


H = TypeVar("H", bound=type[Head])

HEADS: dict[str, type[Head]] = {}


def register_head(name: str) -> Callable[[H], H]:
    """Class decorator: register a head under ``name`` (explicit; no import-time magic)."""

    def deco(cls: H) -> H:
        if name in HEADS and HEADS[name] is not cls:
            raise TaskError(f"head name {name!r} is already registered to {HEADS[name].__name__}")
        HEADS[name] = cls
        return cls

    return deco


def available_heads() -> list[str]:
    """Names of the registered heads."""
    return sorted(HEADS)


def get_head(name: str) -> type[Head]:
    """The head class registered as ``name``, or an error that suggests the nearest name."""
    if name in HEADS:
        return HEADS[name]
    import difflib

    close = difflib.get_close_matches(name, HEADS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise TaskError(f"unknown head {name!r}; expected one of {available_heads()}.{hint}")
