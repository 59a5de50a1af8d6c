"""Refuse to curate identified data: every series must say ``PatientIdentityRemoved=YES``.

A store is meant to be shared with model developers, so curation checks the de-identification
flag (0012,0062) that ``hidim deid`` (and any PS3.15-conformant de-identifier) sets, and stops
before writing anything when a series lacks it — unless the caller explicitly allows
identified input (e.g. public test data, or a store that never leaves the hospital).
"""

from __future__ import annotations

from collections.abc import Sequence

import pydicom
from pydicom.errors import InvalidDicomError

from hidim.errors import CurationError
from hidim.ingest import SeriesInfo

__all__ = ["series_deidentified", "check_deidentified"]


def series_deidentified(series: SeriesInfo) -> bool:
    """Whether the first file of ``series`` has PatientIdentityRemoved == ``"YES"``."""
    if not series.files:
        return False
    try:
        ds = pydicom.dcmread(
            series.files[0],
            stop_before_pixels=True,
            specific_tags=["PatientIdentityRemoved"],
            force=True,
        )
    except (OSError, InvalidDicomError, ValueError):
        return False
    return str(ds.get("PatientIdentityRemoved", "")).strip().upper() == "YES"


def check_deidentified(flags: Sequence[bool]) -> None:
    """Raise :class:`CurationError` if any series is not flagged as de-identified."""
    n_bad = sum(1 for f in flags if not f)
    if n_bad:
        raise CurationError(
            f"expected de-identified DICOM (PatientIdentityRemoved = YES), got {n_bad} of "
            f"{len(flags)} series without it; run `hidim deid IN OUT` first and curate OUT, "
            "or pass --allow-identified (allow_identified=True) only for data that may stay "
            "identified, such as public test files"
        )
