"""De-identify one file: what a worker runs (:func:`process_file`, :func:`process_batch`).

Read the whole file once and parse it from memory → clear overlay bits hidden in the pixel
data → check/clean burned-in text → one header walk on the raw elements → identity attributes
→ serialise with :mod:`hidim.deidentify.writer` and check the bytes
(:mod:`hidim.deidentify.verify`) → atomic write to
``OUT/<new StudyUID>/<new SeriesUID>/<new SOPUID>.dcm`` (no PHI in names), or to the
quarantine folder when the file cannot be released safely. Every outcome is an audit row;
nothing here raises for a bad input.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset

from hidim.deidentify.encode import write_pixels
from hidim.deidentify.header import HeaderContext, deidentify_header
from hidim.deidentify.identity import mark_deidentified
from hidim.deidentify.pixels import PixelPolicy, clean_pixels, clear_overlay_bits
from hidim.deidentify.profile import ProfileOptions, cached_plan
from hidim.deidentify.pseudonyms import date_shift
from hidim.deidentify.reader import RejectedInput, quiet_pydicom, read_input
from hidim.deidentify.verify import check_encoded
from hidim.deidentify.writer import encode_file
from hidim.provenance import atomic_write_bytes, atomic_write_text

__all__ = ["DeidOptions", "FileTask", "FileResult", "process_file", "process_batch"]


@dataclass(frozen=True, kw_only=True)
class DeidOptions:
    """Everything that decides what de-identification does (recorded in run.json).

    Attributes:
        profile: PS3.15 profile options.
        pixels: Burned-in text policy.
        vocabulary: Extra words the clean rule accepts (added to the shipped list).
        verify_output: Re-parse every output before writing it.
    """

    profile: ProfileOptions = field(default_factory=ProfileOptions)
    pixels: PixelPolicy = field(default_factory=PixelPolicy)
    vocabulary: frozenset[str] = frozenset()
    verify_output: bool = True


@dataclass(frozen=True)
class FileTask:
    """One input file to de-identify (picklable for process pools and Dask)."""

    path: str
    input_id: str
    fingerprint: str
    key: bytes
    options: DeidOptions
    out_dir: str
    quarantine_dir: str


@dataclass
class FileResult:
    """The audit row of one input and the re-identification pairs it produced."""

    row: dict[str, Any]
    reid: dict[tuple[str, str], str]


def _patient_key(ds: Dataset) -> tuple[str, str]:
    """The identity a patient's date shift is derived from, and which attribute gave it."""
    pid = str(ds.get("PatientID", "") or "").strip()
    if pid:
        return "id:" + pid, "PatientID"
    name = str(ds.get("PatientName", "") or "").strip()
    birth = str(ds.get("PatientBirthDate", "") or "").strip()
    if name:
        return f"name:{name}|{birth}", "PatientName+BirthDate"
    return "study:" + str(ds.get("StudyInstanceUID", "") or ""), "StudyInstanceUID"


def _output_relpath(ds: Dataset) -> str:
    study = str(ds.get("StudyInstanceUID", "") or "") or "unknown-study"
    series = str(ds.get("SeriesInstanceUID", "") or "") or "unknown-series"
    return f"{study}/{series}/{ds.SOPInstanceUID}.dcm"


def _write_release_file(path: Path, data: bytes) -> None:
    """Atomic (temporary file + rename) but not fsync'd: a crash leaves no partial file, and
    the audit, flushed with fsync after the file, decides on resume whether it counts."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            fh = open(tmp, "wb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(tmp, "wb")  # noqa: SIM115
        with fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _row_from_stats(row: dict[str, Any], ctx: HeaderContext) -> None:
    ops = ctx.stats.operations
    row.update(
        removed=ops["remove"],
        emptied=ops["empty"],
        dummied=ops["dummy"],
        uids_remapped=ops["remap_uid"],
        dates_shifted=ops["shift_time"],
        pseudonyms=ops["pseudonym_id"] + ops["pseudonym_name"] + ops["pseudonym_accession"],
        clean_removed=ops["clean_removed"],
        private_removed=ctx.stats.private_removed,
        private_kept=ctx.stats.private_kept,
        overlays_removed=ctx.stats.overlay_removed,
        curves_removed=ctx.stats.curve_removed,
        unknown_removed=ctx.stats.unknown_removed,
        max_depth=ctx.stats.max_depth,
    )


def _unreleasable(ds: Dataset) -> str | None:
    """Content no header profile can clean: an encapsulated document (a PDF or CDA report
    carries names in its own format)."""
    if 0x00420011 in ds._dict:
        return "encapsulated document (PDF/CDA/...) cannot be de-identified by hidim"
    return None


def process_batch(tasks: Sequence[FileTask]) -> list[FileResult]:
    """:func:`process_file` over a chunk of tasks (one pickling round trip per chunk)."""
    return [process_file(task) for task in tasks]


def process_file(task: FileTask) -> FileResult:
    """De-identify one file; every outcome (ok, quarantined, failed, skipped) is a row."""
    started = time.perf_counter()
    row: dict[str, Any] = {"input_id": task.input_id, "fingerprint": task.fingerprint}
    ctx = HeaderContext(key=task.key)
    try:
        data = Path(task.path).read_bytes()
        row["bytes_in"] = len(data)
        read = read_input(data)
        ds = read.ds
        row["repaired"] = read.repaired
        opts = task.options
        ts_in = ds.file_meta.TransferSyntaxUID
        row["transfer_syntax_in"] = str(ts_in)
        row["modality"] = str(ds.get("Modality", "") or "")
        row["burned_in_annotation_in"] = str(ds.get("BurnedInAnnotation", "") or "")
        patient_key, row["shift_basis"] = _patient_key(ds)
        if opts.profile.retain_long_modified_dates:
            ctx.shift = date_shift(patient_key, task.key)
        if opts.vocabulary:
            from hidim.deidentify.clean import default_vocabulary

            ctx.vocabulary = default_vocabulary() | opts.vocabulary
        with quiet_pydicom():
            row["overlay_bits_cleared"] = clear_overlay_bits(ds)  # before the 60xx go
            pixels = clean_pixels(ds, opts.pixels)
            row.update(
                pixel_decision=pixels.decision,
                pixel_reason=pixels.reason,
                sector_source=pixels.sector_source,
                masked_fraction=pixels.masked_fraction,
                ocr_boxes=pixels.ocr_boxes,
                ocr_boxes_in_sector=pixels.ocr_boxes_in_sector,
            )
            deidentify_header(ds, cached_plan(opts.profile), ctx)
            ts_out = ts_in
            if pixels.changed and pixels.frames is not None:
                ts_out = write_pixels(
                    ds, pixels.frames, photometric=pixels.photometric_out or "", ts_in=ts_in
                )
            mark_deidentified(ds, opts.profile, pixels_cleaned=pixels.changed)
            payload = encode_file(ds, ts_out)
            if opts.verify_output:
                check_encoded(payload)
                if pixels.changed or not ts_out.is_little_endian:
                    _ = dcmread(io.BytesIO(payload)).pixel_array  # the new pixels decode
        _row_from_stats(row, ctx)
        row.update(
            transfer_syntax_out=str(ts_out),
            study_uid=str(ds.get("StudyInstanceUID", "") or ""),
            series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
            sop_uid=str(ds.SOPInstanceUID),
            bytes_out=len(payload),
        )
        quarantine_reason = pixels.quarantine_reason or _unreleasable(ds)
        if quarantine_reason:
            qdir = Path(task.quarantine_dir)
            atomic_write_bytes(qdir / f"{task.input_id}.dcm", payload)
            note = {"input_id": task.input_id, "reason": quarantine_reason}
            atomic_write_text(qdir / f"{task.input_id}.json", json.dumps(note, indent=2))
            row.update(status="quarantined", reason=quarantine_reason)
            row["output"] = ""
        else:
            rel = _output_relpath(ds)
            _write_release_file(Path(task.out_dir) / rel, payload)
            row.update(status="ok", reason="", output=rel)
    except RejectedInput as rejected:
        row.update(status=rejected.status, reason=rejected.reason)
    except Exception as exc:  # noqa: BLE001 - recorded, never echoing values
        row.update(status="failed", reason=f"could not be de-identified ({type(exc).__name__})")
    row["seconds"] = time.perf_counter() - started
    return FileResult(row=row, reid=ctx.reid if row.get("status") != "failed" else {})
