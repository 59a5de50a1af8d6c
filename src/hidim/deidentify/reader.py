"""Read one input file defensively: reject what cannot be de-identified safely, say why.

Outcomes for bad inputs (never raised as a crash of the batch):

* zero-byte file → rejected (failed); not DICOM at all → skipped (reported, not copied);
* a data set without preamble/file meta but with a SOP class and instance → read anyway
  (``repaired``: the output gets a proper preamble and file meta);
* truncated (an element or the pixel data shorter than its length says, a missing sequence
  delimiter at end of file) → rejected: hidim never writes a corrupt output;
* bytes appended after complete pixel data (junk, text) → dropped (``repaired``);
* a DICOMDIR → skipped (a de-identified DICOMDIR would point at the old file names).

Messages never contain values from the file.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pydicom import config, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

__all__ = ["RejectedInput", "ReadResult", "quiet_pydicom", "read_input"]


class RejectedInput(Exception):
    """An input that is reported instead of processed. ``status`` is failed or skipped."""

    def __init__(self, reason: str, status: str = "failed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass
class ReadResult:
    """A data set ready for de-identification and how it was obtained."""

    ds: Dataset
    repaired: str


@contextmanager
def quiet_pydicom() -> Iterator[list[str]]:
    """Silence pydicom's warnings and log lines (they can quote PHI values).

    Yields the list of captured warning messages (for truncation checks; never printed).
    """
    logger = logging.getLogger("pydicom")
    old_level = logger.level
    old_read = config.settings.reading_validation_mode
    old_write = config.settings.writing_validation_mode
    captured: list[str] = []

    class _Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record.getMessage())

    handler = _Capture(level=logging.WARNING)
    old_propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    try:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            yield captured
            captured.extend(str(r.message) for r in records)
    finally:
        logger.removeHandler(handler)
        logger.propagate = old_propagate
        logger.setLevel(old_level)
        config.settings.reading_validation_mode = old_read
        config.settings.writing_validation_mode = old_write


def _truncated(ds: Dataset) -> bool:
    """Whether any raw element holds fewer bytes than its length says (recursively)."""
    return any(_truncated_element(elem) for elem in ds._dict.values())


def _drop_trailing_junk(ds: Dataset) -> bool:
    """Repair a file whose only short elements are bytes after a complete pixel data element
    (junk or text appended to the file, read by pydicom as elements). Those elements are
    dropped; returns False (nothing changed) when anything before them is short."""
    pixels = ds._dict.get(0x7FE00010)  # type: ignore[call-overload]
    if type(pixels) is not RawDataElement or not isinstance(pixels.value, bytes):
        return False
    end = pixels.value_tell + len(pixels.value)
    trailing = []
    for tag, elem in ds._dict.items():
        after = type(elem) is RawDataElement and elem.value_tell > end
        if after:
            trailing.append(tag)
        elif _truncated_element(elem):
            return False
    if not trailing:
        return False
    for tag in trailing:
        del ds._dict[tag]
    return not _truncated(ds)


def _truncated_element(elem: object) -> bool:
    value = getattr(elem, "value", None)
    length = getattr(elem, "length", None)
    if isinstance(value, bytes) and isinstance(length, int) and length != 0xFFFFFFFF:
        return len(value) < length
    if getattr(elem, "VR", None) == "SQ" and not isinstance(value, bytes) and value:
        return any(isinstance(item, Dataset) and _truncated(item) for item in value)
    return False


def _expected_pixel_bytes(ds: Dataset) -> int | None:
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    pi = str(ds.get("PhotometricInterpretation", ""))
    per_pixel = 2 if pi == "YBR_FULL_422" else spp
    total_bits = rows * cols * frames * per_pixel * bits
    return (total_bits + 7) // 8


def _looks_like_dicom(ds: Dataset) -> bool:
    """At least three elements with standard dictionary tags (group 0x0008 or higher): a
    data set, not text or another binary format parsed by force."""
    from pydicom.datadict import dictionary_has_tag

    try:
        known = sum(1 for tag in list(ds._dict)[:64] if dictionary_has_tag(tag))
    except Exception:  # noqa: BLE001 - garbage parsed by force
        return False
    return known >= 3


def read_input(data: bytes) -> ReadResult:
    """Parse ``data`` (a whole file) or raise :class:`RejectedInput` with a PHI-free reason."""
    if not data:
        raise RejectedInput("zero-byte file")
    repaired = ""
    with quiet_pydicom() as messages:
        try:
            ds = dcmread(io.BytesIO(data))
        except InvalidDicomError:
            try:
                ds = dcmread(io.BytesIO(data), force=True)
            except Exception as exc:  # noqa: BLE001
                raise RejectedInput(
                    f"not a DICOM file ({type(exc).__name__}): not copied", "skipped"
                ) from None
            if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
                if _looks_like_dicom(ds):  # a damaged DICOM data set: someone must look
                    raise RejectedInput(
                        "DICOM data set without preamble, file meta or SOP UIDs"
                    ) from None
                raise RejectedInput(
                    "not a DICOM file (no preamble, no file meta, no SOP UIDs): not copied",
                    "skipped",
                ) from None
            repaired = "no preamble/file meta: rebuilt"
        except Exception as exc:  # noqa: BLE001
            raise RejectedInput(f"unreadable DICOM ({type(exc).__name__})") from None
        try:
            _ = [ds[t] for t in (0x00080016, 0x00080018) if t in ds._dict]
            truncated = _truncated(ds)
            if truncated and _drop_trailing_junk(ds):
                truncated = False
                messages.clear()  # the warnings were about the bytes dropped
                repaired = repaired or "bytes after the pixel data that are not DICOM: dropped"
        except Exception as exc:  # noqa: BLE001
            raise RejectedInput(f"unreadable DICOM ({type(exc).__name__})") from None
    if truncated or any("End of file" in m or "truncat" in m.lower() for m in messages):
        raise RejectedInput("truncated file (an element is shorter than its length)")
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    if str(meta.get("MediaStorageSOPClassUID", "")) == MediaStorageDirectoryStorage:
        raise RejectedInput(
            "DICOMDIR (not copied: it would point at the old file names)", "skipped"
        )
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise RejectedInput("not a composite instance (no SOP Class/Instance UID)")
    if "TransferSyntaxUID" not in meta:
        implicit = getattr(ds, "is_implicit_VR", None)
        little = getattr(ds, "is_little_endian", None)
        if implicit is None:
            implicit, little = True, True
        meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
        repaired = repaired or "missing transfer syntax: inferred"
        ds.file_meta = meta
    if "PixelData" in ds._dict and not meta.TransferSyntaxUID.is_compressed:
        expected = _expected_pixel_bytes(ds)
        actual = len(ds._dict[BaseTag(0x7FE00010)].value or b"")
        if expected is not None and actual < expected:
            raise RejectedInput(f"truncated pixel data ({actual} of {expected} bytes): not written")
    return ReadResult(ds=ds, repaired=repaired)
