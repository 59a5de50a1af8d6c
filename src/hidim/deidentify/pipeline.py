"""``hidim deid``: de-identify a batch of DICOM files into a release folder.

Per file (:func:`process_file`, run in-process, on a process pool or on Dask through
:func:`hidim.parallel.run_tasks`): read defensively → check/clean pixels → one header walk →
identity attributes and file meta → serialise, re-parse to verify → atomic write to
``OUT/<new StudyUID>/<new SeriesUID>/<new SOPUID>.dcm`` (no PHI in names), or to the
quarantine folder when the pixels cannot be released safely.

Batch (:func:`deidentify`): the audit (``OUT/deid_audit.parquet``) and the
re-identification table (outside OUT) are flushed as results arrive, so an interrupted run
resumes where it stopped; failures never stop the batch.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID
from rich.console import Console

from hidim import __version__
from hidim.deidentify.audit import (
    AUDIT_FILE,
    print_summary,
    read_audit,
    read_reid_table,
    write_audit,
    write_reid_table,
)
from hidim.deidentify.encode import write_pixels
from hidim.deidentify.header import HeaderContext, deidentify_header
from hidim.deidentify.identity import mark_deidentified
from hidim.deidentify.keys import load_key
from hidim.deidentify.pixels import PixelPolicy, clean_pixels
from hidim.deidentify.profile import ProfileOptions, cached_plan
from hidim.deidentify.pseudonyms import date_shift
from hidim.deidentify.reader import RejectedInput, quiet_pydicom, read_input
from hidim.errors import DeidentificationError
from hidim.parallel import TaskFailure, run_tasks
from hidim.provenance import atomic_write_bytes, atomic_write_text, write_run_json

__all__ = ["DeidOptions", "FileTask", "FileResult", "DeidSummary", "process_file", "deidentify"]

_FLUSH_EVERY = 100


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


@dataclass
class DeidSummary:
    """What a batch did."""

    rows: list[dict[str, Any]]
    out_dir: Path
    reid_table: Path
    quarantine_dir: Path

    def count(self, status: str) -> int:
        """Number of inputs with ``status`` (ok, quarantined, failed, skipped)."""
        return sum(1 for r in self.rows if r["status"] == status)

    @property
    def all_ok(self) -> bool:
        """True when no input failed or was quarantined."""
        return self.count("failed") == 0 and self.count("quarantined") == 0


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


def _serialise(ds: Dataset, ts: Any) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"HIDIM_{__version__}"[:16]
    ds.file_meta = meta
    ds.preamble = None
    sink = io.BytesIO()
    uid = meta.TransferSyntaxUID
    target = (uid.is_implicit_VR, uid.is_little_endian)
    if getattr(ds, "original_encoding", target) != target:
        _reencode(ds, *target)
    ds.save_as(sink, enforce_file_format=True, implicit_vr=target[0], little_endian=target[1])
    return sink.getvalue()


def _write_release_file(path: Path, data: bytes) -> None:
    """Atomic (temporary file + rename) but not fsync'd: a crash leaves no partial file, and
    the audit, flushed with fsync after the file, decides on resume whether it counts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _reencode(ds: Dataset, implicit: bool, little: bool) -> None:
    """Decode every raw element so ``ds`` can be written in another byte order."""
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                _reencode(item, implicit, little)
    ds.set_original_encoding(implicit, little, ds._character_set)


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
            payload = _serialise(ds, ts_out)
            if opts.verify_output:
                dcmread(io.BytesIO(payload)).get("PixelData")
        _row_from_stats(row, ctx)
        row.update(
            transfer_syntax_out=str(ts_out),
            study_uid=str(ds.get("StudyInstanceUID", "") or ""),
            series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
            sop_uid=str(ds.SOPInstanceUID),
            bytes_out=len(payload),
        )
        if pixels.quarantine_reason:
            qdir = Path(task.quarantine_dir)
            atomic_write_bytes(qdir / f"{task.input_id}.dcm", payload)
            note = {"input_id": task.input_id, "reason": pixels.quarantine_reason}
            atomic_write_text(qdir / f"{task.input_id}.json", json.dumps(note, indent=2))
            row.update(status="quarantined", reason=pixels.quarantine_reason)
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


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def _collect(inputs: Iterable[str | os.PathLike[str]], exclude: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            for sub in sorted(path.rglob("*")):
                if sub.is_file() and not any(_inside(sub, ex) for ex in exclude):
                    files.append(sub)
        else:
            raise DeidentificationError(
                f"expected input files or folders, got a path that does not exist (input "
                f"#{len(files) + 1}); check the IN arguments"
            )
    seen: set[str] = set()
    unique = []
    for f in files:
        key = str(f.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _input_id(path: Path, key: bytes) -> str:
    message = b"hidim/input/v1\x00" + str(path.resolve()).encode("utf-8", "surrogateescape")
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:16]


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _check_locations(out: Path, reid: Path, quarantine: Path, path_log: Path | None) -> None:
    if _inside(reid, out):
        raise DeidentificationError(
            "expected the re-identification table outside the output folder, got a path "
            "inside OUT; pass --reid-table with a path outside OUT (it links pseudonyms to "
            "real identities and must never be released)"
        )
    if _inside(quarantine, out):
        raise DeidentificationError(
            "expected the quarantine folder outside the output folder, got one inside OUT; "
            "pass --quarantine with a separate path"
        )
    if path_log is not None and _inside(path_log, out):
        raise DeidentificationError(
            "expected the path log outside the output folder, got one inside OUT; input "
            "paths may contain names: pass --path-log with a path outside OUT"
        )


def _options_record(options: DeidOptions) -> dict[str, Any]:
    record = asdict(options)
    profile = record["profile"]
    profile["safe_private_creators"] = sorted(options.profile.safe_private_creators)
    profile["safe_list"] = (
        None if options.profile.safe_list is None else len(options.profile.safe_list)
    )
    record["vocabulary"] = len(options.vocabulary)
    return record


def deidentify(
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    key_file: str | os.PathLike[str],
    reid_table: str | os.PathLike[str],
    quarantine_dir: str | os.PathLike[str] | None = None,
    options: DeidOptions | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    path_log: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
    console: Console | None = None,
) -> DeidSummary:
    """De-identify DICOM files and folders into ``out_dir``.

    Args:
        inputs: Files and/or folders (searched recursively).
        out_dir: The release folder: de-identified DICOM, ``deid_audit.parquet``, ``run.json``.
        key_file: The project key (:func:`hidim.deidentify.keys.create_key`).
        reid_table: CSV ``kind,original,pseudonym`` written outside ``out_dir`` (merged with
            an existing table at that path).
        quarantine_dir: Where files whose pixels cannot be released go (default:
            ``<out_dir>_quarantine`` beside ``out_dir``).
        options: What to do (profile options, pixel policy).
        workers: Processes on this machine.
        scheduler: A Dask scheduler address (``tcp://host:8786``) instead of local processes.
        path_log: Optional CSV ``input_id,path`` kept outside ``out_dir`` (paths can hold
            names; nothing else ever records them).
        show_progress: Show a progress bar and print the summary table.
        console: Where to print the summary.

    Returns:
        A :class:`DeidSummary` (one audit row per input).
    """
    options = options or DeidOptions()
    out = Path(out_dir)
    reid_path = Path(reid_table)
    quarantine = Path(quarantine_dir) if quarantine_dir else out.parent / f"{out.name}_quarantine"
    log_path = Path(path_log) if path_log else None
    _check_locations(out, reid_path, quarantine, log_path)
    key = load_key(key_file)
    out.mkdir(parents=True, exist_ok=True)
    files = _collect(inputs, exclude=[out, quarantine])
    audit_path = out / AUDIT_FILE
    previous = {r["input_id"]: r for r in read_audit(audit_path)}
    reid = read_reid_table(reid_path)

    rows: dict[str, dict[str, Any]] = {}
    tasks: list[FileTask] = []
    path_rows = []
    for path in files:
        input_id = _input_id(path, key)
        fingerprint = _fingerprint(path)
        path_rows.append((input_id, str(path)))
        before = previous.get(input_id)
        if (
            before is not None
            and before.get("fingerprint") == fingerprint
            and before.get("status") in ("ok", "skipped", "quarantined")
            and (before["status"] != "ok" or (out / before["output"]).is_file())
        ):
            rows[input_id] = before
            continue
        tasks.append(
            FileTask(
                path=str(path),
                input_id=input_id,
                fingerprint=fingerprint,
                key=key,
                options=options,
                out_dir=str(out),
                quarantine_dir=str(quarantine),
            )
        )

    def flush() -> None:
        write_reid_table(reid_path, reid)  # before the audit marks files done
        write_audit(audit_path, list(rows.values()))

    done = 0

    def on_result(index: int, result: FileResult | TaskFailure) -> None:
        nonlocal done
        task = tasks[index]
        if isinstance(result, TaskFailure):
            kind = result.error.split(":", 1)[0]
            rows[task.input_id] = {
                "input_id": task.input_id,
                "fingerprint": task.fingerprint,
                "status": "failed",
                "reason": f"worker error ({kind})",
            }
        else:
            rows[task.input_id] = result.row
            reid.update(result.reid)
        done += 1
        if done % _FLUSH_EVERY == 0:
            flush()

    if tasks:
        run_tasks(
            process_file,
            tasks,
            workers=workers,
            scheduler=scheduler,
            description="de-identifying",
            show_progress=show_progress,
            on_result=on_result,
        )
    _mark_duplicates(rows)
    flush()
    if log_path is not None:
        lines = ["input_id,path"] + [f"{i},{json.dumps(p)}" for i, p in path_rows]
        atomic_write_text(log_path, "\n".join(lines) + "\n")
        os.chmod(log_path, 0o600)
    ordered = [rows[_input_id(p, key)] for p in files]
    counts = {
        s: sum(1 for r in ordered if r["status"] == s)
        for s in ("ok", "quarantined", "failed", "skipped")
    }
    write_run_json(
        out,
        command="deid",
        config=_options_record(options),
        input_hashes={r["input_id"]: r.get("fingerprint", "") for r in ordered},
        extra={"counts": counts, "workers": workers, "scheduler": bool(scheduler)},
    )
    if show_progress:
        print_summary(ordered, console)
    return DeidSummary(rows=ordered, out_dir=out, reid_table=reid_path, quarantine_dir=quarantine)


def _mark_duplicates(rows: dict[str, dict[str, Any]]) -> None:
    """Two inputs with the same SOP instance write one output: report the second."""
    first: dict[str, str] = {}
    for input_id in sorted(rows):
        row = rows[input_id]
        if row.get("status") != "ok":
            continue
        sop = row.get("sop_uid", "")
        if sop in first:
            row["status"] = "skipped"
            row["reason"] = f"duplicate SOP instance (same as input {first[sop]})"
        else:
            first[sop] = input_id
