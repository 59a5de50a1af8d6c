"""Structural verification of a written DICOM file (run on every output before release).

:func:`check_encoded` walks the bytes — the zero preamble and ``DICM`` prefix, the meta group
length and transfer syntax, every element header, every nested item and delimiter — and fails
unless they parse exactly to the end of the buffer. It builds no data set objects, so it costs
a fraction of a re-read with pydicom, and it is stricter: pydicom accepts (with a warning)
lengths that run past the end, which this check refuses.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

__all__ = ["EncodingError", "check_encoded"]

_EXPLICIT_SHORT = struct.Struct("<HH2sH")
_EXPLICIT_LONG = struct.Struct("<HH2sHL")
_TAG_LEN = struct.Struct("<HHL")
_LONG_VR_BYTES = frozenset(vr.encode("ascii") for vr in EXPLICIT_VR_LENGTH_32)
_UNDEFINED = 0xFFFFFFFF
_PREAMBLE = b"\x00" * 128 + b"DICM"


class EncodingError(ValueError):
    """The data set cannot be written, or written bytes do not parse back."""


def _check_dataset(data: bytes, pos: int, end: int, implicit: bool, depth: int) -> int:
    """Walk elements from ``pos``; return where the data set ended (``end`` or after an
    item delimiter)."""
    if depth > 64:
        raise EncodingError("sequences nested deeper than 64 levels")
    n = len(data)
    while pos < end:
        if pos + 8 > n:
            raise EncodingError(f"element header runs past the end at byte {pos}")
        group, element, length = _TAG_LEN.unpack_from(data, pos)
        if group == 0xFFFE:
            if element == 0xE00D and depth > 0:
                return pos + 8
            raise EncodingError(f"unexpected delimiter ({group:04X},{element:04X}) at {pos}")
        if implicit:
            vr = b""
            pos += 8
        else:
            vr = data[pos + 4 : pos + 6]
            if not (b"AA" <= vr <= b"ZZ"):
                raise EncodingError(f"invalid VR at byte {pos}")
            if vr in _LONG_VR_BYTES:
                if pos + 12 > n:
                    raise EncodingError(f"element header runs past the end at byte {pos}")
                length = struct.unpack_from("<L", data, pos + 8)[0]
                pos += 12
            else:
                length = struct.unpack_from("<H", data, pos + 6)[0]
                pos += 8
        if length == _UNDEFINED:
            if vr == b"SQ" or implicit:
                pos = _check_items(data, pos, None, implicit, depth)
            else:  # encapsulated pixel data, undefined-length UN
                pos = _check_fragments(data, pos)
            continue
        if pos + length > end:
            raise EncodingError(f"element ({group:04X},{element:04X}) runs past its parent")
        if vr == b"SQ" or (implicit and (group << 16 | element) in _sequence_tags()):
            _check_items(data, pos, pos + length, implicit, depth)
        pos += length
    if pos != end:
        raise EncodingError("data set does not end where its length says")
    return pos


@lru_cache(maxsize=1)
def _sequence_tags() -> frozenset[int]:
    """Public tags whose VR is SQ (implicit VR files do not say which elements hold items)."""
    from pydicom.datadict import DicomDictionary

    return frozenset(int(t) for t, entry in DicomDictionary.items() if entry[0] == "SQ")


def _check_items(data: bytes, pos: int, end: int | None, implicit: bool, depth: int) -> int:
    """Items of a sequence from ``pos`` to ``end`` (``None``: until a sequence delimiter)."""
    limit = len(data) if end is None else end
    while pos < limit:
        if pos + 8 > limit:
            raise EncodingError(f"item header runs past the end at byte {pos}")
        group, element, length = _TAG_LEN.unpack_from(data, pos)
        tag = (group << 16) | element
        pos += 8
        if tag == 0xFFFEE0DD and end is None:
            return pos
        if tag != 0xFFFEE000:
            raise EncodingError(f"expected an item at byte {pos - 8}")
        if length == _UNDEFINED:
            pos = _check_dataset(data, pos, len(data), implicit, depth + 1)
        else:
            if pos + length > limit:
                raise EncodingError(f"item at byte {pos - 8} runs past its sequence")
            _check_dataset(data, pos, pos + length, implicit, depth + 1)
            pos += length
    if end is None:
        raise EncodingError("sequence without a delimiter")
    return pos


def _check_fragments(data: bytes, pos: int) -> int:
    """Items of raw bytes (encapsulated pixel data / undefined-length UN) to a delimiter;
    items that parse as data sets are accepted as such too (implicit-VR sequences)."""
    n = len(data)
    while pos + 8 <= n:
        group, element, length = _TAG_LEN.unpack_from(data, pos)
        tag = (group << 16) | element
        pos += 8
        if tag == 0xFFFEE0DD:
            return pos
        if tag != 0xFFFEE000:
            raise EncodingError(f"expected an item at byte {pos - 8}")
        if length == _UNDEFINED:
            pos = _check_dataset(data, pos, n, True, 1)
            continue
        if pos + length > n:
            raise EncodingError(f"item at byte {pos - 8} runs past the end")
        pos += length
    raise EncodingError("undefined-length element without a delimiter")


def check_encoded(data: bytes) -> None:
    """Verify that ``data`` is a complete Part 10 file as hidim writes it.

    Checks the zero preamble and ``DICM`` prefix, the meta group length, the transfer syntax,
    and that every element, item and delimiter of the data set parses exactly to the end.

    Raises:
        EncodingError: The bytes are not a well-formed file.
    """
    if not data.startswith(_PREAMBLE):
        raise EncodingError("output does not start with a zero preamble and DICM")
    pos = len(_PREAMBLE)
    group, element, vr, length = _EXPLICIT_SHORT.unpack_from(data, pos)
    if (group, element, vr, length) != (0x0002, 0x0000, b"UL", 4):
        raise EncodingError("output has no file meta group length")
    meta_end = pos + 12 + struct.unpack_from("<L", data, pos + 8)[0]
    if meta_end > len(data):
        raise EncodingError("file meta group runs past the end")
    _check_dataset(data, pos, meta_end, False, 0)
    ts = _transfer_syntax(data, pos, meta_end)
    if ts.is_deflated:
        import zlib

        body = zlib.decompress(data[meta_end:], -zlib.MAX_WBITS)
        _check_dataset(body, 0, len(body), False, 0)
        return
    if not ts.is_little_endian:
        return  # big endian (retired) output is parsed by pydicom in the caller
    _check_dataset(data, meta_end, len(data), ts.is_implicit_VR, 0)


def _transfer_syntax(data: bytes, pos: int, end: int) -> UID:
    while pos < end:
        group, element, vr, length = _EXPLICIT_SHORT.unpack_from(data, pos)
        if vr in _LONG_VR_BYTES:
            length = struct.unpack_from("<L", data, pos + 8)[0]
            head = 12
        else:
            head = 8
        if (group, element) == (0x0002, 0x0010):
            return UID(data[pos + head : pos + head + length].decode("ascii").rstrip("\x00 "))
        pos += head + length
    raise EncodingError("file meta has no transfer syntax")
