"""One DICOMweb server: credentials, the client, a reachability probe, DICOM JSON helpers.

Shared by :mod:`hidim.ingest.dicomweb` (search), :mod:`hidim.ingest.dicomweb_pull` and
:mod:`hidim.ingest.dicomweb_push`. Every request goes through
``dicomweb_client.api.DICOMwebClient`` (multipart encoding/decoding, retries on 429/503/504).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.datadict import keyword_dict, tag_for_keyword

from hidim.errors import ConfigError, IngestError
from hidim.ingest.fileio import redact
from hidim.provenance import atomic_write_bytes

__all__ = [
    "DicomWebAuth",
    "TransferResult",
    "connect",
    "check_server",
    "server_error",
    "failure_reason",
    "http_status",
    "check_filters",
    "safe_filters",
    "json_values",
    "json_first",
    "search_all",
    "quiet_http_logs",
    "write_ledger",
    "LEDGER_SCHEMA",
]

#: Ledger columns shared by ``pull_ledger.parquet`` and ``push_ledger.parquet``.
LEDGER_SCHEMA = pa.schema(
    [
        ("study_uid", pa.string()),
        ("series_uid", pa.string()),
        ("sop_uid", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("path", pa.string()),
        ("transfer_syntax", pa.string()),
        ("size_bytes", pa.int64()),
    ]
)
#: Filter keys whose values identify a patient: never written to run.json or logs.
_IDENTIFYING = frozenset(
    {"PatientID", "PatientName", "PatientBirthDate", "AccessionNumber", "OtherPatientIDs"}
)
_DATE_RANGE = re.compile(r"\d{8}|\d{8}-\d{0,8}|-\d{8}")
_ROOT_EXAMPLES = (
    "e.g. http://host:8042/dicom-web (Orthanc), http://host:8080/dcm4chee-arc/aets/DCM4CHEE/rs "
    "(dcm4chee), https://healthcare.googleapis.com/v1/projects/…/dicomWeb (Google)"
)


@dataclass(frozen=True, kw_only=True)
class DicomWebAuth:
    """How to reach a DICOMweb server: credentials, TLS, timeout.

    Attributes:
        username: HTTP Basic user (with ``password``).
        password: HTTP Basic password (excluded from ``repr``; never logged).
        token: OAuth2/OIDC bearer token, sent as ``Authorization: Bearer …``.
        verify: ``True`` (system CAs), ``False`` (no TLS check: test servers only), or the
            path of a CA bundle (a hospital's internal CA).
        timeout_s: Seconds to wait for a connection, and for the next bytes of a response.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    verify: bool | str = True
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.password is not None and not self.username:
            raise ConfigError("expected a username with the password, got none; pass --user")
        if self.token and self.username:
            raise ConfigError("expected Basic (user/password) or a bearer token, got both")
        if not self.timeout_s > 0:
            raise ConfigError(f"expected timeout_s > 0, got {self.timeout_s}")
        if isinstance(self.verify, str) and not Path(self.verify).is_file():
            raise ConfigError(
                f"expected a CA bundle file (PEM), got {self.verify!r}, which does not exist; "
                "fix --ca-bundle"
            )


@dataclass
class TransferResult:
    """What a pull or push did: one ledger row (dict, :data:`LEDGER_SCHEMA`) per item."""

    rows: list[dict[str, Any]]
    ledger_path: Path | None

    def count(self, status: str) -> int:
        """Rows with ``status`` (``ok``, ``skipped``, ``failed``; push also ``refused``)."""
        return sum(1 for r in self.rows if r["status"] == status)

    @property
    def all_ok(self) -> bool:
        """True when nothing failed or was refused."""
        return self.count("failed") == 0 and self.count("refused") == 0


#: Retries of a request that failed in transport or got 408/429/503/504: 3 attempts, waits
#: of 0.5 s then 1 s (``dicomweb_client``'s default, 5 attempts up to 16 s apart, makes a
#: dead server cost 30 s per request).
RETRY: dict[str, Any] = {"retry": True, "max_attempts": 3, "wait_exponential_multiplier": 250}


def connect(url: str, auth: DicomWebAuth | None = None) -> DICOMwebClient:
    """A ``DICOMwebClient`` for the DICOMweb root ``url`` with ``auth`` applied (no request).

    Raises:
        ConfigError: Not an http(s) URL, or credentials written into the URL.
    """
    auth = auth or DicomWebAuth()
    parts = urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"expected a DICOMweb root URL http(s)://host[:port]/path, got {url!r}; {_ROOT_EXAMPLES}"
        )
    if parts.username or parts.password:
        raise ConfigError(
            "expected no credentials inside the URL, got user:password@host; pass --user "
            "(password prompted or from HIDIM_PACS_PASSWORD) or --token instead"
        )
    session = requests.Session()
    if auth.username:
        session.auth = (auth.username, auth.password or "")
    if auth.token:
        session.headers["Authorization"] = f"Bearer {auth.token}"
    session.verify = auth.verify
    client = DICOMwebClient(url.rstrip("/"), session=session, timeout=auth.timeout_s)
    client.set_http_retry_params(**RETRY)
    return client


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a ``requests`` error, if it has a response."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return int(status) if status is not None else None


def server_error(exc: Exception, url: str) -> IngestError:
    """An actionable :class:`IngestError` for a failure that concerns the whole server."""
    if isinstance(exc, requests.exceptions.SSLError):
        return IngestError(
            f"TLS verification failed for {url}; pass the hospital's CA bundle (--ca-bundle "
            "PATH), or check the server certificate"
        )
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return IngestError(
            f"expected a DICOMweb server at {url}, but it is unreachable "
            f"({type(exc).__name__}); check the host, port and path, that the server runs, "
            "and any proxy/VPN/firewall in between"
        )
    status = http_status(exc)
    if status in (401, 403):
        return IngestError(
            f"{url} refused access (HTTP {status}); pass credentials: --user (password "
            "prompted or from HIDIM_PACS_PASSWORD) or --token (HIDIM_PACS_TOKEN), and check "
            "that the account may query, retrieve and store"
        )
    return IngestError(
        f"expected a DICOMweb root at {url}, but GET {url}/studies failed "
        f"({f'HTTP {status}' if status else type(exc).__name__}); pass the DICOMweb root, "
        f"{_ROOT_EXAMPLES}"
    )


def check_server(client: DICOMwebClient, url: str) -> None:
    """One QIDO-RS request (``GET {url}/studies?limit=1``) that must answer DICOM JSON.

    Raises:
        IngestError: Unreachable, 401/403, TLS failure, or not a DICOMweb root.
    """
    client.set_http_retry_params(retry=False)  # a dead server answers now, not in 30 s
    try:
        found = client.search_for_studies(limit=1)
    except (requests.RequestException, ValueError) as exc:
        raise server_error(exc, url) from None
    finally:
        client.set_http_retry_params(**RETRY)
    if not isinstance(found, list) or any(not isinstance(item, dict) for item in found):
        raise IngestError(
            f"expected DICOM JSON study records from {url}/studies, got another JSON (a REST "
            f"API that is not DICOMweb?); pass the DICOMweb root, {_ROOT_EXAMPLES}"
        )


def failure_reason(exc: BaseException) -> str:
    """A short, value-free reason for a failed request or write (for ledgers)."""
    status = http_status(exc)
    if status == 404:
        return "HTTP 404: not on the server (deleted after the search?)"
    if status is not None:
        return f"HTTP {status}: {redact(str(exc))}"
    return f"{type(exc).__name__}: {redact(str(exc))}"


def check_filters(filters: Mapping[str, str]) -> dict[str, str]:
    """Validate QIDO-RS filters: DICOM keywords as keys, DICOM dates/ranges for ``*Date``.

    Raises:
        ConfigError: Unknown keyword (nearest one suggested) or malformed date.
    """
    checked = {}
    for key, value in filters.items():
        if key not in keyword_dict:
            near = get_close_matches(key, list(keyword_dict), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"expected DICOM keywords as QIDO-RS filter keys, got {key!r}{hint}")
        if key.endswith("Date") and not _DATE_RANGE.fullmatch(str(value)):
            raise ConfigError(
                f"expected {key} as YYYYMMDD or a range YYYYMMDD-YYYYMMDD, got {value!r}"
            )
        checked[key] = str(value)
    return checked


def safe_filters(filters: Mapping[str, str] | None) -> dict[str, str] | None:
    """Filters with patient-identifying values replaced by ``<redacted>`` (for run.json)."""
    if filters is None:
        return None
    return {k: ("<redacted>" if k in _IDENTIFYING else v) for k, v in filters.items()}


def json_values(item: Mapping[str, Any], keyword: str) -> list[Any]:
    """The values of ``keyword`` in one DICOM JSON record (``[]`` when absent/empty)."""
    tag = tag_for_keyword(keyword)
    element = item.get(f"{tag:08X}") if tag is not None else None
    return list(element.get("Value", [])) if isinstance(element, Mapping) else []


def json_first(item: Mapping[str, Any], keyword: str) -> Any:
    """The first value of ``keyword`` in one DICOM JSON record, or ``None``."""
    values = json_values(item, keyword)
    return values[0] if values else None


def search_all(
    search: Callable[..., list[dict[str, Any]]], key: str, **kwargs: Any
) -> list[dict[str, Any]]:
    """Every match of a QIDO-RS search, paging with ``offset`` as long as pages bring news.

    ``dicomweb_client``'s ``get_remaining`` loops forever on servers that ignore ``offset``
    (Orthanc 1.10 does whenever a filter is given); here a page that brings no record with a
    new ``key`` value (e.g. ``"SOPInstanceUID"``) ends the paging, as does an empty page.

    Args:
        search: A bound ``DICOMwebClient.search_for_*`` method.
        key: Keyword whose value identifies a record (the query's level UID).
        **kwargs: Passed to ``search`` (``search_filters``, ``fields``, UIDs...).

    Returns:
        The records, first occurrence of each key value, in the server's order.
    """
    records: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        page = search(offset=offset or None, **kwargs)
        fresh = {str(json_first(item, key)): item for item in page}
        fresh = {uid: item for uid, item in fresh.items() if uid not in records}
        if not fresh:
            return list(records.values())
        records.update(fresh)
        offset += len(page)


@contextmanager
def quiet_http_logs() -> Iterator[None]:
    """Keep ``dicomweb_client`` and ``urllib3`` from logging request URLs (DEBUG) meanwhile.

    QIDO-RS query strings carry the filter values (a PatientID, an accession number), which
    must not reach log files. Their levels are raised to INFO, then restored.
    """
    loggers = [logging.getLogger(name) for name in ("dicomweb_client", "urllib3")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def write_ledger(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ledger rows as Parquet (:data:`LEDGER_SCHEMA`), atomically."""
    table = pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return atomic_write_bytes(path, sink.getvalue().to_pybytes())
