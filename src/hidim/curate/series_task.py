"""One unit of curation work: read a series, normalise it, write its array atomically.

:func:`curate_series` is a picklable top-level function run by
:func:`hidim.parallel.run_tasks` in-process, on a process pool or on Dask workers. It
returns the series' manifest row; it raises on a bad series (the runner records the error
and the batch goes on). Resuming: when the store already holds this series with the same
content hash (SHA-256 of its files) and the same options, it returns at once without
decoding.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from hidim.curate.normalise import intensity_parameters, resample_fps, resize_keep_aspect
from hidim.ingest import SeriesInfo, read_series
from hidim.provenance import file_sha256
from hidim.store.layout import STORE_FORMAT_VERSION
from hidim.store.writer import write_series_array

__all__ = ["CurateOptions", "SeriesTask", "SeriesOutcome", "curate_series", "content_hash", "scrub"]


@dataclass(frozen=True)
class CurateOptions:
    """What curation does to every series (part of the resume key).

    Attributes:
        fps: target frame rate (Hz) for cine loops, or ``None`` to keep the acquired rate.
        size: ``(height, width)`` to resize to (aspect kept, padded), or ``None`` (native).
        intensity: intensity option (see :func:`hidim.curate.normalise.parse_intensity`).
    """

    fps: float | None = None
    size: tuple[int, int] | None = None
    intensity: str = "auto"

    def params_hash(self) -> str:
        """Hash of the options and store format: a change re-curates every series."""
        blob = json.dumps(
            {
                "fps": self.fps,
                "size": list(self.size) if self.size else None,
                "intensity": self.intensity,
                "format": STORE_FORMAT_VERSION,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SeriesTask:
    """Everything a worker needs for one series (picklable)."""

    series: SeriesInfo
    key: str
    store_dir: str
    options: CurateOptions
    existing_hash: str | None = None


@dataclass(frozen=True)
class SeriesOutcome:
    """What :func:`curate_series` did: ``written`` a new array or ``resumed`` (unchanged)."""

    key: str
    status: Literal["written", "resumed"]
    content_hash: str
    row: dict[str, Any] | None


def content_hash(files: tuple[Path, ...] | list[Path]) -> str:
    """SHA-256 over the SHA-256 of each file, in reading order."""
    h = hashlib.sha256()
    for f in files:
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def scrub(text: str, series: SeriesInfo) -> str:
    """Remove file paths, file names and UIDs of ``series`` from a message (no PHI in logs)."""
    replacements: dict[str, str] = {}
    for uid in (series.series_uid, series.study_uid, series.key_uid, series.patient_id):
        if uid:
            replacements[uid] = "<id>"
    for f in series.files:
        p = Path(f)
        replacements.update({str(p): "<file>", str(p.parent): "<folder>", p.name: "<file>"})
    for needle in sorted((n for n in replacements if len(n) > 2), key=len, reverse=True):
        text = text.replace(needle, replacements[needle])
    return text


def _series_row(task: SeriesTask, meta_row: dict[str, Any]) -> dict[str, Any]:
    row = dict(meta_row)
    row["series_key"] = task.key
    row["key_uid"] = task.series.key_uid
    row["patient_key"] = row.get("patient_key") or task.series.patient_id
    if not row["patient_key"]:
        # no PatientID: treat the study as its own patient so splits stay leak-free
        anchor = task.series.study_uid or task.series.key_uid
        row["patient_key"] = "nopid-" + hashlib.sha1(anchor.encode()).hexdigest()[:12]
    row["n_frames_original"] = row.get("n_frames")
    row["rows_original"] = row.get("rows")
    row["sop_uids"] = json.dumps([u for u in task.series.sop_instance_uids])
    row["cols_original"] = row.get("cols")
    return row


def curate_series(task: SeriesTask) -> SeriesOutcome:
    """Read, normalise and store one series; see the module docstring.

    Raises:
        IngestError: the series cannot be read (the runner records it in the ledger).
    """
    digest = content_hash(task.series.files)
    if task.existing_hash is not None and task.existing_hash == digest:
        return SeriesOutcome(task.key, "resumed", digest, None)
    array, meta = read_series(task.series)
    row = _series_row(task, meta.to_row())
    opts = task.options
    if opts.size is not None:
        array, record = resize_keep_aspect(array, opts.size)
        row["resize"] = json.dumps(record)
        scale = record["scale"]
        for col in ("spacing_row_mm", "spacing_col_mm"):
            if row.get(col):
                row[col] = float(row[col]) / scale
    fps_in = row.get("fps_original")
    row["fps"] = fps_in
    if opts.fps is not None and fps_in and array.shape[1] > 1:
        array = resample_fps(array, float(fps_in), float(opts.fps))
        row["fps"] = float(opts.fps)
    norm = intensity_parameters(array, modality=row.get("modality"), spec=opts.intensity)
    row["intensity_norm"] = json.dumps(norm)
    row["channels"], row["n_frames"], row["rows"], row["cols"] = (int(d) for d in array.shape)
    row["content_hash"] = digest
    row["params_hash"] = opts.params_hash()
    row["curated_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    info = write_series_array(task.store_dir, task.key, array, row={**row, "stored_dtype": None})
    row["array_path"] = info["array_path"]
    row["stored_dtype"] = info["dtype"]
    return SeriesOutcome(task.key, "written", digest, row)
