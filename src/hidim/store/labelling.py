"""Per-series targets, survival outcomes and tabular features, ready for a Dataset.

Shared by :class:`~hidim.store.dataset.ClipDataset` and
:class:`~hidim.store.study_dataset.StudyDataset`: it joins ``labels.parquet`` to manifest
rows, checks the requested target columns, drops (and records) rows without targets, and
pre-computes the arrays each item needs so that ``__getitem__`` does no pandas work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hidim.errors import LabelError
from hidim.store.layout import SPLITS
from hidim.store.store import Store
from hidim.store.tabular import TabularEncoder, labels_per_series

__all__ = ["LabelArrays", "prepare_labels", "select_rows", "as_names"]


def as_names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``None`` → ``()``, ``"a"`` → ``("a",)``, sequences → tuple."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def select_rows(
    store: Store,
    *,
    split: str | Sequence[str] | None,
    views: Sequence[str] | None,
) -> pd.DataFrame:
    """Manifest rows of the requested split(s) and views (index reset, key order)."""
    m = store.manifest
    splits = as_names(split)
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise LabelError(
            f"expected split in {SPLITS}, got {bad}; pass split='train', 'val' or 'test'"
        )
    if splits:
        m = m[m["split"].isin(splits)]
    if views is not None:
        m = m[m["view"].isin(list(views))]
    return m.sort_values("series_key", kind="stable").reset_index(drop=True)


@dataclass
class LabelArrays:
    """Arrays aligned with the kept manifest rows.

    Attributes:
        rows: the kept manifest rows (index reset).
        target: float32 ``[N, K]`` (K = number of target columns; NaN never appears).
        time: float32 ``[N]`` survival time (NaN when the labels have no ``time``).
        event: bool ``[N]`` event indicator (False when absent).
        tabular: float32 ``[N, F]``; tabular_missing: bool ``[N, F]``.
        encoder: the :class:`TabularEncoder` used (fitted on the training split).
        excluded: rows dropped, with ``series_key`` and ``reason``.
    """

    rows: pd.DataFrame
    target: np.ndarray
    time: np.ndarray
    event: np.ndarray
    tabular: np.ndarray
    tabular_missing: np.ndarray
    encoder: TabularEncoder
    excluded: pd.DataFrame


def _numeric(values: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
    if values.dropna().map(lambda v: isinstance(v, (bool, np.bool_))).all():
        return values.map(lambda v: np.nan if v is None else float(v)).astype(float).to_numpy()
    raise LabelError(
        f"expected numeric or true/false values in target column {name!r}, got "
        f"{values.dtype} (e.g. {values.dropna().iloc[0]!r}); encode classes as integers "
        "0..K-1 before `hidim labels import`"
    )


def prepare_labels(
    store: Store,
    rows: pd.DataFrame,
    *,
    targets: Sequence[str],
    tabular: Sequence[str],
    drop_unlabelled: bool,
    encoder: TabularEncoder | None = None,
) -> LabelArrays:
    """Join labels to ``rows`` and build the per-row arrays (see :class:`LabelArrays`).

    Raises:
        LabelError: targets/tabular requested but no labels imported, a column is missing,
            or a target column is not numeric.
    """
    need = bool(targets or tabular)
    if store.has_labels:
        labels = store.labels
    elif need:
        labels = store.labels  # raises StoreError with the fix
    else:
        labels = pd.DataFrame({"patient_key": pd.Series([], dtype=object)})
    per_series = labels_per_series(rows, labels)
    for col in targets:
        if col not in per_series.columns:
            raise LabelError(
                f"expected target column {col!r} in labels.parquet, available: "
                f"{sorted(per_series.columns)}; check the name or import it with `hidim labels import`"
            )
    target = (
        np.stack([_numeric(per_series[c], c) for c in targets], axis=1)
        if targets
        else np.zeros((len(rows), 0))
    )
    keep = np.ones(len(rows), dtype=bool)
    if targets and drop_unlabelled:
        keep = np.asarray(~np.isnan(target).any(axis=1), dtype=bool)
    excluded = pd.DataFrame(
        {
            "series_key": rows.loc[~keep, "series_key"].to_numpy(),
            "reason": "missing target value(s) in labels.parquet",
        }
    )
    if encoder is None:
        manifest = store.manifest
        train = manifest[manifest["split"] == "train"]
        fit_rows = train if len(train) else manifest
        encoder = TabularEncoder.fit(labels_per_series(fit_rows, labels), tabular)
    tab, tab_missing = encoder.transform(per_series)
    time = (
        pd.to_numeric(per_series["time"], errors="coerce").astype(float).to_numpy()
        if "time" in per_series.columns
        else np.full(len(rows), np.nan)
    )
    event = (
        per_series["event"]
        .map(lambda v: bool(v) if v is not None and not pd.isna(v) else False)
        .to_numpy(dtype=bool)
        if "event" in per_series.columns
        else np.zeros(len(rows), dtype=bool)
    )
    return LabelArrays(
        rows=rows[keep].reset_index(drop=True),
        target=target[keep].astype(np.float32),
        time=time[keep].astype(np.float32),
        event=event[keep],
        tabular=tab[keep],
        tabular_missing=tab_missing[keep],
        encoder=encoder,
        excluded=excluded,
    )
