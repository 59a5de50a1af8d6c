"""Survival heads (``cox``, ``deephit``, ``discrete_hazard``) and the survival API in one place.

Pure losses live in :mod:`~hidim.tasks.cox`, :mod:`~hidim.tasks.discrete` and
:mod:`~hidim.tasks.deephit`; this module re-exports them (``hidim.tasks.survival.cox_nll``)
and wraps them as :class:`~hidim.tasks.base.Head` subclasses for the training loop.

Every survival head reads batch keys ``time`` (``[B]`` float > 0) and ``event`` (``[B]``
bool) and predicts

* ``score`` ``[B]`` -- higher = earlier event (what the C-index ranks by);
* ``risk`` ``[B]`` -- Cox: relative hazard ``exp(eta)``; discrete heads: cumulative
  incidence ``1 - S`` at the last grid time;
* ``survival`` ``[B, n_times]`` -- ``S(t)`` at :attr:`SurvivalHead.survival_times`
  (Cox: once :meth:`CoxHead.fit_baseline` has run).

Lifecycle the training loop follows: ``head.fit_time_grid(train_time, train_event)`` before
training (needed by the discrete heads, harmless for Cox), train, then for Cox
``head.fit_baseline(log_hazard_train, train_time, train_event)``. The grid and baseline are
buffers, so they travel in the checkpoint.

The non-proportional option is :class:`DiscreteHazardHead` with its default
``proportional=False``: one logit per interval from its own weight vector, i.e. covariate
effects that vary with time (``proportional=True`` is nnet-survival's proportional variant).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from hidim.errors import SurvivalDataError, TaskError
from hidim.tasks.base import Batch, Head, register_head
from hidim.tasks.cox import CoxMemoryBank, Ties, breslow_cumulative_hazard, cox_nll
from hidim.tasks.deephit import deephit_loss, deephit_nll, deephit_ranking_loss, pmf_to_survival
from hidim.tasks.discrete import (
    discretize,
    hazard_to_survival,
    logistic_hazard_nll,
    make_time_grid,
    restricted_mean_time_lost,
)
from hidim.tasks.survival_target import SurvivalTarget, check_survival_tensors

__all__ = [
    "SurvivalTarget",
    "cox_nll",
    "breslow_cumulative_hazard",
    "CoxMemoryBank",
    "make_time_grid",
    "discretize",
    "logistic_hazard_nll",
    "deephit_nll",
    "deephit_ranking_loss",
    "deephit_loss",
    "SurvivalHead",
    "CoxHead",
    "DeepHitHead",
    "DiscreteHazardHead",
]


def _check_in_features(in_features: int) -> None:
    if not isinstance(in_features, int) or in_features < 1:
        raise TaskError(f"in_features must be a positive int, received {in_features!r}")


def _batch_targets(batch: Batch, n: int) -> tuple[Tensor, Tensor]:
    missing = [k for k in ("time", "event") if k not in batch]
    if missing:
        raise SurvivalDataError(
            f"survival heads need batch keys 'time' and 'event'; missing {missing}. Add "
            "time/event columns to labels.parquet and select them as targets"
        )
    time = torch.as_tensor(batch["time"])
    event = check_survival_tensors(time, torch.as_tensor(batch["event"]), n=n)
    return time, event


class SurvivalHead(Head):
    """Shared machinery: the time grid (a buffer of ``n_bins + 1`` edges)."""

    task: ClassVar[str] = "survival"
    default_grid_scheme: ClassVar[Literal["quantile", "equidistant"]] = "quantile"
    time_edges: Tensor
    grid_fitted: Tensor

    def __init__(self, *, n_bins: int) -> None:
        super().__init__()
        if not isinstance(n_bins, int) or n_bins < 1:
            raise TaskError(f"n_bins must be a positive int, received {n_bins!r}")
        self.n_bins = n_bins
        self.register_buffer("time_edges", torch.zeros(n_bins + 1, dtype=torch.float64))
        self.register_buffer("grid_fitted", torch.zeros((), dtype=torch.bool))

    def fit_time_grid(
        self, time: Any, event: Any, *, scheme: Literal["quantile", "equidistant"] | None = None
    ) -> None:
        """Set the grid from *training* data (:func:`make_time_grid`); call before training.

        ``scheme`` defaults to ``"quantile"`` for the discrete heads (every interval holds
        events) and ``"equidistant"`` for Cox (the grid only samples ``S(t)`` for output).
        """
        edges = make_time_grid(
            time, self.n_bins, event=event, scheme=scheme or self.default_grid_scheme
        )
        self.set_time_grid(edges)

    def set_time_grid(self, edges: Any) -> None:
        """Set explicit edges ``[n_bins + 1]`` (``0 = e_0 < ... < e_K``)."""
        e = torch.as_tensor(np.asarray(edges, dtype=np.float64))
        if e.shape != (self.n_bins + 1,) or e[0] != 0 or not bool((e.diff() > 0).all()):
            raise TaskError(
                f"time-grid edges must be {self.n_bins + 1} increasing values from 0, received "
                f"shape {tuple(e.shape)}"
            )
        self.time_edges.copy_(e)
        self.grid_fitted.fill_(True)

    @property
    def survival_times(self) -> Tensor:
        """Times ``[n_bins]`` (the right edges) at which ``survival`` is predicted."""
        return self.time_edges[1:]

    def _require_grid(self) -> None:
        if not bool(self.grid_fitted):
            raise TaskError(
                f"{type(self).__name__}: the time grid is not set; call "
                "head.fit_time_grid(train_time, train_event) before training"
            )

    def _discrete_targets(self, batch: Batch, n: int, device: torch.device) -> tuple[Tensor, ...]:
        self._require_grid()
        time, event = _batch_targets(batch, n)
        idx, ev = discretize(time, event, self.time_edges.cpu().numpy())
        return (
            torch.as_tensor(idx, device=device),
            torch.as_tensor(ev, device=device),
            time.to(device),
        )


@register_head("cox")
class CoxHead(SurvivalHead):
    """Linear Cox head: ``eta = w . features`` (no bias: it cancels in the partial likelihood).

    Args:
        in_features: feature width ``D``.
        ties: ``"efron"`` or ``"breslow"``.
        memory_size: samples kept by a :class:`CoxMemoryBank` across training batches
            (0 = plain per-batch loss). Used only in training mode.
        n_times: number of grid times at which ``survival`` is predicted.
        dropout: dropout probability before the linear layer.
    """

    default_grid_scheme: ClassVar[Literal["quantile", "equidistant"]] = "equidistant"
    baseline_cumhaz: Tensor
    baseline_fitted: Tensor

    def __init__(
        self,
        *,
        in_features: int,
        ties: Ties = "efron",
        memory_size: int = 0,
        n_times: int = 50,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(n_bins=n_times)
        _check_in_features(in_features)
        self.ties: Ties = ties
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, 1, bias=False)
        self.bank = CoxMemoryBank(size=memory_size, ties=ties)
        self.register_buffer("baseline_cumhaz", torch.zeros(n_times, dtype=torch.float64))
        self.register_buffer("baseline_fitted", torch.zeros((), dtype=torch.bool))

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        return {"log_hazard": self.linear(self.dropout(features))[:, 0]}

    def loss(self, outputs: Mapping[str, Tensor], batch: Batch) -> Tensor:
        eta = outputs["log_hazard"]
        time, event = _batch_targets(batch, eta.shape[0])
        if "sample_weight" in batch:
            w = torch.as_tensor(batch["sample_weight"])
            if bool((w != w.flatten()[0]).any()):
                raise TaskError("the cox head does not support unequal sample weights")
        time = time.to(eta)
        if self.training and self.bank.size > 0:
            return self.bank.loss(eta, time, event)
        return cox_nll(eta, time, event, ties=self.ties, reduction="mean")

    @torch.no_grad()
    def fit_baseline(self, log_hazard: Tensor | np.ndarray, time: Any, event: Any) -> None:
        """Fit Breslow's baseline cumulative hazard on *training* data, store it in buffers.

        Sets the time grid from the training event times first if it is not set yet.

        Args:
            log_hazard: ``[N]`` (or ``[N, 1]``) training-set ``log_hazard`` outputs.
            time: ``[N]`` training times; event: ``[N]`` bool.
        """
        if not bool(self.grid_fitted):
            self.fit_time_grid(time, event)
        times, cumhaz = breslow_cumulative_hazard(log_hazard, time, event)
        grid = self.survival_times.cpu().numpy()
        pos = np.searchsorted(times, grid, side="right") - 1  # step function, right-continuous
        h = np.where(pos >= 0, cumhaz[np.maximum(pos, 0)], 0.0)
        self.baseline_cumhaz.copy_(torch.as_tensor(h))
        self.baseline_fitted.fill_(True)

    def predict(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        eta = outputs["log_hazard"]
        out = {"score": eta, "risk": torch.exp(eta)}
        if bool(self.baseline_fitted):
            h0 = self.baseline_cumhaz.to(eta)
            out["survival"] = torch.exp(-h0[None, :] * torch.exp(eta)[:, None])
        return out


@register_head("discrete_hazard")
class DiscreteHazardHead(SurvivalHead):
    """Discrete-time logistic hazard (nnet-survival / pycox ``LogisticHazard``).

    Args:
        in_features: feature width ``D``.
        n_bins: number of grid intervals ``K``.
        proportional: False (default): ``K`` independent logits -- time-varying covariate
            effects, i.e. *non-proportional* hazards. True: one shared linear predictor
            plus a per-interval bias (nnet-survival's proportional model).
        dropout: dropout probability before the linear layer.
    """

    def __init__(
        self,
        *,
        in_features: int,
        n_bins: int = 20,
        proportional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(n_bins=n_bins)
        _check_in_features(in_features)
        self.proportional = proportional
        self.dropout = nn.Dropout(dropout)
        if proportional:
            self.linear = nn.Linear(in_features, 1, bias=False)
            self.interval_bias = nn.Parameter(torch.zeros(n_bins))
        else:
            self.linear = nn.Linear(in_features, n_bins)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        z = self.linear(self.dropout(features))
        if self.proportional:
            z = z + self.interval_bias[None, :]
        return {"hazard_logits": z}

    def loss(self, outputs: Mapping[str, Tensor], batch: Batch) -> Tensor:
        logits = outputs["hazard_logits"]
        idx, ev, _ = self._discrete_targets(batch, logits.shape[0], logits.device)
        weight = batch.get("sample_weight")
        return logistic_hazard_nll(
            logits, idx, ev, weight=None if weight is None else torch.as_tensor(weight)
        )

    def predict(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        surv = hazard_to_survival(outputs["hazard_logits"])
        return {
            "score": restricted_mean_time_lost(surv, self.time_edges),
            "risk": 1.0 - surv[:, -1],
            "survival": surv,
        }


@register_head("deephit")
class DeepHitHead(SurvivalHead):
    """DeepHit, single risk: PMF over ``K`` intervals + "beyond the grid".

    Args:
        in_features: feature width ``D``.
        n_bins: number of grid intervals ``K``.
        alpha: weight of the likelihood term (``1 - alpha`` on ranking), pycox default 0.2.
        sigma: ranking-term scale, pycox default 0.1.
        dropout: dropout probability before the linear layer.
    """

    def __init__(
        self,
        *,
        in_features: int,
        n_bins: int = 20,
        alpha: float = 0.2,
        sigma: float = 0.1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(n_bins=n_bins)
        _check_in_features(in_features)
        if not 0.0 <= alpha <= 1.0 or sigma <= 0:
            raise TaskError(f"need 0 <= alpha <= 1 and sigma > 0, received {alpha}, {sigma}")
        self.alpha, self.sigma = alpha, sigma
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, n_bins + 1)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        return {"pmf_logits": self.linear(self.dropout(features))}

    def loss(self, outputs: Mapping[str, Tensor], batch: Batch) -> Tensor:
        logits = outputs["pmf_logits"]
        idx, ev, time = self._discrete_targets(batch, logits.shape[0], logits.device)
        weight = batch.get("sample_weight")
        return deephit_loss(
            logits,
            idx,
            ev,
            time,
            alpha=self.alpha,
            sigma=self.sigma,
            weight=None if weight is None else torch.as_tensor(weight),
        )

    def predict(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        surv = pmf_to_survival(outputs["pmf_logits"])
        return {
            "score": restricted_mean_time_lost(surv, self.time_edges),
            "risk": 1.0 - surv[:, -1],
            "survival": surv,
        }
