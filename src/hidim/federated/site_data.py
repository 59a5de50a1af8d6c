"""A site's data: hidim's DataModule restricted to the site's patients, with shared encoders.

:class:`SiteDataModule` is :class:`~hidim.training.datamodule.HidimDataModule` with two
changes: every split is restricted to the site's patients (when the site is a subset of a
store), and the tabular encoder and group vocabulary are *given* — built by the server from
all sites' aggregates — instead of fitted on the site's own training rows, so every site
encodes features identically. With ``patients=None`` and no preset encoder it behaves
exactly like ``HidimDataModule`` on the store's splits (the 1-site federation equals
central training, tested).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pandas as pd

from hidim.store import TabularEncoder
from hidim.training.config import DataConfig
from hidim.training.datamodule import GroupCoder, HidimDataModule, LabelledDataset

__all__ = ["SiteDataModule"]


class SiteDataModule(HidimDataModule):
    """Train/val/test of one site.

    Args:
        data: The ``data`` config section (``data.store`` = the site's store).
        multiview: One item per study (multi-view models).
        seed: Seed of clip starts and batch order.
        patients: The site's patients (``None``: all patients of the store).
        encoder: The federation's tabular encoder (``None``: fit on this site's training
            rows — only for describing the site before the federation's encoder exists).
        coder: The federation's group vocabulary.
    """

    def __init__(
        self,
        data: DataConfig,
        *,
        multiview: bool = False,
        seed: int = 0,
        patients: Collection[str] | None = None,
        encoder: TabularEncoder | None = None,
        coder: GroupCoder | None = None,
    ) -> None:
        super().__init__(data, multiview=multiview, seed=seed)
        self.patients = frozenset(patients) if patients is not None else None
        if encoder is not None:
            self.encoder = encoder
            self.coder = coder

    def _train_rows(self) -> pd.DataFrame:
        rows = super()._train_rows()
        if self.patients is not None:
            rows = rows[rows["patient_key"].isin(self.patients)]
        return rows

    def site_rows(self, split: str | None = None) -> pd.DataFrame:
        """Manifest rows of the site (selected views; one split or all)."""
        m = self.store.manifest
        if self.data.views is not None:
            m = m[m["view"].isin(self.data.views)]
        if self.patients is not None:
            m = m[m["patient_key"].isin(self.patients)]
        if split is not None:
            m = m[m["split"] == split]
        return m

    def split_dataset(self, split: str, *, sampling: str) -> LabelledDataset:
        """One split of the site as a labelled dataset."""
        return self.dataset(split, sampling=sampling, patients=self.patients)

    def setup(self, stage: str | None = None) -> None:
        """Build the site's train/val/test datasets (empty splits allowed; idempotent)."""
        if self.datasets:
            return
        d = self.data
        self.datasets["train"] = self.split_dataset("train", sampling=d.sampling)
        self.datasets["val"] = self.split_dataset("val", sampling=d.eval_sampling)
        self.datasets["test"] = self.split_dataset("test", sampling=d.eval_sampling)

    def eval_loader(self, split: str) -> Any:
        """Deterministic (centre-clip) batches of ``split``, in a fixed order."""
        self.setup()
        ds = self.datasets[split] if split != "train" else self.train_centre()
        return self._loader(ds, shuffle=False)

    def train_centre(self) -> LabelledDataset:
        """The training split with centre clips (for post-training statistics)."""
        return self.split_dataset("train", sampling="centre")
