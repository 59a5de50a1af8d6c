"""Import patient- or study-level labels (CSV/Parquet) into ``STORE/labels.parquet``.

Input: one row per patient (or per study, with a ``study_uid`` column) keyed by either

* ``patient_key`` — the store's key (PatientID as found in the curated DICOM), or
* ``patient_id`` (or ``PatientID``) — the hospital's identifier, mapped to ``patient_key``
  through the re-identification table of ``hidim deid`` (``id_map``). Without a table the
  value is used as is (a store curated from data that kept its PatientID);

and any outcome/covariate columns: binary (0/1, true/false, yes/no), continuous, ``time``
(> 0) with ``event`` (bool) for survival, demographics (``age``, ``sex``, ``site``...).

Checks raise :class:`~hidim.errors.LabelError` naming the file, column and line. Rows whose
patient/study is not in the store are reported by line number (never by identifier) and not
written — unmatched hospital IDs must not leak into the store.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hidim.curate.idmap import IdMap, load_id_map
from hidim.errors import LabelError
from hidim.provenance import file_sha256, write_run_json
from hidim.store.store import Store
from hidim.store.writer import write_labels

__all__ = ["LabelImportResult", "read_table", "validate_labels", "import_labels"]

_ALIASES = {"PatientID": "patient_id", "StudyInstanceUID": "study_uid", "patientid": "patient_id"}
_TRUE = {"1", "1.0", "true", "t", "yes", "y"}
_FALSE = {"0", "0.0", "false", "f", "no", "n"}


@dataclass
class LabelImportResult:
    """Outcome of :func:`import_labels`.

    Attributes:
        path: the label file.
        n_rows: data rows read.
        n_written: rows written to ``labels.parquet`` (matched to the store).
        unmatched_lines: line numbers (CSV: as a spreadsheet shows them, header = 1;
            Parquet: 1-based row) whose patient/study is not in the store.
        columns: label columns written (keys excluded).
    """

    path: Path
    n_rows: int = 0
    n_written: int = 0
    unmatched_lines: list[int] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet label file (identifiers kept as text)."""
    p = Path(path)
    if not p.is_file():
        raise LabelError(f"expected a label file at {p}, found none")
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(p)
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(
                p,
                sep="\t" if suffix == ".tsv" else ",",
                dtype={
                    "patient_id": str,
                    "patient_key": str,
                    "study_uid": str,
                    "PatientID": str,
                    "StudyInstanceUID": str,
                },
            )
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, OSError) as exc:
        raise LabelError(
            f"{p}: could not read it as {suffix[1:].upper()} ({exc}); check the file format"
        ) from None
    raise LabelError(
        f"{p}: expected a .csv, .tsv or .parquet label file (or an MD.ai .json export), got {suffix!r}"
    )


def _line(i: int, source: Path) -> int:
    return i + 2 if source.suffix.lower() != ".parquet" else i + 1


def _where(rows: Sequence[int], source: Path) -> str:
    unit = "row" if source.suffix.lower() == ".parquet" else "line"
    shown = ", ".join(str(_line(i, source)) for i in rows[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    return f"{unit}{'s' if len(rows) > 1 else ''} {shown}{more}"


def _as_bool(values: pd.Series, column: str, source: Path) -> pd.Series:
    def convert(v: object) -> object:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return pd.NA
        text = str(v).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        return "bad"

    out = values.map(convert)
    bad = [i for i, v in enumerate(out) if isinstance(v, str)]
    if bad:
        raise LabelError(
            f"{source}: column {column!r} must be true/false (1/0, yes/no), got "
            f"{values.iloc[bad[0]]!r} at {_where(bad, source)}"
        )
    return out.astype("boolean")


def validate_labels(df: pd.DataFrame, *, source: Path) -> pd.DataFrame:
    """Check and normalise a label table (keys as text, ``event`` bool, ``time`` > 0).

    Raises:
        LabelError: no key column, missing keys, duplicate keys, bad ``time``/``event`` or
            ``age`` values — naming the file, column and lines.
    """
    df = df.rename(columns={k: v for k, v in _ALIASES.items() if k in df.columns}).reset_index(
        drop=True
    )
    key = (
        "patient_key"
        if "patient_key" in df.columns
        else "patient_id"
        if "patient_id" in df.columns
        else None
    )
    if key is None:
        raise LabelError(
            f"{source}: expected a 'patient_key' (store key) or 'patient_id' (hospital ID, with "
            f"--id-map) column, found {list(df.columns)}"
        )
    for col in [key, "study_uid"]:
        if col in df.columns:
            df[col] = df[col].map(
                lambda v: (
                    None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
                )
            )
    blank = [i for i, v in enumerate(df[key]) if not v]
    if blank:
        raise LabelError(
            f"{source}: column {key!r} is empty at {_where(blank, source)}; every row needs a patient"
        )
    keys = [key] + (["study_uid"] if "study_uid" in df.columns else [])
    dup = df.duplicated(subset=keys, keep="first")
    if dup.any():
        raise LabelError(
            f"{source}: expected one row per {' + '.join(keys)}, got duplicates at "
            f"{_where(list(np.flatnonzero(dup.to_numpy())), source)}; merge them into one row"
        )
    if ("time" in df.columns) != ("event" in df.columns):
        raise LabelError(
            f"{source}: survival needs both 'time' and 'event' columns, found only one"
        )
    if "event" in df.columns:
        df["event"] = _as_bool(df["event"], "event", source)
    if "time" in df.columns:
        t = pd.to_numeric(df["time"], errors="coerce")
        bad = [
            i
            for i, (raw, v) in enumerate(zip(df["time"], t, strict=True))
            if pd.notna(raw) and not (v > 0)
        ]
        if bad:
            raise LabelError(
                f"{source}: column 'time' must be a number > 0 (time to event or censoring), got "
                f"{df['time'].iloc[bad[0]]!r} at {_where(bad, source)}"
            )
        half = [
            i
            for i, (a, b) in enumerate(zip(t, df["event"], strict=True))
            if pd.isna(a) != pd.isna(b)
        ]
        if half:
            raise LabelError(
                f"{source}: 'time' and 'event' must be both given or both empty; not so at {_where(half, source)}"
            )
        df["time"] = t.astype(float)
    if "age" in df.columns:
        age = pd.to_numeric(df["age"], errors="coerce")
        bad = [
            i
            for i, (raw, v) in enumerate(zip(df["age"], age, strict=True))
            if pd.notna(raw) and not (0 <= v <= 130)
        ]
        if bad:
            raise LabelError(
                f"{source}: column 'age' must be years in [0, 130], got {df['age'].iloc[bad[0]]!r} at {_where(bad, source)}"
            )
        df["age"] = age.astype(float)
    return df


def _map_ids(df: pd.DataFrame, id_map: IdMap | None, source: Path) -> pd.DataFrame:
    out = df.copy()
    if "patient_id" in out.columns:
        if id_map is not None:
            table = id_map.get("patient_id")
            if not table:
                raise LabelError(
                    f"{source}: the --id-map has no 'patient_id' rows to map column 'patient_id'"
                )
            out["patient_key"] = out["patient_id"].map(table)
        else:
            out["patient_key"] = out["patient_id"]
        out = out.drop(columns=["patient_id"])
    if "study_uid" in out.columns and id_map is not None and id_map.get("study_uid"):
        table = id_map["study_uid"]
        out["study_uid"] = out["study_uid"].map(lambda v: table.get(v, "\x00unmatched") if v else v)
    return out


def import_labels(
    store_dir: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    id_map: str | os.PathLike[str] | IdMap | None = None,
    merge: bool = False,
) -> LabelImportResult:
    """Validate a label file, map its identifiers to store keys, write ``labels.parquet``.

    Args:
        store_dir: a curated store.
        path: CSV/TSV/Parquet label file.
        id_map: the ``hidim deid`` re-identification table (path or loaded) when the file
            uses hospital identifiers.
        merge: add these columns/rows to existing labels (new values win) instead of
            replacing ``labels.parquet``.

    Returns:
        :class:`LabelImportResult` (unmatched rows listed by line number).
    """
    store = Store(store_dir)
    source = Path(path)
    table = id_map if isinstance(id_map, dict) or id_map is None else load_id_map(id_map)
    raw = validate_labels(read_table(source), source=source)
    mapped = _map_ids(raw, table, source)
    patients = set(store.manifest["patient_key"].dropna().astype(str))
    pairs = set(
        zip(
            store.manifest["patient_key"].astype(str),
            store.manifest["study_uid"].astype(str),
            strict=True,
        )
    )
    ok = mapped["patient_key"].isin(patients)
    if "study_uid" in mapped.columns:
        in_store = [
            (str(p), str(s)) in pairs
            for p, s in zip(mapped["patient_key"], mapped["study_uid"], strict=True)
        ]
        ok &= mapped["study_uid"].isna() | pd.Series(in_store, index=mapped.index)
    result = LabelImportResult(path=source, n_rows=len(mapped))
    result.unmatched_lines = [_line(int(i), source) for i in np.flatnonzero(~ok.to_numpy())]
    kept = mapped[ok].copy()
    if "study_uid" not in kept.columns:
        kept["study_uid"] = None
    kept = kept[
        [
            "patient_key",
            "study_uid",
            *[c for c in kept.columns if c not in ("patient_key", "study_uid")],
        ]
    ]
    if merge and store.has_labels:
        old = store.labels
        keys = ["patient_key", "study_uid"]
        kept = kept.set_index(keys).combine_first(old.set_index(keys)).reset_index()
    write_labels(store.path, kept)
    result.n_written = len(mapped[ok])
    result.columns = [c for c in kept.columns if c not in ("patient_key", "study_uid")]
    write_run_json(
        store.path / "provenance" / "labels_import",
        command="labels import",
        config={"file": source.name, "id_map": id_map is not None, "merge": merge},
        input_hashes={source.name: file_sha256(source)},
        extra={
            "rows": result.n_rows,
            "written": result.n_written,
            "unmatched_lines": result.unmatched_lines,
        },
    )
    return result
