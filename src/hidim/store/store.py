"""Read a hidim store: its tables as pandas DataFrames and its arrays as float32 clips.

Example::

    from hidim.store import Store

    store = Store("/data/echo_store")
    store.manifest.query("modality == 'US' and split == 'train'")
    clip = store.read_clip(store.manifest.series_key[0], start=0, length=32)  # [C, 32, H, W]

A :class:`Store` is cheap to construct and safe to pickle into DataLoader workers: array
handles are opened lazily in each process and never shipped between processes.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from hidim.errors import StoreError
from hidim.store.arrays import open_array, read_frames
from hidim.store.intensity import apply_intensity_norm, parse_intensity_norm
from hidim.store.layout import (
    ANNOTATIONS,
    LABELS,
    LEDGER,
    MANIFEST,
    STORE_FORMAT,
    STORE_FORMAT_VERSION,
    STORE_JSON,
)

__all__ = ["Store"]


class Store:
    """A curated store on disk (see :mod:`hidim.store.layout`).

    Args:
        path: the store directory written by ``hidim curate``.

    Raises:
        StoreError: ``path`` is not a hidim store, or its manifest is missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        root = Path(path)
        marker = root / STORE_JSON
        if not root.is_dir():
            raise StoreError(
                f"expected a hidim store directory, got {str(root)!r} which does not exist; "
                "create one with `hidim curate IN STORE`"
            )
        if not marker.is_file():
            raise StoreError(
                f"expected {STORE_JSON} in {root} (a hidim store), found none; "
                "create a store with `hidim curate IN STORE`"
            )
        info = json.loads(marker.read_text(encoding="utf-8"))
        if info.get("format") != STORE_FORMAT or int(info.get("version", 0)) > STORE_FORMAT_VERSION:
            raise StoreError(
                f"expected store format {STORE_FORMAT} version <= {STORE_FORMAT_VERSION}, got "
                f"{info}; upgrade hidim to read this store"
            )
        if not (root / MANIFEST).is_file():
            raise StoreError(
                f"expected {MANIFEST} in {root}, found none: the store is incomplete "
                "(curation stopped early?); re-run `hidim curate` with the same inputs to resume"
            )
        self.path = root
        self._manifest: pd.DataFrame | None = None
        self._by_key: dict[str, int] | None = None
        self._arrays: dict[str, zarr.Array] = {}
        self._norms: dict[str, dict[str, Any]] = {}
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ---- pickling: ship the path, never open handles ------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    # ---- tables --------------------------------------------------------------------------
    def reload(self) -> None:
        """Forget cached tables (after another process rewrote the store)."""
        self._manifest = None
        self._by_key = None
        self._arrays = {}
        self._norms = {}

    @property
    def manifest(self) -> pd.DataFrame:
        """One row per series (``manifest.parquet``)."""
        if self._manifest is None:
            self._manifest = pd.read_parquet(self.path / MANIFEST)
            self._by_key = {k: i for i, k in enumerate(self._manifest["series_key"])}
        return self._manifest

    def _optional_table(self, name: str, fix: str) -> pd.DataFrame:
        path = self.path / name
        if not path.is_file():
            raise StoreError(f"expected {name} in {self.path}, found none; {fix}")
        return pd.read_parquet(path)

    @property
    def has_labels(self) -> bool:
        """Whether ``labels.parquet`` exists."""
        return (self.path / LABELS).is_file()

    @property
    def has_annotations(self) -> bool:
        """Whether ``annotations.parquet`` exists."""
        return (self.path / ANNOTATIONS).is_file()

    @property
    def labels(self) -> pd.DataFrame:
        """Patient/study-level labels (``labels.parquet``); StoreError if none were imported."""
        return self._optional_table(LABELS, "import them with `hidim labels import STORE FILE`")

    @property
    def annotations(self) -> pd.DataFrame:
        """Imported annotations (``annotations.parquet``); StoreError if none were imported."""
        return self._optional_table(
            ANNOTATIONS, "import an MD.ai export with `hidim labels import STORE EXPORT.json`"
        )

    @property
    def ledger(self) -> pd.DataFrame:
        """Every input file with its status and reason (``ledger.parquet``)."""
        return self._optional_table(LEDGER, "re-run `hidim curate` to write it")

    # ---- arrays --------------------------------------------------------------------------
    def row(self, series_key: str) -> pd.Series:
        """The manifest row of ``series_key``; StoreError naming close matches if unknown."""
        manifest = self.manifest
        by_key = self._by_key or {}
        index = by_key.get(series_key)
        if index is None:
            close = difflib.get_close_matches(series_key, list(by_key), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise StoreError(
                f"expected a series_key listed in {MANIFEST}, got {series_key!r}{hint} "
                "(keys are in store.manifest.series_key)"
            )
        return manifest.iloc[index]

    def _open(self, series_key: str) -> zarr.Array:
        if self._pid != os.getpid():  # forked after opening: handles are not fork-safe
            self._arrays, self._pid = {}, os.getpid()
        z = self._arrays.get(series_key)
        if z is None:
            rel = self.row(series_key)["array_path"]
            z = open_array(self.path / str(rel))
            self._arrays[series_key] = z
        return z

    def n_frames(self, series_key: str) -> int:
        """Frames (T) of the stored array."""
        return int(self._open(series_key).shape[1])

    def read_array(self, series_key: str, *, normalised: bool = True) -> np.ndarray:
        """The whole series as float32 ``[C, T, H, W]``.

        Args:
            series_key: a key from ``manifest.series_key``.
            normalised: apply the recorded ``intensity_norm``; ``False`` gives the exact
                stored values (HU for CT, pixel values for US/MR).
        """
        return self._read(series_key, 0, None, normalised)

    def read_clip(
        self, series_key: str, start: int, length: int, *, normalised: bool = True
    ) -> np.ndarray:
        """Frames ``start : start + length`` as float32 ``[C, length, H, W]``.

        Raises:
            StoreError: the range is outside ``[0, n_frames]``.
        """
        if length < 0:
            raise StoreError(f"expected a clip length >= 0, got {length}")
        return self._read(series_key, int(start), int(start) + int(length), normalised)

    def intensity_norm(self, series_key: str) -> dict[str, Any]:
        """The recorded intensity normalisation of a series (see :mod:`.intensity`)."""
        record = self._norms.get(series_key)
        if record is None:
            record = parse_intensity_norm(self.row(series_key).get("intensity_norm"))
            self._norms[series_key] = record
        return dict(record)

    def _read(self, series_key: str, start: int, stop: int | None, normalised: bool) -> np.ndarray:
        raw = read_frames(self._open(series_key), start, stop, as_float=False)
        if not normalised:
            return raw.astype(np.float32, copy=False)
        return apply_intensity_norm(raw, self.intensity_norm(series_key), inplace=True)

    def check(self) -> list[str]:
        """Problems found: manifest rows whose array is missing or unreadable (empty = OK)."""
        problems: list[str] = []
        for key, rel in zip(self.manifest["series_key"], self.manifest["array_path"], strict=True):
            try:
                z = open_array(self.path / str(rel))
                if z.ndim != 4:
                    problems.append(f"{key}: array has {z.ndim} dims, expected 4")
            except StoreError as exc:
                problems.append(f"{key}: {exc}")
        return problems
