"""Header-only scan: find files and DICOMDIRs, account for every file, group into series.

``scan`` never raises on bad input. Every file it meets ends in ``ScanResult.ledger``:

* ``ok`` — an image instance, part of ``series_uid`` (``reason`` holds recovery notes);
* ``skipped`` — not DICOM, a DICOMDIR (an index, not an image), or a SOP class that is not
  an image (SR, waveform, presentation state, RT structure set, segmentation...);
* ``failed`` — empty, truncated, unreadable header, or pixel data that cannot be decoded
  here (missing plugin, unsupported transfer syntax, fewer bytes than the header declares).

Pixel data is never decoded by the scan: values larger than 2 KiB are deferred, so the
cost is one header read per file.
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pydicom.dataset import Dataset

from hidim.ingest.dsutil import (
    functional_group_item,
    get_float,
    get_floats,
    get_int,
    get_str,
    uid_name,
)
from hidim.ingest.fileio import FileProblem, check_pixel_data, open_dataset, redact
from hidim.ingest.series import InstanceHeader, SeriesInfo, group_series
from hidim.ingest.sopclass import MEDIA_STORAGE_DIRECTORY, skip_reason
from hidim.parallel import progress_bar

__all__ = ["LedgerEntry", "ScanResult", "scan", "instance_header", "dicomdir_references"]

Status = Literal["ok", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What happened to one input file.

    Attributes:
        path: the file path as found (may contain PHI; hash it before storing).
        status: ``"ok"``, ``"skipped"`` or ``"failed"``.
        reason: why (empty for a plain ``ok``).
        series_uid: SeriesInstanceUID for ``ok`` files, else ``None``.
        key_uid: ``SeriesInfo.key_uid`` of the unit the file belongs to (``ok`` files only);
            differs from ``series_uid`` when a series was split into multi-frame instances.
    """

    path: str
    status: Status
    reason: str
    series_uid: str | None = None
    key_uid: str | None = None


@dataclass(slots=True)
class ScanResult:
    """Result of :func:`scan`: readable units plus the ledger of every file met."""

    series: list[SeriesInfo] = field(default_factory=list)
    ledger: list[LedgerEntry] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        """Number of ledger entries with status ``"failed"``."""
        return sum(1 for e in self.ledger if e.status == "failed")

    @property
    def problems(self) -> list[LedgerEntry]:
        """Ledger entries that are not ``ok``."""
        return [e for e in self.ledger if e.status != "ok"]


def _walk(root: Path, recursive: bool) -> Iterator[Path]:
    if not recursive:
        yield from sorted(p for p in root.iterdir() if p.is_file())
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _resolve_case_insensitive(base: Path, parts: Sequence[str]) -> Path | None:
    """Join ``parts`` onto ``base``, matching each part case-insensitively if needed."""
    current = base
    for part in parts:
        candidate = current / part
        if candidate.exists():
            current = candidate
            continue
        try:
            match = next((c for c in current.iterdir() if c.name.lower() == part.lower()), None)
        except OSError:
            return None
        if match is None:
            return None
        current = match
    return current


def dicomdir_references(ds: Dataset, dicomdir_path: Path) -> tuple[list[Path], list[str]]:
    """Files referenced by a DICOMDIR, resolved relative to its folder.

    Returns:
        ``(existing paths, missing ReferencedFileIDs as text)``.
    """
    found: list[Path] = []
    missing: list[str] = []
    for record in ds.get("DirectoryRecordSequence") or ():
        ref = record.get("ReferencedFileID")
        if not ref:
            continue
        parts = [str(ref)] if isinstance(ref, str) else [str(p) for p in ref]
        path = _resolve_case_insensitive(dicomdir_path.parent, parts)
        if path is None or not path.is_file():
            missing.append("/".join(parts))
        else:
            found.append(path)
    return found, missing


def _frame_positions(ds: Dataset) -> tuple[tuple[float, float, float], ...] | None:
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        return None
    out = []
    for item in per_frame:
        seq = item.get("PlanePositionSequence")
        pos = get_floats(seq[0], "ImagePositionPatient") if seq else None
        if pos is None or len(pos) != 3:
            return None
        out.append((pos[0], pos[1], pos[2]))
    return tuple(out)


def _orientation(ds: Dataset) -> tuple[float, float, float, float, float, float] | None:
    values = get_floats(ds, "ImageOrientationPatient")
    if values is None:
        values = get_floats(
            functional_group_item(ds, "PlaneOrientationSequence"), "ImageOrientationPatient"
        )
    if values is None or len(values) != 6:
        return None
    return (values[0], values[1], values[2], values[3], values[4], values[5])


def _is_multiframe(ds: Dataset, frames: int | None) -> bool:
    """A multi-frame instance (not a single slice that happens to carry NumberOfFrames=1)."""
    if (frames or 1) > 1 or "PerFrameFunctionalGroupsSequence" in ds:
        return True
    name = uid_name(get_str(ds, "SOPClassUID"))
    return "Multi-frame" in name or name.startswith("Enhanced")


def instance_header(ds: Dataset, path: Path) -> InstanceHeader:
    """The grouping/ordering facts of one image dataset (header only)."""
    position = get_floats(ds, "ImagePositionPatient")
    series_uid = get_str(ds, "SeriesInstanceUID")
    if series_uid is None:
        from pydicom.uid import generate_uid

        seed = get_str(ds, "SOPInstanceUID") or str(path.resolve())
        series_uid = generate_uid(prefix=None, entropy_srcs=["hidim-no-series", seed])
    frames = get_int(ds, "NumberOfFrames")
    return InstanceHeader(
        path=path,
        series_uid=series_uid,
        study_uid=get_str(ds, "StudyInstanceUID"),
        patient_id=get_str(ds, "PatientID"),
        modality=get_str(ds, "Modality"),
        sop_class_uid=get_str(ds, "SOPClassUID") or "",
        sop_instance_uid=get_str(ds, "SOPInstanceUID"),
        instance_number=get_int(ds, "InstanceNumber"),
        position=(position[0], position[1], position[2])
        if position and len(position) == 3
        else None,
        orientation=_orientation(ds),
        trigger_time_ms=get_float(ds, "TriggerTime"),
        rows=get_int(ds, "Rows") or 0,
        cols=get_int(ds, "Columns") or 0,
        samples_per_pixel=get_int(ds, "SamplesPerPixel") or 1,
        n_frames=max(frames or 1, 1),
        is_multiframe=_is_multiframe(ds, frames),
        frame_positions=_frame_positions(ds),
        series_number=get_int(ds, "SeriesNumber"),
        series_description=get_str(ds, "SeriesDescription"),
    )


def _scan_file(path: Path) -> tuple[InstanceHeader | None, list[LedgerEntry], list[Path]]:
    """Header of one file (or ``None``), its ledger entries, and files a DICOMDIR adds."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds, notes = open_dataset(path, header_only=True)
            meta = getattr(ds, "file_meta", None) or Dataset()
            sop = get_str(ds, "SOPClassUID") or get_str(meta, "MediaStorageSOPClassUID")
            if sop == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
                found, missing = dicomdir_references(ds, path)
                entries = [
                    LedgerEntry(
                        str(path.parent / ref),
                        "failed",
                        f"referenced by DICOMDIR {path.name} but not found",
                    )
                    for ref in missing
                ]
                entries.append(
                    LedgerEntry(
                        str(path),
                        "skipped",
                        f"DICOMDIR (media storage directory): an index of "
                        f"{len(found) + len(missing)} file(s), not an image",
                    )
                )
                return None, entries, found
            reason = skip_reason(ds)
            if reason is not None:
                raise FileProblem("skipped", reason)
            check_pixel_data(ds, path)
            header = instance_header(ds, path)
        except FileProblem as problem:
            return None, [LedgerEntry(str(path), problem.status, problem.reason)], []  # type: ignore[arg-type]
        except Exception as exc:  # defensive: one odd file never stops the scan
            text = f"unexpected error reading header: {type(exc).__name__}: {redact(str(exc))}"
            return None, [LedgerEntry(str(path), "failed", text)], []
    notes.extend(redact(str(w.message).splitlines()[0]) for w in caught)
    unique = list(dict.fromkeys(notes))
    return header, [LedgerEntry(str(path), "ok", "; ".join(unique), header.series_uid)], []


def scan(
    paths: Sequence[str | Path] | str | Path, *, recursive: bool = True, progress: bool = False
) -> ScanResult:
    """Find DICOM images under ``paths`` and group them into series, reading headers only.

    Args:
        paths: files and/or folders (a single path is accepted). A DICOMDIR found (or
            given) adds the files it references, resolved relative to its folder.
        recursive: descend into sub-folders.
        progress: show a rich progress bar (files read / files found).

    Returns:
        :class:`ScanResult` whose ``series`` are readable units (see
        :class:`~hidim.ingest.series.SeriesInfo`) and whose ``ledger`` has one entry per
        file met (``ok`` / ``skipped`` / ``failed`` with the reason). A file holding the
        same SOPInstanceUID as one already kept is ``skipped`` as a duplicate. Never raises
        on bad files or missing paths; they are recorded in the ledger.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    ledger: list[LedgerEntry] = []
    headers: list[InstanceHeader] = []
    seen: set[Path] = set()
    queue: deque[Path] = deque()
    instances: dict[tuple[str, str], Path] = {}
    for raw in paths:
        root = Path(raw)
        if root.is_dir():
            queue.extend(_walk(root, recursive))
        elif root.is_file():
            queue.append(root)
        else:
            ledger.append(LedgerEntry(str(root), "failed", "path does not exist"))
    with progress_bar(transient=True, disable=not progress) as bar:
        task = bar.add_task("Scanning DICOM headers", total=len(queue))
        while queue:
            path = queue.popleft()
            bar.update(task, advance=1)
            try:
                key = path.resolve()
            except OSError:
                key = path
            if key in seen:
                continue
            seen.add(key)
            header, entries, referenced = _scan_file(path)
            if referenced:
                queue.extend(referenced)
                bar.update(task, total=(bar.tasks[0].total or 0) + len(referenced))
            if header is not None and header.sop_instance_uid:
                instance = (header.series_uid, header.sop_instance_uid)
                first = instances.setdefault(instance, header.path)
                if first != header.path:
                    # No file name here: input paths may carry PHI (the ledger keeps the path).
                    reason = "duplicate instance: same SOPInstanceUID as an earlier file, which is kept"
                    entries = [LedgerEntry(str(path), "skipped", reason)]
                    header = None
            ledger.extend(entries)
            if header is not None:
                headers.append(header)
    series = group_series(headers)
    unit_of = {str(path): unit.key_uid for unit in series for path in unit.files}
    ledger = [replace(e, key_uid=unit_of.get(e.path)) if e.status == "ok" else e for e in ledger]
    return ScanResult(series=series, ledger=ledger)
