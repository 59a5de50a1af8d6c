"""``HidimDataModule``: the store's Datasets per split, wrapped for training.

On top of :class:`hidim.store.ClipDataset` / :class:`hidim.store.StudyDataset` it adds

* the binarised target (``data.threshold``: e.g. EF < 40 % → 1);
* ``group__<col>`` batch keys: integer codes (−1 = missing) of every ``data.group_columns``
  label column, with one vocabulary for all splits, for fairness penalties and audits;
* a tabular encoder fitted on the *training* patients only (also under cross-validation);
* patient-level folds (``fold=(train_patients, val_patients)``) replacing the store's
  train/val assignment, the test split untouched;
* the batch sampler ``data.balanced_batches`` asks for (class-stratified or
  event-guaranteeing), reshuffled reproducibly every epoch;
* a collate function that keeps key strings as lists.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from hidim.errors import TrainingError
from hidim.store import ClipDataset, Store, StudyDataset, TabularEncoder, labels_per_series
from hidim.training.config import DataConfig
from hidim.training.samplers import EventBatchSampler, StratifiedBatchSampler

__all__ = [
    "HidimDataModule",
    "LabelledDataset",
    "GroupCoder",
    "collate_items",
    "tabular_layout",
    "build_dataset",
]


def collate_items(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack tensors, keep strings and lists as per-sample lists, ints as a long tensor."""
    if not items:
        raise TrainingError("cannot collate an empty batch")
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        first = values[0]
        if isinstance(first, torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(first, bool):
            out[key] = torch.tensor(values, dtype=torch.bool)
        elif isinstance(first, int):
            out[key] = torch.tensor(values, dtype=torch.long)
        elif isinstance(first, float):
            out[key] = torch.tensor(values, dtype=torch.float32)
        else:
            out[key] = list(values)
    return out


def tabular_layout(encoder: TabularEncoder) -> tuple[int, list[tuple[int, int]]]:
    """``(F, one-hot groups as (start, n_categories))`` of a store :class:`TabularEncoder`."""
    groups: list[tuple[int, int]] = []
    j = 0
    for col in encoder.columns:
        if col in encoder.categories:
            k = len(encoder.categories[col])
            if k:
                groups.append((j, k))
            j += k
        else:
            j += 1
    return encoder.n_features, groups


@dataclass(frozen=True)
class GroupCoder:
    """Integer codes for label columns (one vocabulary across splits; −1 = missing)."""

    vocab: dict[str, list[str]]

    @classmethod
    def fit(cls, labels: pd.DataFrame, columns: Sequence[str]) -> GroupCoder:
        """Vocabulary = sorted distinct values (as text) of each column in ``labels``."""
        vocab: dict[str, list[str]] = {}
        for col in columns:
            if col not in labels.columns:
                raise TrainingError(
                    f"data.group_columns lists {col!r}, which labels.parquet does not have; "
                    f"available: {sorted(c for c in labels.columns if c != 'patient_key')}"
                )
            vocab[col] = sorted({_text(v) for v in labels[col] if _text(v)})
        return cls(vocab=vocab)

    def codes(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """``{col: int64 [N]}`` for the rows of ``frame`` (label columns per series)."""
        out = {}
        for col, values in self.vocab.items():
            index = {v: i for i, v in enumerate(values)}
            column = frame[col] if col in frame.columns else pd.Series([None] * len(frame))
            out[col] = np.array([index.get(_text(v), -1) for v in column], dtype=np.int64)
        return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value)


class LabelledDataset(Dataset[dict[str, Any]]):
    """A store dataset (or a patient subset of it) with binarised targets and group codes.

    Args:
        base: A ``ClipDataset`` or ``StudyDataset``.
        indices: Item indices of ``base`` to keep (``None``: all).
        threshold: Binarise ``target`` (see :class:`~hidim.training.config.DataConfig`).
        positive_below: Direction of ``threshold``.
        groups: ``{col: {key: code}}`` keyed by ``series_key`` (clips) or ``study_uid``.
    """

    def __init__(
        self,
        base: ClipDataset | StudyDataset,
        *,
        indices: Sequence[int] | None = None,
        threshold: float | None = None,
        positive_below: bool = True,
        groups: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        self.base = base
        self.indices = list(range(len(base))) if indices is None else list(indices)
        self.threshold = threshold
        self.positive_below = positive_below
        self.groups = {k: dict(v) for k, v in (groups or {}).items()}
        self.study_level = isinstance(base, StudyDataset)

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        """Forward to the base dataset (new random clip starts for a fixed seed)."""
        self.base.set_epoch(epoch)

    def binarise(self, target: torch.Tensor) -> torch.Tensor:
        """Apply ``threshold`` (identity when it is ``None``)."""
        if self.threshold is None:
            return target
        hit = target < self.threshold if self.positive_below else target >= self.threshold
        return hit.to(torch.float32)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.base[self.indices[index]])
        item["target"] = self.binarise(item["target"])
        key = item["study_uid"] if self.study_level else item["series_key"]
        for col, codes in self.groups.items():
            item[f"group__{col}"] = torch.tensor(codes.get(key, -1), dtype=torch.long)
        return item


def _rows(base: ClipDataset | StudyDataset) -> pd.DataFrame:
    return base.clips.rows if isinstance(base, StudyDataset) else base.rows


def build_dataset(
    store: Store,
    data: DataConfig,
    *,
    split: str | Sequence[str] | None,
    sampling: str,
    multiview: bool,
    seed: int | None,
    encoder: TabularEncoder | None,
    coder: GroupCoder | None,
    patients: Collection[str] | None = None,
    stride: int | None = None,
) -> LabelledDataset:
    """One split (or patient subset) as a :class:`LabelledDataset`."""
    common: dict[str, Any] = {
        "split": split,
        "clip_frames": data.clip_frames,
        "sampling": sampling,
        "targets": data.target,
        "tabular": tuple(data.tabular),
        "seed": seed,
        "short": data.short,
        "tabular_encoder": encoder,
    }
    base: ClipDataset | StudyDataset
    if multiview:
        base = StudyDataset(store, views=list(data.views or ()), **common)
    else:
        base = ClipDataset(store, views=data.views, stride=stride, **common)
    rows = _rows(base)
    indices: list[int] | None = None
    if patients is not None:
        wanted = set(patients)
        if multiview:
            keep = {
                str(s)
                for s, p in zip(rows["study_uid"], rows["patient_key"], strict=True)
                if p in wanted
            }
            indices = [i for i, (study, _) in enumerate(base.studies) if study in keep]  # type: ignore[union-attr]
        else:
            if sampling == "all":
                raise TrainingError(
                    "a patient subset needs one item per series (not sampling='all')"
                )
            # one item per series: item i is manifest row i of the dataset
            indices = np.flatnonzero(rows["patient_key"].isin(wanted).to_numpy()).tolist()
    groups: dict[str, dict[str, int]] = {}
    if coder is not None and coder.vocab and len(rows):
        per = labels_per_series(rows, store.labels)
        codes = coder.codes(per)
        keys = rows["study_uid"] if multiview else rows["series_key"]
        for col, values in codes.items():
            groups[col] = {str(k): int(c) for k, c in zip(keys, values, strict=True)}
    return LabelledDataset(
        base,
        indices=indices,
        threshold=data.threshold,
        positive_below=data.positive_below,
        groups=groups,
    )


class HidimDataModule(L.LightningDataModule):
    """Train/val/test loaders over a hidim store.

    Args:
        data: The ``data`` config section.
        multiview: One item per study with a clip per ``data.views`` slot.
        seed: Seed of random clip starts and batch samplers.
        fold: ``(train_patients, val_patients)`` to use instead of the store's split column
            (cross-validation); the ``test`` split stays the store's.
    """

    def __init__(
        self,
        data: DataConfig,
        *,
        multiview: bool = False,
        seed: int = 0,
        fold: tuple[Collection[str], Collection[str]] | None = None,
    ) -> None:
        super().__init__()
        self.data = data
        self.multiview = multiview
        self.seed = int(seed)
        self.fold = fold
        self.store = Store(data.store)
        self.encoder: TabularEncoder | None = None
        self.coder: GroupCoder | None = None
        self.datasets: dict[str, LabelledDataset] = {}
        self._sampler: StratifiedBatchSampler | None = None

    # ---- set-up ---------------------------------------------------------------------------
    def _train_rows(self) -> pd.DataFrame:
        m = self.store.manifest
        if self.data.views is not None:
            m = m[m["view"].isin(self.data.views)]
        if self.fold is not None:
            return m[m["patient_key"].isin(set(self.fold[0]))]
        return m[m["split"] == "train"]

    def prepare(self) -> None:
        """Fit the tabular encoder (training patients) and the group vocabulary."""
        if self.encoder is not None:
            return
        labels = self.store.labels if self.store.has_labels else None
        if self.data.tabular:
            if labels is None:
                raise TrainingError("data.tabular needs labels.parquet; run `hidim labels import`")
            rows = self._train_rows()
            if rows.empty:
                raise TrainingError("no training series to fit the tabular encoder on")
            self.encoder = TabularEncoder.fit(labels_per_series(rows, labels), self.data.tabular)
        else:
            self.encoder = TabularEncoder()
        if self.data.group_columns:
            if labels is None:
                raise TrainingError("data.group_columns needs labels.parquet")
            self.coder = GroupCoder.fit(labels, self.data.group_columns)

    def dataset(
        self,
        split: str | Sequence[str] | None,
        *,
        sampling: str,
        patients: Collection[str] | None = None,
        stride: int | None = None,
    ) -> LabelledDataset:
        """A labelled dataset of ``split`` with this module's encoder and vocabulary."""
        self.prepare()
        return build_dataset(
            self.store,
            self.data,
            split=split,
            sampling=sampling,
            multiview=self.multiview,
            seed=self.seed,
            encoder=self.encoder,
            coder=self.coder,
            patients=patients,
            stride=stride,
        )

    def setup(self, stage: str | None = None) -> None:
        """Build the train/val/test datasets (idempotent)."""
        if self.datasets:
            return
        d = self.data
        if self.fold is None:
            self.datasets["train"] = self.dataset("train", sampling=d.sampling)
            self.datasets["val"] = self.dataset("val", sampling=d.eval_sampling)
        else:
            train_p, val_p = self.fold
            pool = ["train", "val"]
            self.datasets["train"] = self.dataset(pool, sampling=d.sampling, patients=train_p)
            self.datasets["val"] = self.dataset(pool, sampling=d.eval_sampling, patients=val_p)
        self.datasets["test"] = self.dataset("test", sampling=d.eval_sampling)
        for name in ("train", "val"):
            if len(self.datasets[name]) == 0:
                raise TrainingError(
                    f"the {name} split has no labelled items (views={d.views}, "
                    f"target={d.target!r}); check the store's split column and labels"
                )

    # ---- facts the model needs ------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        """Channels of the selected series (one value, or an error)."""
        m = self.store.manifest
        if self.data.views is not None:
            m = m[m["view"].isin(self.data.views)]
        channels = sorted({int(c) for c in m["channels"].dropna()})
        if len(channels) != 1:
            raise TrainingError(
                f"the selected series have channel counts {channels}; set model.in_channels "
                "and curate to one channel count"
            )
        return channels[0]

    def train_arrays(self) -> dict[str, np.ndarray]:
        """Training ``target`` (binarised), ``time``, ``event`` — one entry per item."""
        self.setup()
        ds = self.datasets["train"]
        base = ds.base.clips if isinstance(ds.base, StudyDataset) else ds.base
        labels = base.labels
        if isinstance(ds.base, StudyDataset):
            first_rows = [next(r[0] for r in slots if r) for _, slots in ds.base.studies]
            rows = np.asarray([first_rows[i] for i in ds.indices], dtype=int)
        else:  # training sampling is random/centre: item i is row i
            rows = np.asarray(ds.indices, dtype=int)
        target = labels.target[rows, 0] if labels.target.shape[1] else np.zeros(len(rows))
        t = torch.from_numpy(np.asarray(target, dtype=np.float32))
        return {
            "target": ds.binarise(t).numpy(),
            "time": labels.time[rows],
            "event": labels.event[rows],
        }

    def tabular_layout(self) -> tuple[int, list[tuple[int, int]]]:
        """``(F, one-hot groups)`` of the fitted tabular encoder."""
        self.prepare()
        return tabular_layout(self.encoder)  # type: ignore[arg-type]

    # ---- loaders --------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """New random starts and batch order for ``epoch`` (called by the LightningModule)."""
        if "train" in self.datasets:
            self.datasets["train"].set_epoch(epoch)
        if self._sampler is not None:
            self._sampler.set_epoch(epoch)

    def _loader(self, ds: LabelledDataset, *, shuffle: bool, batch_size: int | None = None):
        d = self.data
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            ds,
            batch_size=batch_size or d.batch_size,
            shuffle=shuffle,
            num_workers=d.num_workers,
            collate_fn=collate_items,
            generator=generator,
            persistent_workers=False,
            pin_memory=False,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (or balanced) training batches."""
        self.setup()
        ds = self.datasets["train"]
        d = self.data
        if d.balanced_batches == "none":
            return self._loader(ds, shuffle=True)
        arrays = self.train_arrays()
        if d.balanced_batches == "events":
            self._sampler = EventBatchSampler(
                arrays["event"], batch_size=d.batch_size, min_events=d.min_events, seed=self.seed
            )
        else:
            self._sampler = StratifiedBatchSampler(
                np.nan_to_num(arrays["target"], nan=-1).astype(int),
                batch_size=d.batch_size,
                seed=self.seed,
            )
        return DataLoader(
            ds,
            batch_sampler=self._sampler,
            num_workers=d.num_workers,
            collate_fn=collate_items,
            persistent_workers=False,
        )

    def val_dataloader(self) -> DataLoader:
        """Validation batches (deterministic clips)."""
        self.setup()
        return self._loader(self.datasets["val"], shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches (deterministic clips)."""
        self.setup()
        return self._loader(self.datasets["test"], shuffle=False)
