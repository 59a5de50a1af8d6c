"""Deterministic synthetic identities: UIDs, names, patient IDs, accession numbers.

Everything derives from ``(seed, kind, index)`` through SHA-256, so the same seed gives the
same identities in any process and any order — the property that lets generation run on a
process pool and still write the same bytes. The identities are fictitious but look like a
hospital's (``FAMILY^GIVEN`` names, 8-digit MRNs, accession numbers), so de-identification
has real work to do.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "derive_int",
    "derive_uid",
    "patient_id",
    "accession_number",
    "person_name",
    "FAMILY_NAMES",
    "GIVEN_NAMES_F",
    "GIVEN_NAMES_M",
]

# Short on purpose: the burned-in "FAMILY, GIVEN" must fit the header band of a small frame.
FAMILY_NAMES: tuple[str, ...] = (
    "ABBOTT", "ADEYEMI", "AHMED", "BAKER", "BANDA", "BERG", "BOWEN", "CHEN", "COLE",
    "COSTA", "DIAZ", "DOYLE", "DUBOIS", "EVANS", "FISCHER", "FOX", "GARCIA", "GREEN",
    "HALL", "HUANG", "IBRAHIM", "JONES", "KAUR", "KELLY", "KHAN", "KIM", "LARSEN", "LEE",
    "LOPEZ", "MARSH", "MENDES", "MORRIS", "NAGY", "NGUYEN", "NOVAK", "OKAFOR", "OLSEN",
    "PARK", "PATEL", "PRICE", "QUINN", "REED", "ROSSI", "SAITO", "SHAW", "SILVA", "SMITH",
    "TANAKA", "TAYLOR", "VARGA", "WALSH", "WARD", "WONG", "YOUNG", "ZHANG",
)  # fmt: skip
GIVEN_NAMES_F: tuple[str, ...] = (
    "ADA", "ALICE", "AMIRA", "ANNA", "CARLA", "CHLOE", "DIANA", "ELLA", "EMMA", "GRACE",
    "HANA", "IRIS", "JANE", "JOY", "KEIKO", "LAILA", "LENA", "LUCY", "MAYA", "MEI", "NORA",
    "OLGA", "PRIYA", "ROSA", "RUTH", "SARA", "TARA", "VERA", "ZOE",
)  # fmt: skip
GIVEN_NAMES_M: tuple[str, ...] = (
    "ADAM", "AHMED", "ALAN", "ARJUN", "BEN", "CARL", "DAVID", "ELI", "ERIK", "FELIX",
    "HUGO", "IVAN", "JACK", "JAMES", "JOSE", "KENJI", "LEO", "LUIS", "MARK", "MAX", "NOAH",
    "OMAR", "PAUL", "RAJ", "SAM", "TOM", "VIKTOR", "WEI", "YUSUF",
)  # fmt: skip
_STAFF_FAMILY: tuple[str, ...] = (
    "ARCHER", "BRANDT", "CALLOW", "DENHOLM", "ELLIS", "FARROW", "GODDARD", "HOLT",
    "IRVING", "JARVIS", "KERR", "LOWE", "MAXWELL", "NORRIS", "OAKES", "PEEL",
)  # fmt: skip


def _digest(seed: int, kind: str, index: int) -> bytes:
    return hashlib.sha256(f"hidim.phantom/{seed}/{kind}/{index}".encode()).digest()


def derive_int(seed: int, kind: str, index: int, modulo: int) -> int:
    """A deterministic integer in ``[0, modulo)`` for ``(seed, kind, index)``."""
    return int.from_bytes(_digest(seed, kind, index)[:8], "big") % modulo


def derive_uid(seed: int, kind: str, index: int) -> str:
    """A deterministic DICOM UID in the ``2.25.<decimal>`` form (UUID-derived, <= 64 chars).

    Args:
        seed: The phantom's seed.
        kind: What the UID identifies (``study``, ``series-A4C``, ``sop-PLAX``...).
        index: Patient (or object) index.
    """
    value = int.from_bytes(_digest(seed, "uid/" + kind, index)[:16], "big")
    return f"2.25.{value}"


def patient_id(seed: int, index: int) -> str:
    """An 8-digit medical record number, unique within a cohort of up to 10 million.

    Uniqueness comes from an affine bijection of the index modulo 10**8 (the multiplier is
    coprime with 10), offset by a seed-derived constant.
    """
    offset = derive_int(seed, "mrn-offset", 0, 10**8)
    return f"{(index * 7_368_787 + offset) % 10**8:08d}"


def accession_number(seed: int, index: int) -> str:
    """A hospital accession number (``A`` + 9 digits)."""
    return f"A{derive_int(seed, 'accession', index, 10**9):09d}"


def person_name(seed: int, kind: str, index: int, sex: str) -> tuple[str, str]:
    """``(FAMILY, GIVEN)`` for a patient (``kind='patient'``) or a staff member.

    Args:
        seed: The phantom's seed.
        kind: ``patient``, ``operator``, ``referring`` or ``performing``.
        index: Patient index.
        sex: ``M`` or ``F`` (chooses the given-name pool).
    """
    family_pool = FAMILY_NAMES if kind == "patient" else _STAFF_FAMILY
    family = family_pool[derive_int(seed, f"{kind}-family", index, len(family_pool))]
    given_pool = GIVEN_NAMES_F if sex == "F" else GIVEN_NAMES_M
    given = given_pool[derive_int(seed, f"{kind}-given", index, len(given_pool))]
    return family, given
