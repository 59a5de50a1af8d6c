"""``hidim deid``: de-identify a batch of DICOM files into a release folder.

Each file goes through :func:`hidim.deidentify.task.process_file`, in-process or in chunks of
files on a process pool or on Dask (:func:`hidim.parallel.run_tasks`; the plan is built once
in the parent, forked workers inherit it, and workers return small audit rows).

Batch (:func:`deidentify`): rows and new re-identification pairs are appended (fsync'd) to a
journal and to the re-identification table every few hundred files, so an interrupted run
resumes where it stopped; the Parquet audit is written once at the end; failures never stop
the batch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from hidim.deidentify.audit import (
    AUDIT_FILE,
    JOURNAL_FILE,
    append_journal,
    append_reid_pairs,
    print_summary,
    read_audit,
    read_journal,
    read_reid_table,
    write_audit,
    write_reid_table,
)
from hidim.deidentify.keys import load_key
from hidim.deidentify.profile import cached_plan
from hidim.deidentify.task import DeidOptions, FileResult, FileTask, process_batch, process_file
from hidim.errors import DeidentificationError
from hidim.parallel import TaskFailure, run_tasks
from hidim.provenance import atomic_write_text, write_run_json

__all__ = [
    "DeidOptions",
    "FileTask",
    "FileResult",
    "DeidSummary",
    "process_file",
    "process_batch",
    "deidentify",
]

#: The audit journal and re-identification pairs are appended (fsync'd) at least this often,
#: so an interrupted run loses at most this much work; the Parquet audit is written at the end.
_FLUSH_EVERY_FILES = 200
_FLUSH_EVERY_SECONDS = 10.0
#: Files per task sent to a worker process (amortises pickling and scheduling).
_MAX_CHUNK = 32


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


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def _collect(inputs: Iterable[str | os.PathLike[str]], exclude: Sequence[Path]) -> list[Path]:
    """Every file under ``inputs`` (resolved, deduplicated, in order), outside ``exclude``."""
    excluded = [ex.resolve() for ex in exclude]
    files: list[Path] = []
    seen: set[Path] = set()

    def add(candidate: Path) -> None:
        resolved = candidate.resolve()
        if resolved in seen or any(resolved.is_relative_to(ex) for ex in excluded):
            return
        seen.add(resolved)
        files.append(resolved)

    for n, entry in enumerate(inputs, start=1):
        path = Path(entry)
        if path.is_file():
            add(path)
        elif path.is_dir():
            for sub in sorted(path.rglob("*")):
                if sub.is_file():
                    add(sub)
        else:
            raise DeidentificationError(
                f"expected input files or folders, got a path that does not exist (input "
                f"#{n}); check the IN arguments"
            )
    return files


def _input_id(resolved: Path, key: bytes) -> str:
    """A keyed hash of the (resolved) input path: names an input without revealing it."""
    message = b"hidim/input/v1\x00" + str(resolved).encode("utf-8", "surrogateescape")
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
    journal_path = out / JOURNAL_FILE
    previous = {r["input_id"]: r for r in read_audit(audit_path)}
    previous.update((r["input_id"], r) for r in read_journal(journal_path))
    reid = read_reid_table(reid_path)

    rows: dict[str, dict[str, Any]] = {}
    tasks: list[FileTask] = []
    ids: list[str] = []
    for path in files:
        input_id = _input_id(path, key)
        ids.append(input_id)
        fingerprint = _fingerprint(path)
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

    pending_rows: list[dict[str, Any]] = []
    pending_reid: dict[tuple[str, str], str] = {}
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal last_flush
        # Pairs first: a file the journal marks done always has its pairs on disk.
        append_reid_pairs(reid_path, pending_reid)
        append_journal(journal_path, pending_rows)
        pending_reid.clear()
        pending_rows.clear()
        last_flush = time.monotonic()

    def record(task: FileTask, result: FileResult | TaskFailure) -> None:
        if isinstance(result, TaskFailure):
            kind = result.error.split(":", 1)[0]
            row = {
                "input_id": task.input_id,
                "fingerprint": task.fingerprint,
                "status": "failed",
                "reason": f"worker error ({kind})",
            }
        else:
            row = result.row
            for pair, pseudonym in result.reid.items():
                if reid.get(pair) != pseudonym:
                    reid[pair] = pseudonym
                    pending_reid[pair] = pseudonym
        rows[task.input_id] = row
        pending_rows.append(row)

    chunks = _chunks(tasks, workers if not scheduler else 8)

    def on_result(index: int, result: list[FileResult] | TaskFailure) -> None:
        chunk = chunks[index]
        if isinstance(result, TaskFailure):
            for task in chunk:
                record(task, result)
        else:
            for task, one in zip(chunk, result, strict=True):
                record(task, one)
        if (
            len(pending_rows) >= _FLUSH_EVERY_FILES
            or time.monotonic() - last_flush > _FLUSH_EVERY_SECONDS
        ):
            flush()

    if tasks:
        cached_plan(options.profile)  # built once here; forked workers inherit it
        run_tasks(
            process_batch,
            chunks,
            workers=workers,
            scheduler=scheduler,
            description="de-identifying",
            show_progress=show_progress,
            on_result=on_result,
        )
    _mark_duplicates(rows)
    flush()
    write_reid_table(reid_path, reid)
    write_audit(audit_path, [rows[i] for i in ids])
    journal_path.unlink(missing_ok=True)
    if log_path is not None:
        lines = ["input_id,path"] + [
            f"{i},{json.dumps(str(p))}" for i, p in zip(ids, files, strict=True)
        ]
        atomic_write_text(log_path, "\n".join(lines) + "\n")
        os.chmod(log_path, 0o600)
    ordered = [rows[i] for i in ids]
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


def _chunks(tasks: list[FileTask], workers: int) -> list[list[FileTask]]:
    """Split tasks into chunks: one file each in-process (fine-grained progress), else about
    four chunks per worker, at most ``_MAX_CHUNK`` files each (load balance vs. overhead)."""
    if workers <= 1:
        return [[t] for t in tasks]
    size = max(1, min(_MAX_CHUNK, -(-len(tasks) // (workers * 4))))
    return [tasks[i : i + size] for i in range(0, len(tasks), size)]


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
