"""Batch samplers that control what every training batch contains.

* :class:`StratifiedBatchSampler` spreads each stratum (class label) evenly across batches,
  so a rare class appears in every batch instead of in a few.
* :class:`EventBatchSampler` guarantees at least ``min_events`` observed events per batch:
  a Cox partial likelihood is undefined (zero gradient) on a batch with no events, which
  small batches of 3-D clips hit often when events are rare.

Both are deterministic given ``seed`` and the epoch (:meth:`set_epoch`), and cover every
index exactly once per epoch (no oversampling, which would bias the loss).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from hidim.errors import TrainingError

__all__ = ["StratifiedBatchSampler", "EventBatchSampler", "spread_batches"]


def spread_batches(
    strata: Sequence[np.ndarray], n_batches: int, rng: np.random.Generator
) -> list[list[int]]:
    """Deal shuffled members of every stratum round-robin into ``n_batches`` batches.

    Each batch receives ``floor`` or ``ceil`` of ``len(stratum) / n_batches`` members of each
    stratum; the order inside each batch is shuffled.
    """
    batches: list[list[int]] = [[] for _ in range(n_batches)]
    offset = 0
    for members in strata:
        perm = rng.permutation(members)
        for j, idx in enumerate(perm):
            batches[(offset + j) % n_batches].append(int(idx))
        offset += len(perm)
    for b in batches:
        rng.shuffle(b)
    rng.shuffle(batches)
    return [b for b in batches if b]


class StratifiedBatchSampler(Sampler[list[int]]):
    """Batches of ~``batch_size`` with every stratum spread evenly.

    Args:
        labels: ``[N]`` stratum of each dataset index (class label, event flag...).
        batch_size: Target batch size (batches differ by at most the number of strata).
        seed: Base seed; the epoch is mixed in (see :meth:`set_epoch`).
    """

    def __init__(self, labels: Sequence[int] | np.ndarray, *, batch_size: int, seed: int = 0):
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.size == 0:
            raise TrainingError(f"expected a non-empty [N] label vector, got shape {lab.shape}")
        if batch_size < 1:
            raise TrainingError(f"batch_size must be >= 1, got {batch_size}")
        self.labels = lab
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle differently (but reproducibly) for ``epoch``."""
        self.epoch = int(epoch)

    def n_batches(self) -> int:
        """Batches per epoch."""
        return max(1, math.ceil(self.labels.size / self.batch_size))

    def _strata(self) -> list[np.ndarray]:
        return [np.flatnonzero(self.labels == v) for v in np.unique(self.labels)]

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        yield from spread_batches(self._strata(), self.n_batches(), rng)

    def __len__(self) -> int:
        return self.n_batches()


class EventBatchSampler(StratifiedBatchSampler):
    """Every batch holds at least ``min_events`` events (batches grow when events are rare).

    Args:
        events: ``[N]`` bool, True where the event was observed.
        batch_size: Target batch size.
        min_events: Events each batch must contain.
        seed: Base seed.

    If the data hold ``E`` events, there are at most ``E // min_events`` batches, so with
    few events batches are larger than ``batch_size`` rather than event-free.
    """

    def __init__(
        self,
        events: Sequence[bool] | np.ndarray,
        *,
        batch_size: int,
        min_events: int = 2,
        seed: int = 0,
    ) -> None:
        ev = np.asarray(events, dtype=bool)
        super().__init__(ev.astype(int), batch_size=batch_size, seed=seed)
        if min_events < 1:
            raise TrainingError(f"min_events must be >= 1, got {min_events}")
        n_events = int(ev.sum())
        if n_events < min_events:
            raise TrainingError(
                f"the training split has {n_events} events, fewer than min_events={min_events} "
                "per batch; lower data.min_events or check the event column"
            )
        self.min_events = int(min_events)
        self.n_events = n_events

    def n_batches(self) -> int:
        """``min(ceil(N / batch_size), E // min_events)``."""
        return max(1, min(super().n_batches(), self.n_events // self.min_events))
