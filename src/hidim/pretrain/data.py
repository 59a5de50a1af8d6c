"""Two views of every series, from a store's :class:`~hidim.store.ClipDataset` (no labels).

A positive pair is two clips of the **same series at different start times** — another
phase of the cycle, or another beat — each with its own temporal stride (frame skipping)
and its own video-consistent augmentation (:mod:`hidim.pretrain.augment`). A stride is
only used when the series holds the frames for it. What stays the
same across the pair is the patient's heart; what changes is phase, apparent heart rate,
framing and gain, which is what the encoder should learn to ignore (CVRL, Qian et al.
2021, uses the same temporally distant positives for video).

Draws depend only on ``(seed, epoch, manifest row)`` (:func:`hidim.store.dataset.item_rng`),
so they are reproducible and independent of the number of workers. The held-out set uses
one fixed epoch, so its SSL loss is comparable from epoch to epoch.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from hidim.errors import TrainingError
from hidim.pretrain.augment import VideoAugment
from hidim.pretrain.config import SSLConfig
from hidim.store.dataset import ClipDataset, item_rng

__all__ = ["PairDataset", "holdout_patients", "build_pair_datasets", "view_span"]


def view_span(clip_frames: int, stride: int) -> int:
    """Frames a view of ``clip_frames`` frames at temporal ``stride`` covers."""
    return (clip_frames - 1) * stride + 1


def holdout_patients(patients: Sequence[str], fraction: float, *, seed: int) -> set[str]:
    """A seeded random ``fraction`` of ``patients`` (patient level: no series leaks).

    At least one patient is held out when ``fraction > 0`` and at least two stay for
    training; ``fraction == 0`` holds out none.
    """
    unique = sorted({str(p) for p in patients})
    if fraction <= 0 or not unique:
        return set()
    k = int(round(fraction * len(unique)))
    k = min(max(k, 1), len(unique) - 2)
    if k < 1:
        raise TrainingError(
            f"data.holdout_fraction {fraction} leaves too few patients ({len(unique)}) to "
            "train on; set it to 0 or use a store with more patients"
        )
    order = np.random.default_rng([seed, 7919]).permutation(len(unique))
    return {unique[i] for i in order[:k]}


class PairDataset(Dataset[dict[str, Any]]):
    """Two augmented views ``[C, T, H, W]`` of each selected series.

    Args:
        base: A ``ClipDataset`` whose ``clip_frames`` is the span of the longest view
            (:func:`view_span` at ``max_stride``); only its rows and reader are used.
        rows: Row indices of ``base`` to serve (e.g. the training patients' series).
        clip_frames: Frames per view ``T``.
        max_stride: Largest temporal stride (each view draws one from ``1..max_stride``).
        augment: Per-view augmentation, or ``None`` for raw clips.
        seed: Seed of every draw.
        fixed_epoch: Always draw as in this epoch (held-out pairs stay the same).

    Item keys: ``view1``, ``view2`` float32 ``[C, T, H, W]``; ``series_key``,
    ``patient_key``; ``start1``, ``start2``, ``stride1``, ``stride2`` (ints).
    """

    def __init__(
        self,
        base: ClipDataset,
        *,
        rows: Sequence[int],
        clip_frames: int,
        max_stride: int,
        augment: VideoAugment | None,
        seed: int,
        fixed_epoch: int | None = None,
    ) -> None:
        if base.clip_frames is None or base.clip_frames < view_span(clip_frames, max_stride):
            raise TrainingError(
                f"the base ClipDataset reads {base.clip_frames} frames, a view needs "
                f"{view_span(clip_frames, max_stride)}; build it with build_pair_datasets"
            )
        self.base = base
        self.rows = [int(r) for r in rows]
        self.clip_frames = int(clip_frames)
        self.max_stride = int(max_stride)
        self.augment = augment
        self.seed = int(seed)
        self.fixed_epoch = fixed_epoch
        self.epoch = 0
        self._frames = base.rows["n_frames"].astype(int).to_numpy()

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """New clip starts, strides and augmentations for ``epoch``."""
        self.epoch = int(epoch)

    def draw(self, index: int) -> list[tuple[int, int]]:
        """``[(start, stride), (start, stride)]`` of item ``index``'s two views.

        A stride is capped at the largest one the series holds (a view never loops to
        reach it); the second start differs from the first whenever the series is long
        enough.
        """
        row = self.rows[index]
        epoch = self.epoch if self.fixed_epoch is None else self.fixed_epoch
        rng = item_rng(self.seed, epoch, row)
        n = int(self._frames[row])
        out: list[tuple[int, int]] = []
        # the largest stride the series holds without looping (looping would add a jump)
        fits = max(1, (n - 1) // max(1, self.clip_frames - 1))
        for k in range(2):
            stride = min(int(rng.integers(1, self.max_stride + 1)), fits)
            last = max(0, n - view_span(self.clip_frames, stride))  # latest valid start
            if k == 0 or last == 0:
                start = int(rng.integers(0, last + 1))
            else:  # uniform over [0, last] without the first view's start
                first = out[0][0]
                taken = 1 if first <= last else 0
                start = int(rng.integers(0, last + 1 - taken))
                start += 1 if taken and start >= first else 0
            out.append((start, stride))
        return out

    def _rng(self, index: int) -> np.random.Generator:
        epoch = self.epoch if self.fixed_epoch is None else self.fixed_epoch
        return np.random.default_rng([self.seed, epoch, self.rows[index], 1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.rows):
            raise IndexError(f"index {index} out of range for {len(self.rows)} series")
        row = self.rows[index]
        draws = self.draw(index)
        aug_rng = self._rng(index)
        item: dict[str, Any] = {
            "series_key": str(self.base.rows.at[row, "series_key"]),
            "patient_key": str(self.base.rows.at[row, "patient_key"]),
        }
        for k, (start, stride) in enumerate(draws, start=1):
            window = self.base.read(row, start)  # [C, span, H, W], looped/padded if short
            clip = window[:, : view_span(self.clip_frames, stride) : stride].contiguous()
            if self.augment is not None:
                clip, _ = self.augment(clip, aug_rng)
            item[f"view{k}"] = clip.to(torch.float32)
            item[f"start{k}"] = start
            item[f"stride{k}"] = stride
        return item


def build_pair_datasets(
    config: SSLConfig,
    *,
    seed: int,
    patients: Collection[str] | None = None,
) -> tuple[PairDataset, PairDataset | None, dict[str, Any]]:
    """Training and held-out pair datasets for a pretraining config.

    Args:
        config: The pretraining config.
        seed: Seed of the patient hold-out and of every draw.
        patients: Restrict to these patients (``None``: every patient of ``data.splits``).

    Returns:
        ``(train, holdout or None, info)``; ``info`` has the series/patient counts, the
        splits used and the held-out patients' count.

    Raises:
        TrainingError: no series match, or too few to form a batch.
    """
    d = config.data
    span = view_span(d.clip_frames, config.augment.max_stride)
    base = ClipDataset(
        d.store,
        split=list(d.splits),
        clip_frames=span,
        sampling="centre",
        views=d.views,
        short=d.short,
        seed=seed,
    )
    rows: pd.DataFrame = base.rows
    keep = np.ones(len(rows), dtype=bool)
    if patients is not None:
        keep = rows["patient_key"].isin(set(patients)).to_numpy()
    if keep.sum() < 2:
        raise TrainingError(
            f"pretraining needs at least 2 series, found {int(keep.sum())} in splits "
            f"{d.splits} with views {d.views} of {d.store}; check data.views / data.splits"
        )
    pool = rows[keep]
    held = holdout_patients(pool["patient_key"].astype(str).tolist(), d.holdout_fraction, seed=seed)
    is_held = pool["patient_key"].astype(str).isin(held).to_numpy()
    if is_held.sum() < 2:  # a loss needs two series: too small a hold-out trains instead
        is_held[:] = False
        held = set()
    train_rows = pool.index[~is_held].tolist()
    held_rows = pool.index[is_held].tolist()
    augment = VideoAugment(config=config.augment)
    common: dict[str, Any] = {
        "clip_frames": d.clip_frames,
        "max_stride": config.augment.max_stride,
        "augment": augment,
        "seed": seed,
    }
    train = PairDataset(base, rows=train_rows, **common)
    holdout = PairDataset(base, rows=held_rows, fixed_epoch=0, **common) if held_rows else None
    info = {
        "splits": list(d.splits),
        "views": d.views,
        "series": len(pool),
        "patients": int(pool["patient_key"].nunique()),
        "train_series": len(train_rows),
        "holdout_series": len(held_rows),
        "holdout_patients": len(held),
        "frames_median": float(np.median(pool["n_frames"].astype(float))),
    }
    return train, holdout, info
