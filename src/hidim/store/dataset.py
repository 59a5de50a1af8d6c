"""``ClipDataset``: clips ``[C, T, H, W]`` from a store, with targets and tabular features.

Example::

    from torch.utils.data import DataLoader
    from hidim.store import ClipDataset

    train = ClipDataset("/data/store", split="train", clip_frames=32, sampling="random",
                        targets="lvef", tabular=["age", "sex"], seed=0)
    for batch in DataLoader(train, batch_size=8, num_workers=4, shuffle=True):
        batch["clip"]          # float32 [B, C, 32, H, W]
        batch["target"]        # float32 [B]
        batch["tabular"]       # float32 [B, F]; batch["tabular_missing"] bool [B, F]

Clip length is in frames *at the store's (normalised) fps*. Short series are padded with
zero frames (``short="pad"``, the default) or looped (``short="loop"``); see
:mod:`hidim.store.sampling`. Worker-safe: each DataLoader worker opens the arrays it reads
in its own process; nothing but the store path and small arrays is pickled.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hidim.errors import StoreError
from hidim.store.labelling import LabelArrays, as_names, prepare_labels, select_rows
from hidim.store.sampling import (
    SAMPLING_MODES,
    SHORT_POLICIES,
    Sampling,
    ShortPolicy,
    all_starts,
    draw_start,
    fit_length,
)
from hidim.store.store import Store
from hidim.store.tabular import TabularEncoder

__all__ = ["ClipDataset", "item_rng", "open_store"]


def open_store(store: Store | str | os.PathLike[str]) -> Store:
    """A :class:`Store` from a Store or a path."""
    return store if isinstance(store, Store) else Store(store)


def item_rng(seed: int | None, epoch: int, index: int) -> np.random.Generator:
    """Random generator for one item.

    With a ``seed`` the draw depends only on ``(seed, epoch, index)``: identical whatever
    the number of DataLoader workers. Without one it is drawn from torch's generator, which
    DataLoader seeds per worker and epoch (reproducible under ``torch.manual_seed``).
    """
    if seed is not None:
        return np.random.default_rng([seed, epoch, index])
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


def check_sampling(sampling: str, short: str, clip_frames: int | None) -> None:
    """Validate the common sampling options (raises :class:`StoreError`)."""
    if sampling not in SAMPLING_MODES:
        raise StoreError(f"expected sampling in {SAMPLING_MODES}, got {sampling!r}")
    if short not in SHORT_POLICIES:
        raise StoreError(f"expected short in {SHORT_POLICIES}, got {short!r}")
    if clip_frames is not None and clip_frames < 1:
        raise StoreError(f"expected clip_frames >= 1 (or None for whole series), got {clip_frames}")


class ClipDataset(Dataset[dict[str, Any]]):
    """Clips from a hidim store, one item per series (or per clip with ``sampling="all"``).

    Args:
        store: a :class:`Store` or its path.
        split: ``"train"``, ``"val"``, ``"test"``, a list of them, or ``None`` for all.
        clip_frames: clip length L in frames; ``None`` reads whole series (batch size 1
            unless all series have the same length).
        sampling: ``"random"``, ``"centre"`` or ``"all"`` (see :mod:`.sampling`).
        targets: label column(s) for ``target``: one name → ``target`` is a scalar, a list
            → ``[K]``. Series missing any target are left out (see ``excluded``).
        tabular: label columns encoded into ``tabular`` ``[F]`` (z-scored numbers, one-hot
            text, statistics from the training split) with ``tabular_missing`` ``[F]``.
        views: keep only series with these view labels (``None``: all).
        seed: makes random clip starts reproducible (see :func:`item_rng`).
        stride: step between clip starts for ``sampling="all"`` (default L).
        short: ``"pad"`` or ``"loop"`` for series shorter than L.
        normalised: apply the recorded intensity normalisation (default) or give raw values.
        transform: callable applied to the clip tensor ``[C, L, H, W]`` (augmentation).
        tabular_encoder: reuse an encoder (e.g. the training set's) instead of fitting one.

    Item keys: ``clip`` float32 ``[C, L, H, W]``, ``series_key``, ``study_uid``,
    ``patient_key``, ``view`` (``""`` when unknown), ``target`` float32 (scalar, ``[K]``,
    or ``[0]`` without targets), ``time`` float32 (NaN without survival labels), ``event``
    bool, ``tabular`` float32 ``[F]``, ``tabular_missing`` bool ``[F]``, ``clip_start`` int.
    """

    def __init__(
        self,
        store: Store | str | os.PathLike[str],
        *,
        split: str | Sequence[str] | None,
        clip_frames: int | None,
        sampling: Sampling = "random",
        targets: str | Sequence[str] | None = None,
        tabular: Sequence[str] = (),
        views: Sequence[str] | None = None,
        seed: int | None = None,
        stride: int | None = None,
        short: ShortPolicy = "pad",
        normalised: bool = True,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        tabular_encoder: TabularEncoder | None = None,
    ) -> None:
        check_sampling(sampling, short, clip_frames)
        self.store = open_store(store)
        self.clip_frames = clip_frames
        self.sampling = sampling
        self.seed = seed
        self.short = short
        self.normalised = normalised
        self.transform = transform
        self.epoch = 0
        self._scalar_target = isinstance(targets, str)
        self.target_names = as_names(targets)
        rows = select_rows(self.store, split=split, views=views)
        self.labels: LabelArrays = prepare_labels(
            self.store,
            rows,
            targets=self.target_names,
            tabular=tuple(tabular),
            drop_unlabelled=True,
            encoder=tabular_encoder,
        )
        if len(self.labels.excluded):
            warnings.warn(
                f"ClipDataset: {len(self.labels.excluded)} series left out (no target); "
                "see dataset.excluded",
                stacklevel=2,
            )
        self.rows = self.labels.rows
        frames = (
            self.rows["n_frames"].astype(int).to_numpy() if len(self.rows) else np.zeros(0, int)
        )
        if sampling == "all" and clip_frames is not None:
            self._index = [
                (r, s)
                for r, t in enumerate(frames)
                for s in all_starts(int(t), clip_frames, stride)
            ]
        else:
            self._index = [(r, -1) for r in range(len(self.rows))]
        self._frames = frames

    # ---- public helpers ------------------------------------------------------------------
    @property
    def excluded(self) -> Any:
        """Series left out, with the reason (a DataFrame ``series_key``, ``reason``)."""
        return self.labels.excluded

    @property
    def tabular_names(self) -> list[str]:
        """Names of the ``tabular`` features, in order."""
        return list(self.labels.encoder.names)

    @property
    def tabular_encoder(self) -> TabularEncoder:
        """The encoder used; pass it to the validation/test datasets."""
        return self.labels.encoder

    def set_epoch(self, epoch: int) -> None:
        """Change the random clip starts drawn with a fixed ``seed`` (call once per epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._index)

    # ---- items ---------------------------------------------------------------------------
    def clip_start(self, index: int) -> int:
        """Start frame of item ``index`` (random draws use :func:`item_rng`)."""
        row, start = self._index[index]
        if self.clip_frames is not None and start >= 0:
            return start
        rng = item_rng(self.seed, self.epoch, index) if self.sampling == "random" else None
        return self.start_for(row, rng)

    def start_for(self, row: int, rng: np.random.Generator | None) -> int:
        """Centre or random start for manifest row ``row`` (``rng`` needed for random)."""
        n = int(self._frames[row])
        if self.sampling == "random" and self.clip_frames is not None:
            if rng is None:
                raise StoreError("expected a random generator for sampling='random'")
            return draw_start(n, self.clip_frames, "random", rng)
        return draw_start(n, self.clip_frames, "centre", np.random.default_rng(0))

    def read(self, row: int, start: int) -> torch.Tensor:
        """Clip ``[C, L, H, W]`` of manifest row ``row`` from ``start`` (padded/looped)."""
        key = str(self.rows.at[row, "series_key"])
        n = int(self._frames[row])
        length = n if self.clip_frames is None else min(self.clip_frames, n - start)
        clip = self.store.read_clip(key, start, length, normalised=self.normalised)
        if self.clip_frames is not None and length < self.clip_frames:
            clip = fit_length(clip, self.clip_frames, self.short)
        tensor = torch.from_numpy(np.ascontiguousarray(clip))
        return self.transform(tensor) if self.transform is not None else tensor

    def label_fields(self, row: int) -> dict[str, Any]:
        """Everything of an item except the clip (keys, target, survival, tabular)."""
        r = self.rows.iloc[row]
        target = torch.from_numpy(self.labels.target[row])
        return {
            "series_key": str(r["series_key"]),
            "study_uid": _text(r.get("study_uid")),
            "patient_key": _text(r.get("patient_key")),
            "view": _text(r.get("view")),
            "target": target[0] if self._scalar_target else target,
            "time": torch.tensor(self.labels.time[row], dtype=torch.float32),
            "event": torch.tensor(bool(self.labels.event[row])),
            "tabular": torch.from_numpy(self.labels.tabular[row]),
            "tabular_missing": torch.from_numpy(self.labels.tabular_missing[row]),
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self._index):
            raise IndexError(f"index {index} out of range for {len(self._index)} items")
        row, _ = self._index[index]
        start = self.clip_start(index)
        item = self.label_fields(row)
        item["clip"] = self.read(row, start)
        item["clip_start"] = start
        return item


def _text(value: Any) -> str:
    if value is None:
        return ""
    try:
        if bool(np.isnan(value)):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value)
