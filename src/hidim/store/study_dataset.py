"""``StudyDataset``: one item per study with a clip per view ``[V, C, T, H, W]`` + view mask.

Example::

    ds = StudyDataset(store, split="train", views=["A4C", "PLAX"], clip_frames=16,
                      targets="event_1y")
    item = ds[0]
    item["clips"]       # float32 [2, C, 16, H, W]; a missing view is all zeros
    item["view_mask"]   # bool [2]; False where the study has no series of that view

All views of a study must share ``[C, H, W]``: curate with ``--size`` (aspect kept, padded)
when the views were acquired at different resolutions. When a study has several series of
one view, ``series_choice="first"`` takes the lowest ``series_key`` (deterministic) and
``"random"`` draws one per item (augmentation).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from hidim.errors import StoreError
from hidim.store.dataset import ClipDataset, check_sampling, item_rng, open_store
from hidim.store.sampling import Sampling, ShortPolicy
from hidim.store.store import Store
from hidim.store.tabular import TabularEncoder

__all__ = ["StudyDataset"]


class StudyDataset(Dataset[dict[str, Any]]):
    """Multi-view studies from a store.

    Args:
        store: a :class:`Store` or its path.
        views: the fixed view list, e.g. ``["A4C", "A2C", "PLAX"]`` (order of ``V``).
        split, clip_frames, targets, tabular, seed, short, normalised, transform,
            tabular_encoder: as for :class:`~hidim.store.dataset.ClipDataset`.
        sampling: ``"random"`` or ``"centre"`` (each view sampled independently).
        series_choice: ``"first"`` or ``"random"`` when a view has several series.

    Item keys: ``clips`` float32 ``[V, C, L, H, W]``, ``view_mask`` bool ``[V]``,
    ``series_keys`` (list of V strings, ``""`` when missing), ``study_uid``,
    ``patient_key``, ``target``, ``time``, ``event``, ``tabular``, ``tabular_missing``.
    """

    def __init__(
        self,
        store: Store | str | os.PathLike[str],
        *,
        views: Sequence[str],
        split: str | Sequence[str] | None,
        clip_frames: int,
        sampling: Sampling = "random",
        targets: str | Sequence[str] | None = None,
        tabular: Sequence[str] = (),
        seed: int | None = None,
        short: ShortPolicy = "pad",
        normalised: bool = True,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        tabular_encoder: TabularEncoder | None = None,
        series_choice: Literal["first", "random"] = "first",
    ) -> None:
        check_sampling(sampling, short, clip_frames)
        if sampling == "all":
            raise StoreError(
                "expected sampling 'random' or 'centre' for StudyDataset, got 'all'; use "
                "ClipDataset(sampling='all') for per-clip test-time averaging"
            )
        if not views:
            raise StoreError("expected at least one view name, got an empty list")
        if series_choice not in ("first", "random"):
            raise StoreError(f"expected series_choice 'first' or 'random', got {series_choice!r}")
        self.views = tuple(views)
        self.series_choice = series_choice
        self.seed = seed
        self.epoch = 0
        self.clips = ClipDataset(
            open_store(store),
            split=split,
            clip_frames=clip_frames,
            sampling=sampling,
            targets=targets,
            tabular=tabular,
            views=self.views,
            seed=seed,
            short=short,
            normalised=normalised,
            transform=transform,
            tabular_encoder=tabular_encoder,
        )
        rows = self.clips.rows
        studies: dict[str, list[list[int]]] = {}
        for i, (study, view) in enumerate(zip(rows["study_uid"], rows["view"], strict=True)):
            if study is None or (isinstance(study, float) and np.isnan(study)):
                continue
            slots = studies.setdefault(str(study), [[] for _ in self.views])
            slots[self.views.index(str(view))].append(i)
        self._studies = sorted(studies.items())
        self.excluded = pd.concat(
            [
                self.clips.excluded,
                pd.DataFrame(
                    {
                        "series_key": rows.loc[rows["study_uid"].isna(), "series_key"].to_numpy(),
                        "reason": "no study_uid",
                    }
                ),
            ],
            ignore_index=True,
        )

    @property
    def tabular_names(self) -> list[str]:
        """Names of the ``tabular`` features."""
        return self.clips.tabular_names

    @property
    def studies(self) -> tuple[tuple[str, tuple[tuple[int, ...], ...]], ...]:
        """Item ``i``'s ``(study_uid, slots)``: per view (in ``views`` order), the row
        indices into ``clips.rows`` of that study's series (empty tuple: view missing).

        A read-only copy; item order is the dataset's index order.
        """
        return tuple(
            (study, tuple(tuple(rows) for rows in slots)) for study, slots in self._studies
        )

    def set_epoch(self, epoch: int) -> None:
        """Change random draws made with a fixed seed (call once per epoch)."""
        self.epoch = int(epoch)
        self.clips.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self._studies)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self._studies):
            raise IndexError(f"index {index} out of range for {len(self._studies)} studies")
        study, slots = self._studies[index]
        rng = item_rng(self.seed, self.epoch, index)
        chosen = [
            (s[int(rng.integers(len(s)))] if self.series_choice == "random" else s[0])
            if s
            else None
            for s in slots
        ]
        clips: list[torch.Tensor | None] = []
        for row in chosen:
            start = self.clips.start_for(row, rng) if row is not None else 0
            clips.append(self.clips.read(row, start) if row is not None else None)
        present = [c for c in clips if c is not None]
        shapes = {tuple(c.shape) for c in present}
        if len(shapes) > 1:
            raise StoreError(
                f"expected every view of study #{index} to share [C, T, H, W], got {sorted(shapes)}; "
                "curate with --size H W so all views have one size (and one channel count)"
            )
        shape = present[0].shape
        stacked = torch.stack([c if c is not None else torch.zeros(shape) for c in clips])
        first = next(r for r in chosen if r is not None)
        item = self.clips.label_fields(first)
        for key in ("series_key", "view"):
            item.pop(key)
        item["study_uid"] = study
        item["clips"] = stacked
        item["view_mask"] = torch.tensor([r is not None for r in chosen])
        item["series_keys"] = [
            str(self.clips.rows.at[r, "series_key"]) if r is not None else "" for r in chosen
        ]
        return item
