"""DICOMweb: search a PACS (QIDO-RS), pull studies (WADO-RS), push a release (STOW-RS).

The public entry point (see ``docs/dicomweb.md``); every request goes through
``dicomweb_client.api.DICOMwebClient``::

    from hidim.ingest.dicomweb import DicomWebAuth, pull, push, search_studies

    auth = DicomWebAuth(token=os.environ["PACS_TOKEN"], verify="/etc/ssl/hospital-ca.pem")
    studies = search_studies(url, filters={"ModalitiesInStudy": "US"}, limit=50, auth=auth)
    result = pull(url, "/secure/echo_raw", study_uids=[s.study_uid for s in studies],
                  modalities=["US"], workers=4, auth=auth)
    # ... hidim deid /secure/echo_raw /data/release --key ... --reid-table ...
    push(research_url, "/data/release", ledger_dir="/data/release_push")

* :func:`search_studies` — study matches without patient identity (UID, date, modalities,
  series/instance counts).
* :func:`~hidim.ingest.dicomweb_pull.pull` — ``OUT/<Study>/<Series>/<SOP>.dcm`` in the stored
  transfer syntax, atomic, resumable, ``pull_ledger.parquet`` of every instance.
* :func:`~hidim.ingest.dicomweb_push.push` — STOW-RS in batches; refuses files whose
  ``PatientIdentityRemoved`` is not ``YES`` unless ``allow_identified=True``.

Server-wide problems (unreachable, HTTP 401/403, TLS, a URL that is not a DICOMweb root)
raise :class:`hidim.errors.IngestError` naming the URL and the fix; per-instance problems
are ledger rows. Logs carry counts only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from hidim.errors import ConfigError
from hidim.ingest.dicomweb_pull import PULL_LEDGER, pull
from hidim.ingest.dicomweb_push import PUSH_LEDGER, is_deidentified, push
from hidim.ingest.dicomweb_server import (
    DicomWebAuth,
    TransferResult,
    check_filters,
    check_server,
    connect,
    json_first,
    json_values,
    quiet_http_logs,
    search_all,
    server_error,
)

__all__ = [
    "PULL_LEDGER",
    "PUSH_LEDGER",
    "DicomWebAuth",
    "StudySummary",
    "TransferResult",
    "connect",
    "is_deidentified",
    "pull",
    "push",
    "search_studies",
]

_STUDY_FIELDS = (
    "StudyDate",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)


@dataclass(frozen=True, slots=True)
class StudySummary:
    """One study found by QIDO-RS (no patient identity).

    Attributes:
        study_uid: StudyInstanceUID.
        study_date: StudyDate ``YYYYMMDD`` (``None`` when the server gives none).
        modalities: ModalitiesInStudy, e.g. ``("US",)``.
        n_series: NumberOfStudyRelatedSeries (``None`` when not returned).
        n_instances: NumberOfStudyRelatedInstances (``None`` when not returned).
    """

    study_uid: str
    study_date: str | None
    modalities: tuple[str, ...]
    n_series: int | None
    n_instances: int | None

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> StudySummary:
        """Build from one DICOM JSON study record."""
        n_series = json_first(item, "NumberOfStudyRelatedSeries")
        n_instances = json_first(item, "NumberOfStudyRelatedInstances")
        date = json_first(item, "StudyDate")
        return cls(
            study_uid=str(json_first(item, "StudyInstanceUID")),
            study_date=str(date) if date else None,
            modalities=tuple(str(m) for m in json_values(item, "ModalitiesInStudy")),
            n_series=int(n_series) if n_series is not None else None,
            n_instances=int(n_instances) if n_instances is not None else None,
        )


def search_studies(
    url: str,
    *,
    filters: Mapping[str, str] | None = None,
    limit: int | None = 100,
    auth: DicomWebAuth | None = None,
) -> list[StudySummary]:
    """Studies on the server matching ``filters`` (QIDO-RS ``GET {url}/studies``).

    Args:
        url: DICOMweb root, e.g. ``http://host:8042/dicom-web``.
        filters: QIDO-RS attribute filters by DICOM keyword, e.g. ``{"PatientID": "123",
            "ModalitiesInStudy": "US", "StudyDate": "20200101-20201231"}`` (``*`` and ``?``
            wildcards as the server supports them).
        limit: At most this many studies; ``None`` pages through every match.
        auth: Credentials / TLS / timeout.

    Returns:
        One :class:`StudySummary` per study, in the server's order.

    Raises:
        IngestError: Server unreachable, access refused, or not a DICOMweb root.
        ConfigError: A filter key is not a DICOM keyword, a date is malformed, limit < 1.
    """
    checked = check_filters(filters or {})
    if limit is not None and limit < 1:
        raise ConfigError(f"expected limit >= 1 (or None for every match), got {limit}")
    client = connect(url, auth)
    check_server(client, url)
    try:
        with quiet_http_logs():  # the query string holds the filter values
            if limit is None:
                found = search_all(
                    client.search_for_studies,
                    "StudyInstanceUID",
                    search_filters=checked,
                    fields=_STUDY_FIELDS,
                )
            else:
                found = client.search_for_studies(
                    search_filters=checked, limit=limit, fields=_STUDY_FIELDS
                )
    except (requests.RequestException, ValueError) as exc:
        raise server_error(exc, url) from None
    summaries = [StudySummary.from_json(item) for item in found]
    return summaries if limit is None else summaries[:limit]
