"""Push a folder of DICOM files (e.g. a ``hidim deid`` release) to a PACS with STOW-RS.

Safety rule: a research PACS must only receive de-identified data, so a file is sent only
when its ``PatientIdentityRemoved`` (0012,0062) is ``YES`` — what ``hidim deid`` (and any
PS3.15-conformant de-identifier) writes; other files are ``refused`` unless
``allow_identified=True`` (e.g. restoring a hospital's own archive).

A header pass sorts the folder's files first (non-DICOM files ``skipped``, identified ones
``refused``, instances the server already lists ``skipped`` so a re-run resumes); the rest
go in batches of ``batch_size`` per STOW-RS request, and the server's response
(ReferencedSOPSequence / FailedSOPSequence) gives each file its ``ok`` or ``failed`` row.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.dataset import Dataset

from hidim.errors import ConfigError, IngestError
from hidim.ingest.dicomweb_server import (
    DicomWebAuth,
    TransferResult,
    check_server,
    connect,
    failure_reason,
    json_first,
    search_all,
    write_ledger,
)
from hidim.parallel import progress_bar
from hidim.provenance import write_run_json

__all__ = ["PUSH_LEDGER", "push", "is_deidentified"]

PUSH_LEDGER = "push_ledger.parquet"
#: STOW-RS FailureReason codes (PS3.18 Table I.2-1 and PS3.4 C.4.2.1.4).
_FAILURES = {
    0xA700: "out of resources",
    0xA900: "data set does not match SOP class",
    0xC000: "cannot understand",
    0x0110: "processing failure",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0xC122: "transfer syntax not supported",
}
_log = logging.getLogger(__name__)


def is_deidentified(ds: Dataset) -> bool:
    """Whether ``PatientIdentityRemoved`` is ``YES``."""
    return str(ds.get("PatientIdentityRemoved", "")).strip().upper() == "YES"


@dataclass(frozen=True, slots=True)
class _File:
    """What the header pass keeps of one file (not the data set: folders can be large)."""

    path: Path
    rel: str
    size: int
    sop_uid: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    syntax: str | None = None
    deidentified: bool = False

    def row(self, status: str, reason: str) -> dict[str, Any]:
        """This file's ledger row."""
        return {
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "sop_uid": self.sop_uid,
            "status": status,
            "reason": reason,
            "path": self.rel,
            "transfer_syntax": self.syntax,
            "size_bytes": self.size,
        }


def _headers(folder: Path) -> tuple[list[_File], list[dict[str, Any]]]:
    """Header pass: the DICOM instances under ``folder``, and rows for the other files."""
    found: list[_File] = []
    rows: list[dict[str, Any]] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        bare = _File(path, path.relative_to(folder).as_posix(), path.stat().st_size)
        try:
            ds = dcmread(path, stop_before_pixels=True)
            sop = str(ds.SOPInstanceUID)
        except Exception:  # noqa: BLE001 - run.json, ledgers, notes...: reported, not sent
            rows.append(bare.row("skipped", "not a DICOM instance"))
            continue
        meta = getattr(ds, "file_meta", None)
        syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        found.append(
            _File(
                path,
                bare.rel,
                bare.size,
                sop_uid=sop,
                study_uid=str(ds.get("StudyInstanceUID", "")) or None,
                series_uid=str(ds.get("SeriesInstanceUID", "")) or None,
                syntax=str(syntax) if syntax else None,
                deidentified=is_deidentified(ds),
            )
        )
    return found, rows


def _on_server(client: DICOMwebClient, study_uids: Iterable[str]) -> set[str]:
    """SOP Instance UIDs the server already lists in these studies (QIDO-RS)."""
    present: set[str] = set()
    for study in study_uids:
        try:
            items = search_all(
                client.search_for_instances, "SOPInstanceUID", study_instance_uid=study
            )
        except Exception:  # noqa: BLE001 - unknown study: nothing of it there yet
            continue
        present.update(str(json_first(item, "SOPInstanceUID")) for item in items)
    return present


def _store_batch(client: DICOMwebClient, batch: list[_File]) -> dict[str, str]:
    """STOW-RS one batch: ``{sop_uid: ""}`` when stored, else ``{sop_uid: reason}``."""
    outcome: dict[str, str] = {}
    datasets = []
    for item in batch:
        try:
            datasets.append(dcmread(item.path))
        except Exception as exc:  # noqa: BLE001 - changed since the header pass
            outcome[str(item.sop_uid)] = f"unreadable: {failure_reason(exc)}"
    sops = [str(ds.SOPInstanceUID) for ds in datasets]
    if not datasets:
        return outcome
    try:
        response = client.store_instances(datasets)
    except requests.HTTPError as exc:  # 409 etc.: the body may still say which failed
        try:
            response = Dataset.from_json(exc.response.json())  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - no per-instance detail: the batch failed
            return outcome | dict.fromkeys(sops, failure_reason(exc))
    except Exception as exc:  # noqa: BLE001
        return outcome | dict.fromkeys(sops, failure_reason(exc))
    outcome |= dict.fromkeys(sops, "not acknowledged by the server")
    for ref in response.get("ReferencedSOPSequence") or []:
        outcome[str(ref.ReferencedSOPInstanceUID)] = ""
    for ref in response.get("FailedSOPSequence") or []:
        code = int(ref.get("FailureReason", 0) or 0)
        meaning = _FAILURES.get(code, "see PS3.18 Table I.2-1")
        outcome[str(ref.ReferencedSOPInstanceUID)] = f"STOW-RS failure 0x{code:04X} ({meaning})"
    return outcome


def push(
    url: str,
    folder: str | os.PathLike[str],
    *,
    allow_identified: bool = False,
    skip_existing: bool = True,
    batch_size: int = 20,
    ledger_dir: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
    auth: DicomWebAuth | None = None,
) -> TransferResult:
    """Store every DICOM instance under ``folder`` on a (research) PACS with STOW-RS.

    Args:
        url: DICOMweb root of the destination, e.g. ``http://research:8042/dicom-web``.
        folder: Files to send (searched recursively; non-DICOM files are ``skipped``).
        allow_identified: Also send files whose ``PatientIdentityRemoved`` is not ``YES``.
        skip_existing: Skip instances the server already lists, so a re-run resumes.
        batch_size: Instances per STOW-RS request (all of a batch are in memory).
        ledger_dir: Where to write ``push_ledger.parquet`` and ``run.json`` (``None``: not
            written; keep it outside ``folder`` so the release stays as released).
        show_progress: Show a progress bar over the files to send.
        auth: Credentials / TLS / timeout.

    Returns:
        A :class:`TransferResult`, one row per file: ``ok``, ``skipped``, ``refused``
        (identified, not sent) or ``failed`` (with the server's reason).

    Raises:
        IngestError: No such folder; server unreachable, access refused, not DICOMweb.
        ConfigError: ``batch_size`` < 1.
    """
    src = Path(folder)
    if not src.is_dir():
        raise IngestError(
            f"expected a folder of DICOM files to push, got {str(src)!r}; pass an existing folder"
        )
    if batch_size < 1:
        raise ConfigError(f"expected batch_size >= 1, got {batch_size}")
    client = connect(url, auth)
    check_server(client, url)
    found, rows = _headers(src)
    present: set[str] = set()
    if skip_existing:
        present = _on_server(client, {f.study_uid for f in found if f.study_uid})
    to_send: list[_File] = []
    first: dict[str, str] = {}
    for item in found:
        sop = str(item.sop_uid)
        if not allow_identified and not item.deidentified:
            reason = (
                "PatientIdentityRemoved is not YES: de-identify it first (hidim deid), or "
                "pass allow_identified / --allow-identified if this PACS may hold identified data"
            )
            rows.append(item.row("refused", reason))
        elif sop in first:
            rows.append(item.row("skipped", f"duplicate instance: same SOP UID as {first[sop]}"))
        elif sop in present:
            rows.append(item.row("skipped", "already on the server"))
        else:
            to_send.append(item)
        first.setdefault(sop, item.rel)
    with progress_bar(disable=not show_progress) as progress:
        task = progress.add_task("pushing instances", total=len(to_send))
        for start in range(0, len(to_send), batch_size):
            batch = to_send[start : start + batch_size]
            outcome = _store_batch(client, batch)
            for item in batch:
                reason = outcome[str(item.sop_uid)]
                rows.append(item.row("failed" if reason else "ok", reason))
            progress.advance(task, len(batch))
    result = TransferResult(rows=rows, ledger_path=None)
    counts = {s: result.count(s) for s in ("ok", "skipped", "refused", "failed")}
    if ledger_dir is not None:
        result.ledger_path = write_ledger(Path(ledger_dir) / PUSH_LEDGER, rows)
        config = {
            "url": url,
            "allow_identified": allow_identified,
            "skip_existing": skip_existing,
            "batch_size": batch_size,
        }
        write_run_json(ledger_dir, command="pacs push", config=config, extra={"counts": counts})
    _log.info("push: %s", counts)
    return result
