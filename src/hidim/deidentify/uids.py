"""Keyed UID remapping: ``2.25.<decimal of HMAC-SHA256(key, uid)[:16]>``.

The same input UID gives the same output UID in every file, every run and every site that
shares the key, so study/series/frame-of-reference relations and every ``Referenced…UID`` stay
consistent after de-identification. UIDs of the standard itself (``1.2.840.10008.*``: SOP
classes, transfer syntaxes, coding schemes, well-known frames of reference) are kept.

The ``2.25`` root is the ISO/ITU-T arc for UUID-derived UIDs (PS3.5 B.2); a 128-bit integer is
at most 39 digits, so results are at most 44 characters (the limit is 64).
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["STANDARD_UID_ROOT", "is_standard_uid", "remap_uid"]

STANDARD_UID_ROOT = "1.2.840.10008."
_DOMAIN = b"hidim/uid/v1\x00"


def is_standard_uid(uid: str) -> bool:
    """Whether ``uid`` belongs to the DICOM standard's own registry (kept as it is)."""
    return uid.startswith(STANDARD_UID_ROOT)


def remap_uid(uid: str, key: bytes) -> str:
    """The keyed replacement of ``uid`` (standard UIDs and empty values are returned as is).

    Args:
        uid: A UID value (trailing NUL/space padding is ignored).
        key: The project key (see :mod:`hidim.deidentify.keys`).

    Returns:
        ``"2.25.<decimal>"``, at most 44 characters.
    """
    clean = uid.strip("\x00 ")
    if not clean or is_standard_uid(clean):
        return clean
    digest = hmac.new(key, _DOMAIN + clean.encode("ascii", "replace"), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))
