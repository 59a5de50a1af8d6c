"""Read and write element values without pydicom's decode → set → encode round trip.

The header pass changes values that are ASCII by definition or by construction (UIDs, dates,
times, dummies, empty values). For an element still raw (as read from the file) these helpers
read its bytes directly and store the new value as a raw, already encoded element — still
lazily decodable by pydicom like any element read from a file, and copied as is by
:mod:`hidim.deidentify.writer`. Decoded elements are updated through pydicom.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = [
    "DUMMY",
    "values_of",
    "set_values",
    "has_value",
    "ascii_values",
    "put_ascii",
    "empty",
    "dummy",
    "dummy_at",
]

#: The dummy value of each VR (PS3.15 action ``D``).
DUMMY: dict[str, Any] = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED^ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "TM": "000000",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "UL": 0,
    "US": 0,
    "SV": 0,
    "UV": 0,
}


def values_of(value: Any) -> list[Any]:
    """A decoded value as a list of values (one for a single value)."""
    if isinstance(value, (list, MultiValue)):
        return list(value)
    return [value]


def set_values(elem: DataElement, values: list[Any]) -> None:
    """Set a decoded element to ``values`` (single, multiple or empty)."""
    elem.value = values if len(values) > 1 else (values[0] if values else elem.empty_value)


def has_value(raw: Any) -> bool:
    """Whether a raw or decoded element holds a non-empty value."""
    if type(raw) is RawDataElement:
        return bool(raw.length)
    return not raw.is_empty


def ascii_values(ds: Dataset, tag: int) -> list[str]:
    """The values of an ASCII-only VR (UI, DA, TM, DT...) without decoding the element."""
    elem = ds._dict[tag]  # type: ignore[index]
    if type(elem) is RawDataElement:
        raw = elem.value or b""
        text = raw.decode("latin-1").rstrip("\x00 ")
        return [v.strip("\x00 ") for v in text.split("\\")] if text else []
    return [str(v) for v in values_of(elem.value) if v is not None]


def put_ascii(ds: Dataset, tag: int, vr: str, values: list[str]) -> None:
    """Store ASCII ``values`` as a new (raw, already encoded) element of ``vr``.

    Writing the encoded bytes directly skips pydicom's decode → set → encode round trip;
    the element stays lazily decodable by pydicom like any element read from a file.
    """
    old = ds._dict[tag]  # type: ignore[index]
    if not isinstance(old, RawDataElement):
        set_values(old, values)
        return
    data = "\\".join(values).encode("ascii")
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    ds._dict[tag] = RawDataElement(  # type: ignore[index]
        old.tag, vr, len(data), data, old.value_tell, old.is_implicit_VR, old.is_little_endian
    )


def empty(ds: Dataset, tag: int, vr: str) -> None:
    """Make the element at ``tag`` zero-length (an empty sequence for SQ)."""
    old = ds._dict[tag]  # type: ignore[index]
    if isinstance(old, RawDataElement):
        ds._dict[tag] = RawDataElement(  # type: ignore[index]
            old.tag, vr, 0, b"", old.value_tell, old.is_implicit_VR, old.is_little_endian
        )
    else:
        old.value = [] if old.VR == "SQ" else old.empty_value


def dummy(elem: DataElement) -> None:
    """Replace a decoded element's value by the dummy of its VR."""
    vr = elem.VR
    if vr in DUMMY:
        elem.value = DUMMY[vr]
    else:
        elem.value = elem.empty_value


def dummy_at(ds: Dataset, tag: int, vr: str) -> None:
    """Replace the element at ``tag`` by the dummy of ``vr`` (raw when it is text)."""
    value = DUMMY.get(vr)
    if isinstance(value, str) and type(ds._dict[tag]) is RawDataElement:  # type: ignore[index]
        put_ascii(ds, tag, vr, [value])
    else:
        dummy(ds[tag])
