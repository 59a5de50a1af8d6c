"""The de-identification audit: one row per input, as Parquet, plus a rich summary.

While a batch runs, finished rows are appended (and fsync'd) to a small JSON-lines journal
beside the audit, and new re-identification pairs are appended to the re-identification CSV,
every few hundred files: cheap (no rewrite of what is already on disk) and crash-safe (a
resumed run reads the Parquet audit plus the journal). The Parquet file is written once, at the
end of the batch, and the journal removed.

Rows carry no PHI: inputs are named by a keyed hash of their path (``input_id``), outputs by
their new UIDs, and what was done by counts and categories — never values, never the words
OCR read. The re-identification table is a separate CSV (:func:`write_reid_table`) that must
live outside the released folder.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hidim.provenance import atomic_write_bytes

__all__ = [
    "AUDIT_FILE",
    "JOURNAL_FILE",
    "append_journal",
    "read_journal",
    "append_reid_pairs",
    "AUDIT_COLUMNS",
    "REID_KINDS",
    "read_audit",
    "write_audit",
    "read_reid_table",
    "write_reid_table",
    "summary_table",
]

AUDIT_FILE = "deid_audit.parquet"
JOURNAL_FILE = ".deid_audit.journal.jsonl"
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
    "overlay_bits_cleared": "int",
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


def _jsonl(rows: Iterable[Mapping[str, Any]]) -> bytes:
    lines = []
    for row in rows:
        record = _normalise(row)
        for col, kind in AUDIT_COLUMNS.items():
            if kind == "float" and not math.isfinite(record[col]):
                record[col] = 0.0
        lines.append(json.dumps(record, sort_keys=True))
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def _schema() -> Any:
    import pyarrow as pa

    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64()}
    return pa.schema([(c, types[k]) for c, k in AUDIT_COLUMNS.items()])


def write_audit(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write the audit rows as Parquet (atomically).

    The rows go through Arrow's JSON reader with the fixed schema (C++ parsing, and no
    pandas import, which Arrow's Python-object conversion would trigger).
    """
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    schema = _schema()
    data = _jsonl(rows)
    if data:
        options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        table = pajson.read_json(io.BytesIO(data), parse_options=options).select(schema.names)
    else:
        table = schema.empty_table()
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


def _append_synced(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Append ``data`` as whole lines (after a torn last line, on a new line) and fsync."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, mode)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def append_journal(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Append audit rows to the run's journal (one JSON object per line, fsync'd)."""
    data = _jsonl(rows)
    if data:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        _append_synced(target, data)


def read_journal(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of an interrupted run's journal (a torn last line is ignored)."""
    target = Path(path)
    if not target.is_file():
        return []
    rows = []
    for line in target.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "input_id" in row:
            rows.append(row)
    return rows


def append_reid_pairs(path: str | os.PathLike[str], pairs: Mapping[tuple[str, str], str]) -> None:
    """Append ``kind,original,pseudonym`` rows to the re-identification CSV (created with a
    header and mode 0600 when missing; fsync'd). :func:`write_reid_table` rewrites it sorted
    at the end of a batch."""
    if not pairs:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sink = io.StringIO()
    writer = csv.writer(sink, lineterminator="\n")
    if not target.is_file() or target.stat().st_size == 0:
        writer.writerow(["kind", "original", "pseudonym"])
    for (kind, original), pseudonym in pairs.items():
        writer.writerow([kind, original, pseudonym])
    _append_synced(target, sink.getvalue().encode("utf-8"), mode=0o600)
    os.chmod(target, 0o600)


def read_reid_table(path: str | os.PathLike[str]) -> dict[tuple[str, str], str]:
    """``{(kind, original): pseudonym}`` from an existing re-identification CSV (rows torn by
    an interrupted append are ignored)."""
    target = Path(path)
    if not target.is_file():
        return {}
    text = target.read_text(encoding="utf-8", errors="replace")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a torn last row: its file is redone on resume
    return {
        (r["kind"], r["original"]): r["pseudonym"]
        for r in csv.DictReader(io.StringIO(text, newline=""))
        if r.get("kind") and r.get("original") is not None and r.get("pseudonym")
    }


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
