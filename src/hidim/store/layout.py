"""The on-disk layout of a hidim store: file names, keys and table schemas.

A store is a plain directory that pandas, polars, duckdb and zarr can read without hidim::

    STORE/
      store.json               format marker: {"format": "hidim-store", "version": 1}
      manifest.parquet         one row per series (MANIFEST_SCHEMA)
      ledger.parquet           one row per input file: ok / skipped / failed + reason
      labels.parquet           patient- or study-level targets and demographics (optional)
      annotations.parquet      imported annotations, e.g. MD.ai (optional)
      arrays/<series_key>.zarr zarr v3 array [C, T, H, W], lossless, chunked along T
      run.json                 provenance of the last command that wrote the store

Keys are pseudonymous and stable: ``series_key`` is the first 16 hex digits of the SHA-1 of
the unit's UID (the SeriesInstanceUID, or the SOPInstanceUID when one DICOM series holds
several cine loops, each stored as its own unit), so file names never carry a UID.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pyarrow as pa

__all__ = [
    "STORE_FORMAT",
    "STORE_FORMAT_VERSION",
    "STORE_JSON",
    "MANIFEST",
    "LEDGER",
    "LABELS",
    "ANNOTATIONS",
    "ARRAYS_DIR",
    "SPLITS",
    "LEDGER_STATUSES",
    "MANIFEST_SCHEMA",
    "LEDGER_SCHEMA",
    "ANNOTATION_SCHEMA",
    "LABEL_KEY_COLUMNS",
    "series_key",
    "input_id",
    "array_relpath",
    "conform",
]

STORE_FORMAT = "hidim-store"
STORE_FORMAT_VERSION = 1

STORE_JSON = "store.json"
MANIFEST = "manifest.parquet"
LEDGER = "ledger.parquet"
LABELS = "labels.parquet"
ANNOTATIONS = "annotations.parquet"
ARRAYS_DIR = "arrays"

SPLITS: tuple[str, ...] = ("train", "val", "test")
LEDGER_STATUSES: tuple[str, ...] = ("ok", "skipped", "failed")

#: Columns every manifest has, with their Arrow types. ``n_frames``, ``rows``, ``cols``,
#: ``fps`` and the spacings describe the *stored* array; ``*_original`` describe the DICOM.
#: ``sop_uids`` is the JSON list of SOPInstanceUIDs in T order (maps annotations to frames).
#: Any further column ``hidim.ingest`` reports is kept as it comes.
MANIFEST_SCHEMA = pa.schema(
    [
        ("series_key", pa.string()),
        ("key_uid", pa.string()),
        ("series_uid", pa.string()),
        ("study_uid", pa.string()),
        ("patient_key", pa.string()),
        ("modality", pa.string()),
        ("view", pa.string()),
        ("layout", pa.string()),
        ("channels", pa.int32()),
        ("n_frames", pa.int32()),
        ("rows", pa.int32()),
        ("cols", pa.int32()),
        ("n_frames_original", pa.int32()),
        ("rows_original", pa.int32()),
        ("cols_original", pa.int32()),
        ("fps_original", pa.float64()),
        ("fps_source", pa.string()),
        ("fps", pa.float64()),
        ("spacing_row_mm", pa.float64()),
        ("spacing_col_mm", pa.float64()),
        ("slice_thickness_mm", pa.float64()),
        ("slice_spacing_mm", pa.float64()),
        ("mr_sequence", pa.string()),
        ("manufacturer", pa.string()),
        ("model", pa.string()),
        ("institution", pa.string()),
        ("study_date", pa.string()),
        ("acquisition_datetime", pa.string()),
        ("intensity_norm", pa.string()),
        ("resize", pa.string()),
        ("split", pa.string()),
        ("content_hash", pa.string()),
        ("params_hash", pa.string()),
        ("array_path", pa.string()),
        ("stored_dtype", pa.string()),
        ("deidentified", pa.bool_()),
        ("sop_uids", pa.string()),
        ("curated_utc", pa.string()),
    ]
)

#: One row per input file. ``input_id`` is a hash of the path: the path itself (which may
#: carry PHI) is only stored in ``path`` when the user asks for it.
LEDGER_SCHEMA = pa.schema(
    [
        ("input_id", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("series_key", pa.string()),
        ("stage", pa.string()),
        ("path", pa.string()),
        ("run_utc", pa.string()),
    ]
)

#: Imported annotations (one row per annotation), keyed to store keys.
ANNOTATION_SCHEMA = pa.schema(
    [
        ("annotation_id", pa.string()),
        ("source", pa.string()),
        ("dataset", pa.string()),
        ("patient_key", pa.string()),
        ("study_uid", pa.string()),
        ("series_key", pa.string()),
        ("series_uid", pa.string()),
        ("sop_uid", pa.string()),
        ("frame", pa.int32()),
        ("frame_stored", pa.int32()),
        ("label_id", pa.string()),
        ("label_name", pa.string()),
        ("label_group", pa.string()),
        ("scope", pa.string()),
        ("annotation_mode", pa.string()),
        ("geometry", pa.string()),
        ("x", pa.float64()),
        ("y", pa.float64()),
        ("width", pa.float64()),
        ("height", pa.float64()),
        ("data", pa.string()),
        ("annotator", pa.string()),
        ("created_utc", pa.string()),
    ]
)

#: Columns that key a labels row: ``patient_key`` always, ``study_uid`` for study-level rows.
LABEL_KEY_COLUMNS: tuple[str, ...] = ("patient_key", "study_uid")


def series_key(uid: str) -> str:
    """Stable, pseudonymous key of a stored unit: first 16 hex of SHA-1 of its UID.

    Args:
        uid: the unit's UID (``SeriesInfo.key_uid``: SeriesInstanceUID, or SOPInstanceUID
            for one of several cine loops in one series).
    """
    return hashlib.sha1(uid.encode("utf-8")).hexdigest()[:16]


def input_id(path: str) -> str:
    """Ledger id of an input file: first 16 hex of SHA-256 of its path (never the path)."""
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def array_relpath(key: str) -> str:
    """Path of a series' array relative to the store root (``arrays/<key>.zarr``)."""
    return f"{ARRAYS_DIR}/{key}.zarr"


def _coerce(series: pd.Series, type_: pa.DataType) -> pd.Series:
    if pa.types.is_string(type_):
        return series.map(lambda v: None if _missing(v) else str(v)).astype(object)
    if pa.types.is_boolean(type_):
        return series.map(lambda v: None if _missing(v) else bool(v)).astype("boolean")
    if pa.types.is_integer(type_):
        return pd.to_numeric(series, errors="coerce").astype("Int32")
    if pa.types.is_floating(type_):
        return pd.to_numeric(series, errors="coerce").astype("float64")
    return series


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def conform(rows: pd.DataFrame | list[Mapping[str, Any]], schema: pa.Schema) -> pd.DataFrame:
    """A DataFrame with every column of ``schema`` (typed, in schema order) plus any extras.

    Missing schema columns are added as nulls; extra columns are kept after them. Values are
    coerced to the schema's types so that Parquet files written by different runs agree.
    """
    df = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows.copy()
    for name in schema.names:
        if name not in df.columns:
            df[name] = None
        df[name] = _coerce(df[name], schema.field(name).type)
    extras = [c for c in df.columns if c not in schema.names]
    return df[list(schema.names) + extras].reset_index(drop=True)
