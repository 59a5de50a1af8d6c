"""Atomic writes into a store: per-series arrays (temp dir + rename) and Parquet tables.

A reader never sees a half-written array or table:

* a series array is encoded into ``arrays/.tmp-<key>-<random>.zarr`` and renamed to
  ``arrays/<key>.zarr`` only when complete (a previous version is renamed aside first and
  removed after); leftovers of a crashed run are removed by :func:`remove_temporaries`;
* each array's ``zarr.json`` also carries its manifest row, so a run that dies before the
  manifest is written loses nothing: :func:`recover_rows` rebuilds those rows;
* Parquet tables are serialised in memory and written with
  :func:`hidim.provenance.atomic_write_bytes` (temp file + ``os.replace``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hidim.errors import StoreError
from hidim.provenance import atomic_write_bytes, atomic_write_text
from hidim.store.arrays import write_array
from hidim.store.layout import (
    ANNOTATION_SCHEMA,
    ANNOTATIONS,
    ARRAYS_DIR,
    LABELS,
    LEDGER,
    LEDGER_SCHEMA,
    MANIFEST,
    MANIFEST_SCHEMA,
    STORE_FORMAT,
    STORE_FORMAT_VERSION,
    STORE_JSON,
    array_relpath,
    conform,
)

__all__ = [
    "ROW_ATTRIBUTE",
    "init_store",
    "write_series_array",
    "write_table",
    "write_manifest",
    "write_ledger",
    "write_labels",
    "write_annotations",
    "remove_temporaries",
    "recover_rows",
    "jsonable_row",
]

#: Key under which a series array's ``zarr.json`` attributes hold its manifest row.
ROW_ATTRIBUTE = "hidim_manifest_row"


def init_store(store_dir: str | os.PathLike[str]) -> Path:
    """Create ``store_dir`` (and ``arrays/``) with its ``store.json`` marker if needed.

    Raises:
        StoreError: ``store_dir`` exists, is not empty and is not a hidim store (so curation
            never scatters files into an unrelated folder).
    """
    root = Path(store_dir)
    marker = root / STORE_JSON
    if root.exists() and not root.is_dir():
        raise StoreError(
            f"expected a directory for the store, got a file at {root}; pass a folder path"
        )
    if root.is_dir() and not marker.is_file() and any(root.iterdir()):
        raise StoreError(
            f"expected an empty folder or an existing hidim store at {root}, got a non-empty "
            f"folder without {STORE_JSON}; choose a new folder for the store"
        )
    (root / ARRAYS_DIR).mkdir(parents=True, exist_ok=True)
    if not marker.is_file():
        atomic_write_text(
            marker, json.dumps({"format": STORE_FORMAT, "version": STORE_FORMAT_VERSION}, indent=2)
        )
    return root


def jsonable_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest row with every value JSON-safe (numpy scalars → Python, others → str)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if v is None or isinstance(v, (bool, int, float, str)):
            out[k] = None if isinstance(v, float) and np.isnan(v) else v
        elif isinstance(v, np.generic):
            item = v.item()
            out[k] = None if isinstance(item, float) and np.isnan(item) else item
        elif isinstance(v, (list, tuple, dict)):
            out[k] = json.dumps(v, default=_json_default)
        else:
            out[k] = None if _is_missing(v) else str(v)
    return out


def _json_default(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def write_series_array(
    store_dir: str | os.PathLike[str],
    key: str,
    array: np.ndarray,
    *,
    row: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one series array atomically to ``arrays/<key>.zarr``.

    Args:
        store_dir: the store root (must exist; see :func:`init_store`).
        key: the series key.
        array: ``[C, T, H, W]`` values to store exactly.
        row: the series' manifest row, kept in the array's attributes for recovery.

    Returns:
        What :func:`hidim.store.arrays.write_array` returned plus ``array_path``.
    """
    arrays = Path(store_dir) / ARRAYS_DIR
    arrays.mkdir(parents=True, exist_ok=True)
    final = arrays / f"{key}.zarr"
    tmp = arrays / f".tmp-{key}-{uuid.uuid4().hex[:8]}.zarr"
    attrs = {ROW_ATTRIBUTE: jsonable_row(row or {})}
    try:
        info = write_array(tmp, array, attributes=attrs)
        if final.exists():
            old = arrays / f".old-{key}-{uuid.uuid4().hex[:8]}.zarr"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    info["array_path"] = array_relpath(key)
    return info


def remove_temporaries(store_dir: str | os.PathLike[str]) -> int:
    """Remove half-written arrays left by an interrupted run; returns how many."""
    arrays = Path(store_dir) / ARRAYS_DIR
    if not arrays.is_dir():
        return 0
    n = 0
    for p in arrays.iterdir():
        if p.name.startswith((".tmp-", ".old-")):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            n += 1
    return n


def recover_rows(store_dir: str | os.PathLike[str], known: Iterable[str]) -> list[dict[str, Any]]:
    """Manifest rows of complete arrays that the manifest does not list yet.

    Used when a run stopped after writing arrays but before writing the manifest.
    """
    arrays = Path(store_dir) / ARRAYS_DIR
    known_set = set(known)
    rows: list[dict[str, Any]] = []
    if not arrays.is_dir():
        return rows
    for p in sorted(arrays.glob("*.zarr")):
        key = p.name[: -len(".zarr")]
        if key in known_set or key.startswith("."):
            continue
        meta = p / "zarr.json"
        try:
            attrs = json.loads(meta.read_text(encoding="utf-8")).get("attributes", {})
        except (OSError, ValueError):
            continue
        row = attrs.get(ROW_ATTRIBUTE)
        if isinstance(row, dict) and row.get("series_key") == key:
            row = dict(row)
            row["array_path"] = array_relpath(key)
            row["stored_dtype"] = str(json.loads(meta.read_text(encoding="utf-8")).get("data_type"))
            rows.append(row)
    return rows


def write_table(path: str | os.PathLike[str], df: pd.DataFrame) -> Path:
    """Write ``df`` as Parquet atomically (no index column)."""
    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise StoreError(
            f"expected columns of one type each to write {Path(path).name}, got: {exc}; "
            "make every value in a column the same kind (numbers, text or true/false)"
        ) from exc
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return atomic_write_bytes(path, buf.getvalue())


def write_manifest(
    store_dir: str | os.PathLike[str], rows: pd.DataFrame | list[Mapping[str, Any]]
) -> Path:
    """Write ``manifest.parquet`` (conformed to :data:`MANIFEST_SCHEMA`, sorted by key)."""
    df = conform(rows, MANIFEST_SCHEMA)
    dup = df["series_key"][df["series_key"].duplicated()]
    if len(dup):
        raise StoreError(
            f"expected one manifest row per series_key, got duplicates {sorted(set(dup))[:5]}; "
            "this is a bug in the caller — report it"
        )
    df = df.sort_values("series_key", kind="stable").reset_index(drop=True)
    return write_table(Path(store_dir) / MANIFEST, df)


def write_ledger(
    store_dir: str | os.PathLike[str], rows: pd.DataFrame | list[Mapping[str, Any]]
) -> Path:
    """Write ``ledger.parquet`` (conformed to :data:`LEDGER_SCHEMA`)."""
    return write_table(Path(store_dir) / LEDGER, conform(rows, LEDGER_SCHEMA))


def write_labels(store_dir: str | os.PathLike[str], df: pd.DataFrame) -> Path:
    """Write ``labels.parquet`` as given (validated by ``hidim.curate.labels``)."""
    return write_table(Path(store_dir) / LABELS, df.reset_index(drop=True))


def write_annotations(
    store_dir: str | os.PathLike[str], rows: pd.DataFrame | list[Mapping[str, Any]]
) -> Path:
    """Write ``annotations.parquet`` (conformed to :data:`ANNOTATION_SCHEMA`)."""
    return write_table(Path(store_dir) / ANNOTATIONS, conform(rows, ANNOTATION_SCHEMA))
