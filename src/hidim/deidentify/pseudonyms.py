"""Keyed pseudonyms for patient identifiers and the per-patient date shift.

All values are derived with HMAC-SHA256 under the project key, with a different domain string
per kind, so:

* the same hospital patient ID gives the same pseudonym in every file, run and site that
  shares the key (and a different one for another key);
* nobody without the key can recompute the mapping from a guessed name or ID;
* the date shift of a patient is the same in every file of that patient, so intervals between
  studies are preserved exactly.

Pseudonyms are upper-case hex, short enough for LO (64) and SH (16) value limits.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

__all__ = [
    "patient_pseudonym",
    "name_pseudonym",
    "accession_pseudonym",
    "date_shift",
    "SHIFT_DAYS_MIN",
    "SHIFT_DAYS_MAX",
]

#: Dates move back by between SHIFT_DAYS_MIN and SHIFT_DAYS_MAX days (plus 0-23 hours).
SHIFT_DAYS_MIN = 365
SHIFT_DAYS_MAX = 3 * 365


def _digest(key: bytes, domain: str, value: str) -> bytes:
    message = domain.encode("ascii") + b"\x00" + value.strip().encode("utf-8", "replace")
    return hmac.new(key, message, hashlib.sha256).digest()


def patient_pseudonym(patient_id: str, key: bytes) -> str:
    """Pseudonymous PatientID: ``"P"`` + 15 hex digits (fits SH and LO)."""
    return "P" + _digest(key, "hidim/patient_id/v1", patient_id).hex()[:15].upper()


def name_pseudonym(patient_name: str, key: bytes) -> str:
    """Pseudonymous PatientName: family ``"ANON"``, given name 12 hex digits."""
    return "ANON^" + _digest(key, "hidim/patient_name/v1", patient_name).hex()[:12].upper()


def accession_pseudonym(accession: str, key: bytes) -> str:
    """Pseudonymous AccessionNumber: ``"A"`` + 15 hex digits (fits SH)."""
    return "A" + _digest(key, "hidim/accession/v1", accession).hex()[:15].upper()


def date_shift(patient_key: str, key: bytes) -> timedelta:
    """The per-patient offset added to every date and time of that patient.

    Args:
        patient_key: The patient's original identifier (PatientID; callers fall back to
            other identifiers when it is empty).
        key: The project key.

    Returns:
        A negative offset of ``SHIFT_DAYS_MIN``..``SHIFT_DAYS_MAX`` days plus 0-23 whole
        hours (whole hours keep the precision of times given to the hour).
    """
    raw = int.from_bytes(_digest(key, "hidim/date_shift/v1", patient_key)[:8], "big")
    span = SHIFT_DAYS_MAX - SHIFT_DAYS_MIN + 1
    days = SHIFT_DAYS_MIN + raw % span
    hours = (raw // span) % 24
    return -timedelta(days=days) + timedelta(hours=hours)
