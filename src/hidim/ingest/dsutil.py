"""Tolerant attribute access on pydicom datasets.

Real-world headers hold empty strings, malformed ``DS``/``IS`` values and attributes that
live either at the top level or inside the Enhanced multi-frame functional groups. These
helpers return ``None`` instead of raising, so that one odd attribute never stops a scan.
"""

from __future__ import annotations

import math
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

__all__ = [
    "get_str",
    "get_float",
    "get_floats",
    "get_int",
    "functional_group_item",
    "find_in_groups",
    "transfer_syntax",
    "ensure_transfer_syntax",
    "uid_name",
]


def _raw(ds: Dataset, keyword: str) -> Any:
    try:
        return ds.get(keyword)
    except Exception:  # malformed value that pydicom cannot convert
        return None


def get_str(ds: Dataset | None, keyword: str) -> str | None:
    """Stripped string value of ``keyword``; ``None`` when absent or empty.

    Multi-valued attributes are joined with ``\\`` as in the DICOM encoding.
    """
    if ds is None:
        return None
    value = _raw(ds, keyword)
    if value is None:
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.strip().strip("\x00").strip()
    return text or None


def _to_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def get_floats(ds: Dataset | None, keyword: str) -> tuple[float, ...] | None:
    """All numeric values of ``keyword`` as floats; ``None`` if absent or not numeric."""
    if ds is None:
        return None
    value = _raw(ds, keyword)
    if value is None or value == "":
        return None
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        items = [value]
    else:
        items = list(value)
    out = [_to_float(v) for v in items]
    if not out or any(v is None for v in out):
        return None
    return tuple(v for v in out if v is not None)


def get_float(ds: Dataset | None, keyword: str) -> float | None:
    """First numeric value of ``keyword`` as a float, or ``None``."""
    values = get_floats(ds, keyword)
    return values[0] if values else None


def get_int(ds: Dataset | None, keyword: str) -> int | None:
    """First value of ``keyword`` as an int (``"12"``, ``12.0`` accepted), or ``None``."""
    value = get_float(ds, keyword)
    if value is None or value != int(value):
        return None
    return int(value)


def functional_group_item(ds: Dataset, sequence: str, frame: int = 0) -> Dataset | None:
    """First item of a functional-group macro (per-frame first, then shared).

    Args:
        ds: an Enhanced multi-frame dataset (any dataset is accepted).
        sequence: macro keyword, e.g. ``"PixelValueTransformationSequence"``.
        frame: zero-based frame index for the per-frame lookup.

    Returns:
        The macro's first item, or ``None`` when the dataset has no such macro.
    """
    try:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame is not None and 0 <= frame < len(per_frame):
            seq = per_frame[frame].get(sequence)
            if seq:
                return seq[0]
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared:
            seq = shared[0].get(sequence)
            if seq:
                return seq[0]
    except Exception:
        return None
    return None


def find_in_groups(ds: Dataset, keyword: str, sequences: tuple[str, ...]) -> float | None:
    """Numeric ``keyword`` at the top level, else inside the given functional-group macros."""
    value = get_float(ds, keyword)
    if value is not None:
        return value
    for sequence in sequences:
        value = get_float(functional_group_item(ds, sequence), keyword)
        if value is not None:
            return value
    return None


def transfer_syntax(ds: Dataset) -> UID:
    """The dataset's transfer syntax, inferred from how it was read when file meta lacks it."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(str(ts))
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit:
        return ImplicitVRLittleEndian
    if little is False:
        return ExplicitVRBigEndian
    return ExplicitVRLittleEndian


def ensure_transfer_syntax(ds: Dataset) -> UID:
    """Set ``file_meta.TransferSyntaxUID`` (inferred when missing) so pixel decoders work."""
    ts = transfer_syntax(ds)
    if getattr(ds, "file_meta", None) is None:
        from pydicom.dataset import FileMetaDataset

        ds.file_meta = FileMetaDataset()
    if not ds.file_meta.get("TransferSyntaxUID"):
        ds.file_meta.TransferSyntaxUID = ts
    return ts


def uid_name(uid: str | None) -> str:
    """Human name of a UID without the trailing ``" Storage"`` (the UID itself if unknown)."""
    if not uid:
        return "unknown"
    name = UID(str(uid)).name
    if name == str(uid):
        return str(uid)
    return name.removesuffix(" Storage")
