"""``curate``: DICOM folders → a hidim store (manifest, ledger, arrays, splits, run.json).

Steps::

    scan (headers only) → refuse identified input unless allowed → one task per series
    (read → resize → resample fps → intensity record → atomic array write), run in-process,
    on a process pool (workers=N) or on Dask (scheduler="tcp://...") → manifest + ledger
    (atomic Parquet) → patient-level splits (leak-checked) → run.json

Reliability: every input file ends in the ledger as ok / skipped / failed with a reason
(paths and UIDs scrubbed from reasons; paths themselves stored only with
``record_paths=True``); one bad series never stops the batch; a re-run resumes — series
already in the store with the same content hash and options are not decoded again, and
arrays written by an interrupted run are recovered from their own metadata.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from hidim.curate.identity import check_deidentified, series_deidentified
from hidim.curate.lock import store_lock
from hidim.curate.normalise import parse_intensity
from hidim.curate.series_task import CurateOptions, SeriesOutcome, SeriesTask, curate_series, scrub
from hidim.curate.splits import DEFAULT_FRACTIONS, split_manifest
from hidim.errors import CurationError
from hidim.ingest import scan
from hidim.parallel import TaskFailure, run_tasks
from hidim.provenance import write_run_json
from hidim.store.layout import LEDGER, MANIFEST, array_relpath, input_id, series_key
from hidim.store.writer import (
    init_store,
    recover_rows,
    remove_temporaries,
    write_ledger,
    write_manifest,
)

__all__ = ["CurateResult", "curate"]


@dataclass
class CurateResult:
    """Summary of one ``curate`` run.

    Attributes:
        store_dir: the store written.
        n_series: units found by the scan (after removing duplicate UIDs).
        written: series decoded and written in this run.
        resumed: series already in the store, unchanged (not decoded again).
        failed: ``(series_key, reason)`` of series that could not be curated.
        files: ledger counts by status for this run's input files.
        duplicates: units skipped because another input had the same UID.
    """

    store_dir: Path
    n_series: int = 0
    written: int = 0
    resumed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0

    @property
    def n_failed_files(self) -> int:
        """Input files whose status is ``failed``."""
        return int(self.files.get("failed", 0))

    @property
    def ok(self) -> bool:
        """True when no input file failed (the CLI exit code is 0)."""
        return self.n_failed_files == 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _load_existing(store_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    manifest = (
        pd.read_parquet(store_dir / MANIFEST)
        if (store_dir / MANIFEST).is_file()
        else pd.DataFrame()
    )
    ledger = (
        pd.read_parquet(store_dir / LEDGER) if (store_dir / LEDGER).is_file() else pd.DataFrame()
    )
    known = manifest["series_key"].tolist() if len(manifest) else []
    recovered = recover_rows(store_dir, known)
    if recovered:
        manifest = pd.concat([manifest, pd.DataFrame(recovered)], ignore_index=True)
    return manifest, ledger


def _existing_hashes(manifest: pd.DataFrame, params_hash: str, store_dir: Path) -> dict[str, str]:
    if not len(manifest):
        return {}
    out: dict[str, str] = {}
    for key, digest, params, rel in zip(
        manifest["series_key"],
        manifest["content_hash"],
        manifest.get("params_hash", [None] * len(manifest)),
        manifest["array_path"],
        strict=True,
    ):
        if (
            params == params_hash
            and digest
            and rel
            and (store_dir / str(rel) / "zarr.json").is_file()
        ):
            out[str(key)] = str(digest)
    return out


def curate(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    store_dir: str | os.PathLike[str],
    *,
    fps: float | None = None,
    size: tuple[int, int] | int | None = None,
    intensity: str = "auto",
    workers: int = 1,
    scheduler: str | None = None,
    allow_identified: bool = False,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    record_paths: bool = False,
    show_progress: bool = True,
) -> CurateResult:
    """Curate DICOM ``inputs`` into the store at ``store_dir`` (created or resumed).

    Args:
        inputs: files and/or folders (DICOMDIRs are followed).
        store_dir: the store directory (new/empty, or an existing store to add to/resume).
        fps: target frame rate in Hz for cine loops (resampled by time); ``None`` keeps it.
        size: ``(H, W)`` or ``S`` (square) to resize frames (aspect kept, padded); ``None``
            keeps native resolution.
        intensity: ``auto`` (CT: HU scaling, others: per-series z-score), ``none``,
            ``zscore``, ``percentile[:LO,HI]``, ``hu``, ``window:LEVEL,WIDTH``.
        workers: processes on this machine (``1`` = in-process).
        scheduler: Dask distributed scheduler address; overrides ``workers``.
        allow_identified: curate data whose headers do not say PatientIdentityRemoved=YES.
        seed: seed of the patient-level split.
        fractions: (train, val, test) fractions.
        record_paths: store input paths in the ledger (they may contain PHI).
        show_progress: show a progress bar.

    Returns:
        :class:`CurateResult`; ``.ok`` is False when any input file failed.

    Raises:
        CurationError: identified input without ``allow_identified``, bad options, or the
            store is locked by another run.
    """
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if isinstance(size, int):
        size = (size, size)
    parse_intensity(intensity)  # fail on bad options before any work
    if fps is not None and not fps > 0:
        raise CurationError(f"expected --fps > 0 (frames per second), got {fps}")
    options = CurateOptions(fps=fps, size=tuple(size) if size else None, intensity=intensity)  # type: ignore[arg-type]
    found = scan([Path(p) for p in paths])
    flags = [series_deidentified(s) for s in found.series]
    if not allow_identified:
        check_deidentified(flags)
    root = Path(store_dir)
    with store_lock(init_store(root)):
        return _run(
            root,
            found,
            flags,
            options,
            workers,
            scheduler,
            seed,
            fractions,
            record_paths,
            show_progress,
            _deid_audits(paths),
        )


def _run(
    root: Path,
    found: Any,
    flags: list[bool],
    options: CurateOptions,
    workers: int,
    scheduler: str | None,
    seed: int,
    fractions: Sequence[float],
    record_paths: bool,
    show_progress: bool,
    deid_audits: list[str],
) -> CurateResult:
    remove_temporaries(root)
    manifest, old_ledger = _load_existing(root)
    params_hash = options.params_hash()
    existing = _existing_hashes(manifest, params_hash, root)
    result = CurateResult(store_dir=root)

    tasks: list[SeriesTask] = []
    file_key: dict[str, str] = {}
    duplicate_files: dict[str, str] = {}
    seen: set[str] = set()
    for series in found.series:
        key = series_key(series.key_uid)
        if key in seen:
            result.duplicates += 1
            for f in series.files:
                duplicate_files[str(f)] = key
            continue
        seen.add(key)
        for f in series.files:
            file_key[str(f)] = key
        tasks.append(SeriesTask(series, key, str(root), options, existing.get(key)))
    result.n_series = len(tasks)

    outcomes = run_tasks(
        curate_series,
        tasks,
        workers=workers,
        scheduler=scheduler,
        description="curating series",
        show_progress=show_progress,
    )
    status_by_key: dict[str, tuple[str, str]] = {}
    new_rows: list[dict[str, Any]] = []
    deid = {series_key(s.key_uid): flag for s, flag in zip(found.series, flags, strict=True)}
    for task, outcome in zip(tasks, outcomes, strict=True):
        if isinstance(outcome, TaskFailure):
            reason = scrub(outcome.error, task.series)
            result.failed.append((task.key, reason))
            status_by_key[task.key] = ("failed", reason)
        elif outcome.status == "resumed" or outcome.row is None:
            result.resumed += 1
            status_by_key[task.key] = (
                "ok",
                "unchanged since a previous run (same content hash and options): kept",
            )
        else:
            result.written += 1
            row = dict(outcome.row)
            row["deidentified"] = bool(row.get("deidentified")) or deid.get(task.key, False)
            new_rows.append(row)
            status_by_key[task.key] = ("ok", "")

    # a series that failed now had changed inputs or options: its old array is stale
    for key, _ in result.failed:
        shutil.rmtree(root / array_relpath(key), ignore_errors=True)
    # manifest: previous rows (minus the ones rewritten or that just failed) + new rows
    rewritten = {r["series_key"] for r in new_rows} | {k for k, _ in result.failed}
    kept = manifest[~manifest["series_key"].isin(rewritten)] if len(manifest) else manifest
    merged = pd.concat([kept, pd.DataFrame(new_rows)], ignore_index=True) if new_rows else kept
    if len(merged):
        merged = split_manifest(merged, fractions=fractions, seed=seed)
        write_manifest(root, merged)
    else:
        write_manifest(root, [])

    ledger = _ledger_rows(found, file_key, duplicate_files, status_by_key, record_paths)
    result.files = ledger["status"].value_counts().to_dict() if len(ledger) else {}
    if len(old_ledger):
        old_ledger = old_ledger[~old_ledger["input_id"].isin(ledger["input_id"])]
        ledger = pd.concat([old_ledger, ledger], ignore_index=True)
    write_ledger(root, ledger)
    write_run_json(
        root,
        command="curate",
        config={
            "fps": options.fps,
            "size": options.size,
            "intensity": options.intensity,
            "fractions": list(fractions),
            "record_paths": record_paths,
            "workers": workers,
            "scheduler": bool(scheduler),
        },
        seed=seed,
        input_hashes={
            t.key: o.content_hash
            for t, o in zip(tasks, outcomes, strict=True)
            if isinstance(o, SeriesOutcome)
        },
        extra={
            "n_series": result.n_series,
            "written": result.written,
            "resumed": result.resumed,
            "failed": len(result.failed),
            "duplicates": result.duplicates,
            "files": result.files,
            # the de-identification audits of released input folders (for `hidim report`);
            # a release folder's path is not PHI, raw input paths are never recorded
            "deid_audits": deid_audits,
        },
    )
    return result


def _deid_audits(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """``deid_audit.parquet`` of every input folder that is a ``hidim deid`` release."""
    found = []
    for p in paths:
        audit = Path(p) / "deid_audit.parquet"
        if Path(p).is_dir() and audit.is_file():
            found.append(str(audit.resolve()))
    return found


def _ledger_rows(
    found: Any,
    file_key: dict[str, str],
    duplicate_files: dict[str, str],
    status_by_key: dict[str, tuple[str, str]],
    record_paths: bool,
) -> pd.DataFrame:
    now = _now()
    rows: list[dict[str, Any]] = []
    series_by_key = {series_key(s.key_uid): s for s in found.series}
    names = {Path(e.path).name for e in found.ledger}
    for entry in found.ledger:
        path = str(entry.path)
        key = file_key.get(path)
        if entry.status == "ok" and key is not None:
            status, reason = status_by_key.get(key, ("failed", "series was not processed"))
            stage = "curate"
        elif entry.status == "ok" and path in duplicate_files:
            key = duplicate_files[path]
            status, reason, stage = (
                "skipped",
                f"duplicate UID: another input unit with the same UID (series_key {key}) was curated instead",
                "scan",
            )
        else:
            status, reason, stage = entry.status, entry.reason, "scan"
        unit = series_by_key.get(key) if key else None
        clean = scrub(reason, unit) if unit is not None else reason
        clean = _scrub_names(clean, path, names)
        rows.append(
            {
                "input_id": input_id(path),
                "status": status,
                "reason": clean,
                "series_key": key,
                "stage": stage,
                "path": path if record_paths else None,
                "run_utc": now,
            }
        )
    return pd.DataFrame(
        rows, columns=["input_id", "status", "reason", "series_key", "stage", "path", "run_utc"]
    )


_PUNCT = ",;:()[]{}'\"`"


def _scrub_names(reason: str, path: str, names: set[str]) -> str:
    """Replace this file's path and any input file name or path in ``reason`` (PHI-safe)."""
    text = reason.replace(path, "<file>").replace(str(Path(path).parent), "<folder>")
    out = []
    for token in text.split(" "):
        core = token.strip(_PUNCT)
        if core and (core in names or (core.startswith(("/", "./", "../", "~")) and len(core) > 1)):
            token = token.replace(core, "<file>")
        out.append(token)
    return " ".join(out)
