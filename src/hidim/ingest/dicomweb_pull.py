"""Pull studies from a PACS over DICOMweb (QIDO-RS listing, WADO-RS retrieval) into a folder.

Layout: ``OUT/<StudyUID>/<SeriesUID>/<SOPUID>.dcm`` — Part-10 files with file meta, in the
transfer syntax the server stored (``Accept: multipart/related; type="application/dicom";
transfer-syntax=*``: JPEG 2000, RLE, JPEG-LS, implicit VR... are kept, nothing is
transcoded), each written to a temporary file and renamed. ``OUT/pull_ledger.parquet`` has
one row per listed instance (``ok``, ``skipped`` = already on disk with that SOP Instance
UID, ``failed`` + reason); ``OUT/run.json`` records the request (identifying filter values
redacted) and the counts.

How: the instances of each study are listed with QIDO-RS; a series with nothing on disk yet
is fetched with one WADO-RS series request (streamed, several times faster than a request
per instance); whatever that did not deliver, and every instance of a partly pulled series,
is fetched with one instance request each. Series run on ``workers`` threads (the work waits
on the network and the disk), each thread with its own HTTP session.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from rich.progress import Progress

from hidim.errors import ConfigError
from hidim.ingest.dicomweb_server import (
    DicomWebAuth,
    TransferResult,
    check_filters,
    check_server,
    connect,
    failure_reason,
    http_status,
    json_first,
    quiet_http_logs,
    safe_filters,
    search_all,
    server_error,
    write_ledger,
)
from hidim.parallel import progress_bar
from hidim.provenance import atomic_write_bytes, write_run_json

__all__ = ["PULL_LEDGER", "pull"]

PULL_LEDGER = "pull_ledger.parquet"
#: The instance as stored, no transcoding (``application/dicom; transfer-syntax=*``).
AS_STORED = (("application/dicom", "*"),)
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Instance:
    study_uid: str
    series_uid: str
    sop_uid: str

    @property
    def rel_path(self) -> str | None:
        """``<study>/<series>/<sop>.dcm``; ``None`` for a malformed (maybe hostile) UID."""
        uids = (self.study_uid, self.series_uid, self.sop_uid)
        if not all(len(u) <= 64 and _UID.fullmatch(u) for u in uids):
            return None
        return f"{self.study_uid}/{self.series_uid}/{self.sop_uid}.dcm"

    def row(self, status: str, reason: str = "", **done: Any) -> dict[str, Any]:
        """A ledger row; ``done`` may give ``path``, ``transfer_syntax``, ``size_bytes``."""
        return {
            "study_uid": self.study_uid or None,
            "series_uid": self.series_uid or None,
            "sop_uid": self.sop_uid or None,
            "status": status,
            "reason": reason,
            "path": done.get("path"),
            "transfer_syntax": done.get("transfer_syntax"),
            "size_bytes": done.get("size_bytes"),
        }


def _find_studies(
    client: DICOMwebClient, url: str, filters: Mapping[str, str], modalities: Sequence[str]
) -> list[str]:
    """Study UIDs matching ``filters`` (one query per modality, as ``ModalitiesInStudy``)."""
    if modalities and "ModalitiesInStudy" not in filters:
        queries = [dict(filters, ModalitiesInStudy=m) for m in modalities]
    else:
        queries = [dict(filters)]
    found: dict[str, None] = {}
    for query in queries:
        try:
            with quiet_http_logs():  # the query string holds the filter values
                items = search_all(
                    client.search_for_studies, "StudyInstanceUID", search_filters=query
                )
        except (requests.RequestException, ValueError) as exc:
            raise server_error(exc, url) from None
        found.update((str(json_first(item, "StudyInstanceUID")), None) for item in items)
    return list(found)


def _list_instances(
    client: DICOMwebClient, study_uid: str, modalities: Sequence[str]
) -> list[_Instance]:
    """Every instance of a study (of the series of ``modalities`` only, when given)."""
    if modalities:
        listing = []
        for modality in modalities:
            for series in search_all(
                client.search_for_series,
                "SeriesInstanceUID",
                study_instance_uid=study_uid,
                search_filters={"Modality": modality},
            ):
                listing += search_all(
                    client.search_for_instances,
                    "SOPInstanceUID",
                    study_instance_uid=study_uid,
                    series_instance_uid=str(json_first(series, "SeriesInstanceUID")),
                )
    else:
        listing = search_all(
            client.search_for_instances, "SOPInstanceUID", study_instance_uid=study_uid
        )
    found: dict[str, _Instance] = {}
    for item in listing:
        sop = str(json_first(item, "SOPInstanceUID"))
        series_uid = str(json_first(item, "SeriesInstanceUID"))
        found.setdefault(sop, _Instance(study_uid, series_uid, sop))
    return list(found.values())


def _on_disk(path: Path, sop_uid: str) -> bool:
    """Whether ``path`` is a readable DICOM file of instance ``sop_uid`` (resume check)."""
    if not path.is_file():
        return False
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    except Exception:  # noqa: BLE001 - unreadable: fetch it again
        return False
    return str(ds.get("SOPInstanceUID", "")) == sop_uid


def _save(ds: Dataset, inst: _Instance, out: Path) -> dict[str, Any]:
    """Write a retrieved instance as Part-10 (atomically, transfer syntax as received).

    Returns its ledger row; ``failed`` with the reason when it cannot be written."""
    if str(ds.get("SOPInstanceUID", "")) != inst.sop_uid:
        return inst.row("failed", "the server returned another instance than requested")
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if not syntax:
        return inst.row("failed", "the server sent no file meta (transfer syntax unknown)")
    rel = inst.rel_path
    if rel is None:
        return inst.row("failed", "malformed UID from the server: not written")
    try:
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        data = buffer.getvalue()
        atomic_write_bytes(out / rel, data)
    except Exception as exc:  # noqa: BLE001 - disk full, unwritable folder...: record it
        return inst.row("failed", f"not written: {failure_reason(exc)}")
    return inst.row("ok", path=rel, transfer_syntax=str(syntax), size_bytes=len(data))


class _Breaker:
    """Stop asking a server that stopped answering.

    After ``limit`` transport failures in a row (across threads; each already retried by the
    client), the remaining instances are not requested: their rows say so, and re-running
    the pull resumes. Without it a dead server would cost the retry time of every instance.
    """

    def __init__(self, limit: int = 3) -> None:
        self._lock = threading.Lock()
        self._in_a_row = 0
        self.limit = limit

    def record(self, exc: BaseException | None) -> None:
        """Count a transport failure (``exc``), or reset on any answer from the server."""
        down = isinstance(exc, (requests.ConnectionError, requests.Timeout))
        with self._lock:
            self._in_a_row = self._in_a_row + 1 if down else 0

    @property
    def tripped(self) -> bool:
        """Whether to stop sending requests."""
        return self._in_a_row >= self.limit


def _fetch_series(
    client: DICOMwebClient,
    todo: list[_Instance],
    whole: bool,
    out: Path,
    advance: Callable[[], None],
    breaker: _Breaker,
) -> list[dict[str, Any]]:
    """Retrieve the missing instances of one series; one row each (never raises).

    ``whole``: nothing of the series is on disk, so ask for the series in one request;
    anything it did not deliver is then asked for instance by instance."""
    pending = {inst.sop_uid: inst for inst in todo}
    rows: list[dict[str, Any]] = []
    note = ""
    if whole and not breaker.tripped:
        study, series = todo[0].study_uid, todo[0].series_uid
        try:
            for ds in client.iter_series(study, series, media_types=AS_STORED):
                sop = str(ds.get("SOPInstanceUID", ""))
                inst = pending.pop(sop, None)
                if inst is None:  # stored after the listing (or a duplicate): keep, say so
                    row = _save(ds, _Instance(study, series, sop), out)
                    row["reason"] = row["reason"] or "not in the QIDO-RS listing (new?)"
                    rows.append(row)
                    continue
                rows.append(_save(ds, inst, out))
                advance()
            breaker.record(None)
        except Exception as exc:  # noqa: BLE001 - fall back to one request per instance
            breaker.record(exc)
            note = f" (series request: {failure_reason(exc)})"
    for inst in pending.values():
        if breaker.tripped:
            reason = "not requested: the server stopped answering; re-run the pull to resume"
            rows.append(inst.row("failed", reason))
            advance()
            continue
        try:
            ds = client.retrieve_instance(
                inst.study_uid, inst.series_uid, inst.sop_uid, media_types=AS_STORED
            )
            breaker.record(None)
            rows.append(_save(ds, inst, out))
        except Exception as exc:  # noqa: BLE001 - one failed instance never stops the pull
            breaker.record(exc)
            rows.append(inst.row("failed", failure_reason(exc) + note))
        advance()
    return rows


def pull(
    url: str,
    out_dir: str | os.PathLike[str],
    *,
    study_uids: Sequence[str] | None = None,
    filters: Mapping[str, str] | None = None,
    modalities: Sequence[str] = (),
    workers: int = 4,
    show_progress: bool = True,
    auth: DicomWebAuth | None = None,
) -> TransferResult:
    """Retrieve every instance of the chosen studies into ``out_dir`` (WADO-RS).

    Args:
        url: DICOMweb root, e.g. ``http://host:8042/dicom-web``.
        out_dir: Destination (identified data: keep it on secure storage). Re-running the
            same pull skips what is already there.
        study_uids: The studies to pull; or
        filters: QIDO-RS study filters by DICOM keyword (``{"PatientID": "123",
            "StudyDate": "20200101-20201231"}``); ``{}`` pulls every study on the server.
        modalities: Pull only the series of these modalities (e.g. ``("US",)``); with
            ``filters``, studies are also searched by ``ModalitiesInStudy``.
        workers: Concurrent HTTP connections (threads).
        show_progress: Show a progress bar over instances.
        auth: Credentials / TLS / timeout.

    Returns:
        A :class:`TransferResult`: one row per listed instance (and per study whose listing
        failed), also written to ``out_dir/pull_ledger.parquet``.

    Raises:
        IngestError: Server unreachable, access refused, or not a DICOMweb root.
        ConfigError: Neither or both of ``study_uids`` and ``filters``; bad options.
    """
    if (study_uids is None) == (filters is None):
        which = "both" if study_uids is not None else "neither"
        raise ConfigError(
            f"expected study_uids or filters, got {which}; pass study UIDs (--study), or "
            "filters ({} / --all pulls the whole server)"
        )
    if workers < 1:
        raise ConfigError(f"expected workers >= 1, got {workers}")
    checked = check_filters(filters) if filters is not None else None
    wanted = tuple(m.strip().upper() for m in modalities)
    out = Path(out_dir)
    client = connect(url, auth)
    check_server(client, url)
    if study_uids is not None:
        studies = list(dict.fromkeys(study_uids))
    else:
        studies = _find_studies(client, url, checked or {}, wanted)

    clients = _Clients(url, auth)
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        progress_bar(disable=not show_progress) as progress,
    ):
        rows, listed = _list_studies(pool, clients, studies, wanted, progress)
        todo: dict[tuple[str, str], list[_Instance]] = {}
        series_size: dict[tuple[str, str], int] = {}
        for inst in listed:
            key = (inst.study_uid, inst.series_uid)
            series_size[key] = series_size.get(key, 0) + 1
            rel = inst.rel_path
            if rel is None:
                reason = "malformed UID in the QIDO-RS listing: not retrieved"
                rows.append(inst.row("failed", reason))
            elif _on_disk(out / rel, inst.sop_uid):
                rows.append(inst.row("skipped", "already on disk", path=rel))
            else:
                todo.setdefault(key, []).append(inst)
        rows += _retrieve(pool, clients, todo, series_size, out, progress, len(listed))

    ledger = write_ledger(out / PULL_LEDGER, rows)
    result = TransferResult(rows=rows, ledger_path=ledger)
    counts = {s: result.count(s) for s in ("ok", "skipped", "failed")}
    config = {
        "url": url,
        "n_studies": len(studies),
        "filters": safe_filters(checked),
        "modalities": list(wanted),
        "workers": workers,
    }
    write_run_json(out, command="pacs pull", config=config, extra={"counts": counts})
    _log.info("pull: %d studies, %s", len(studies), counts)
    return result


class _Clients:
    """One ``DICOMwebClient`` per worker thread (a ``requests.Session`` is not shared)."""

    def __init__(self, url: str, auth: DicomWebAuth | None) -> None:
        self._url, self._auth = url, auth
        self._local = threading.local()
        self.breaker = _Breaker()

    def get(self) -> DICOMwebClient:
        """This thread's client."""
        if getattr(self._local, "client", None) is None:
            self._local.client = connect(self._url, self._auth)
        return self._local.client  # type: ignore[no-any-return]


def _list_studies(
    pool: ThreadPoolExecutor,
    clients: _Clients,
    studies: list[str],
    wanted: tuple[str, ...],
    progress: Progress,
) -> tuple[list[dict[str, Any]], list[_Instance]]:
    """QIDO-RS instance listings of ``studies``, concurrently; rows for studies without any."""
    task = progress.add_task("listing studies", total=len(studies))

    def job(study: str) -> list[_Instance] | Exception:
        try:
            return _list_instances(clients.get(), study, wanted)
        except Exception as exc:  # noqa: BLE001 - record the study, go on with the others
            return exc
        finally:
            progress.advance(task)

    rows: list[dict[str, Any]] = []
    listed: list[_Instance] = []
    for study, found in zip(studies, pool.map(job, studies), strict=True):
        if isinstance(found, Exception):
            if http_status(found) == 404:
                reason = "study not on the server (QIDO-RS: HTTP 404)"
            else:
                reason = f"listing the study failed: {failure_reason(found)}"
            rows.append(_Instance(study, "", "").row("failed", reason))
        elif not found and wanted:
            reason = f"no {'/'.join(wanted)} series in this study"
            rows.append(_Instance(study, "", "").row("skipped", reason))
        elif not found:
            reason = "study not on the server (QIDO-RS lists no instances)"
            rows.append(_Instance(study, "", "").row("failed", reason))
        else:
            listed += found
    return rows, listed


def _retrieve(
    pool: ThreadPoolExecutor,
    clients: _Clients,
    todo: dict[tuple[str, str], list[_Instance]],
    series_size: dict[tuple[str, str], int],
    out: Path,
    progress: Progress,
    n_listed: int,
) -> list[dict[str, Any]]:
    """Fetch the series in ``todo`` concurrently; one row per instance."""
    n_todo = sum(len(v) for v in todo.values())
    task = progress.add_task("pulling instances", total=n_listed, completed=n_listed - n_todo)

    def advance() -> None:
        progress.advance(task)  # rich's Progress is thread-safe

    def job(key: tuple[str, str]) -> list[dict[str, Any]]:
        instances = todo[key]
        whole = len(instances) == series_size[key] and len(instances) > 1
        return _fetch_series(clients.get(), instances, whole, out, advance, clients.breaker)

    rows: list[dict[str, Any]] = []
    for future in as_completed([pool.submit(job, key) for key in todo]):
        rows += future.result()
    return rows
