"""The de-identification audit: one row per input, as Parquet, plus a rich summary.

Rows carry no PHI: inputs are named by a keyed hash of their path (``input_id``), outputs by
their new UIDs, and what was done by counts and categories — never values, never the words
OCR read. The re-identification table is a separate CSV (:func:`write_reid_table`) that must
live outside the released folder.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hidim.provenance import atomic_write_bytes

__all__ = [
    "AUDIT_FILE",
    "AUDIT_COLUMNS",
    "REID_KINDS",
    "read_audit",
    "write_audit",
    "read_reid_table",
    "write_reid_table",
    "summary_table",
]

AUDIT_FILE = "deid_audit.parquet"
REID_KINDS = (
    "patient_id",
    "patient_name",
    "study_uid",
    "series_uid",
    "sop_uid",
    "uid",
    "accession",
)

#: Columns of the audit (types: str unless noted).
AUDIT_COLUMNS: dict[str, str] = {
    "input_id": "str",
    "fingerprint": "str",
    "status": "str",  # ok | quarantined | failed | skipped
    "reason": "str",
    "output": "str",
    "study_uid": "str",
    "series_uid": "str",
    "sop_uid": "str",
    "modality": "str",
    "transfer_syntax_in": "str",
    "transfer_syntax_out": "str",
    "bytes_in": "int",
    "bytes_out": "int",
    "removed": "int",
    "emptied": "int",
    "dummied": "int",
    "uids_remapped": "int",
    "dates_shifted": "int",
    "pseudonyms": "int",
    "clean_removed": "int",
    "private_removed": "int",
    "private_kept": "int",
    "overlays_removed": "int",
    "curves_removed": "int",
    "unknown_removed": "int",
    "max_depth": "int",
    "shift_basis": "str",
    "pixel_decision": "str",
    "pixel_reason": "str",
    "sector_source": "str",
    "masked_fraction": "float",
    "ocr_boxes": "int",
    "ocr_boxes_in_sector": "int",
    "burned_in_annotation_in": "str",
    "repaired": "str",
    "seconds": "float",
}

_DEFAULTS = {"str": "", "int": 0, "float": 0.0}


def _normalise(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for col, kind in AUDIT_COLUMNS.items():
        value = row.get(col, _DEFAULTS[kind])
        if value is None:
            value = _DEFAULTS[kind]
        out[col] = {"str": str, "int": int, "float": float}[kind](value)
    return out


def write_audit(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write the audit rows as Parquet (atomically)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [_normalise(r) for r in rows]
    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64()}
    schema = pa.schema([(c, types[k]) for c, k in AUDIT_COLUMNS.items()])
    table = pa.Table.from_pylist(records, schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return atomic_write_bytes(path, sink.getvalue())


def read_audit(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of an existing audit (empty list when there is none)."""
    target = Path(path)
    if not target.is_file():
        return []
    import pyarrow.parquet as pq

    return pq.read_table(target).to_pylist()


def read_reid_table(path: str | os.PathLike[str]) -> dict[tuple[str, str], str]:
    """``{(kind, original): pseudonym}`` from an existing re-identification CSV."""
    target = Path(path)
    if not target.is_file():
        return {}
    with target.open(newline="", encoding="utf-8") as fh:
        return {(r["kind"], r["original"]): r["pseudonym"] for r in csv.DictReader(fh)}


def write_reid_table(path: str | os.PathLike[str], pairs: Mapping[tuple[str, str], str]) -> Path:
    """Write ``kind,original,pseudonym`` rows (sorted) atomically, readable by the owner only."""
    sink = io.StringIO()
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(["kind", "original", "pseudonym"])
    order = {k: i for i, k in enumerate(REID_KINDS)}
    for (kind, original), pseudonym in sorted(
        pairs.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])
    ):
        writer.writerow([kind, original, pseudonym])
    target = atomic_write_bytes(path, sink.getvalue().encode("utf-8"))
    os.chmod(target, 0o600)
    return target


def summary_table(rows: Iterable[Mapping[str, Any]], *, title: str = "hidim deid") -> Table:
    """A rich table of counts by status and by pixel decision (no PHI)."""
    rows = list(rows)
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    by_status: dict[str, int] = {}
    by_pixels: dict[str, int] = {}
    for r in rows:
        by_status[r.get("status", "")] = by_status.get(r.get("status", ""), 0) + 1
        if r.get("status") == "ok":
            key = r.get("pixel_decision", "") or "n/a"
            by_pixels[key] = by_pixels.get(key, 0) + 1
    for status in ("ok", "quarantined", "failed", "skipped"):
        table.add_row(f"files {status}", str(by_status.get(status, 0)))
    for decision, n in sorted(by_pixels.items()):
        table.add_row(f"pixels: {decision}", str(n))
    total = {
        "private elements removed": "private_removed",
        "overlay elements removed": "overlays_removed",
        "UIDs remapped": "uids_remapped",
        "dates/times shifted": "dates_shifted",
        "OCR text boxes masked": "ocr_boxes",
    }
    for label, col in total.items():
        table.add_row(label, str(sum(int(r.get(col, 0) or 0) for r in rows)))
    return table


def print_summary(rows: Iterable[Mapping[str, Any]], console: Console | None = None) -> None:
    """Print :func:`summary_table` to ``console`` (stdout by default)."""
    (console or Console()).print(summary_table(rows))
