"""Open one file as DICOM, safely: preamble fallback, validation, integrity of pixel data.

``open_dataset`` reads a file with pydicom. Files without the 128-byte preamble and
``DICM`` marker (old ACR-NEMA style or stripped exports) are retried with ``force=True``
and accepted only if what comes back looks like DICOM (a SOP Class UID or image
dimensions, every top-level element parseable); anything else is reported as not DICOM.

``check_pixel_data`` decides, from the header alone, whether the pixel data can be
decoded: the transfer syntax has an available decoder, and the stored bytes are all there.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import DeflatedExplicitVRLittleEndian

from hidim.ingest.dsutil import ensure_transfer_syntax, get_int, uid_name

__all__ = ["FileProblem", "open_dataset", "check_pixel_data", "redact", "HEADER_DEFER_SIZE"]

HEADER_DEFER_SIZE = 2048  # bytes: values larger than this are not loaded by the header pass


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_IN_FILE = re.compile(r" (?:found )?in file .*$")


def redact(text: str) -> str:
    """A pydicom message without quoted element values or file paths (they may be PHI)."""
    return _IN_FILE.sub("", _QUOTED.sub("'…'", text))[:200]


class FileProblem(Exception):
    """A file that cannot be ingested; ``status`` is ``"skipped"`` or ``"failed"``."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _looks_like_dicom(ds: Dataset) -> bool:
    try:
        tags = list(ds.keys())
        if not tags:
            return False
        for tag in tags:  # force every element through the parser
            ds[tag]
    except Exception:
        return False
    has_identity = "SOPClassUID" in ds or ("Rows" in ds and "Columns" in ds)
    # DICOM stores elements in ascending tag order; bytes parsed by chance rarely are.
    ascending = all(a < b for a, b in zip(tags, tags[1:], strict=False))
    return has_identity and ascending and tags[0].group <= 0x0028


def open_dataset(path: Path, *, header_only: bool) -> tuple[Dataset, list[str]]:
    """Read ``path`` as DICOM.

    Args:
        path: the file.
        header_only: when true, large values (pixel data) are deferred, not read.

    Returns:
        ``(dataset, notes)``; notes record recoveries (e.g. "read without DICOM preamble")
        and pydicom warnings, for the ledger.

    Raises:
        FileProblem: empty, not DICOM, or unreadable.
    """
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise FileProblem("failed", f"cannot read file: {exc.strerror or exc}") from exc
    if size == 0:
        raise FileProblem("failed", "empty file (0 bytes): an incomplete copy or transfer")
    notes: list[str] = []
    defer = HEADER_DEFER_SIZE if header_only else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = dcmread(path, defer_size=defer)
            meta = getattr(ds, "file_meta", None)
            if not (meta is not None and meta.get("TransferSyntaxUID")) and not _looks_like_dicom(
                ds
            ):
                raise FileProblem(
                    "failed",
                    "corrupt: 'DICM' marker present but no file meta and no recognisable "
                    "DICOM elements",
                )
        except FileProblem:
            raise
        except InvalidDicomError:
            try:
                ds = dcmread(path, force=True, defer_size=defer)
            except Exception as exc:
                raise FileProblem(
                    "skipped", "not DICOM: no 'DICM' marker at byte 128 and not parseable as DICOM"
                ) from exc
            if not _looks_like_dicom(ds):
                raise FileProblem(
                    "skipped",
                    "not DICOM: no 'DICM' marker at byte 128 and no recognisable DICOM elements",
                ) from None
            notes.append("read without DICOM preamble/file meta (transfer syntax inferred)")
        except (EOFError, OSError) as exc:
            raise FileProblem(
                "failed", f"truncated or unreadable header: {redact(str(exc))}"
            ) from exc
        except Exception as exc:
            detail = f"{type(exc).__name__}: {redact(str(exc))}"
            raise FileProblem("failed", f"unreadable DICOM header: {detail}") from exc
    for warning in caught:
        text = redact(str(warning.message).splitlines()[0])
        if "End of file reached before delimiter" in text:
            raise FileProblem("failed", f"truncated: {text}")
        notes.append(text)
    ensure_transfer_syntax(ds)
    return ds, notes


def check_pixel_data(ds: Dataset, path: Path) -> None:
    """Raise :class:`FileProblem` if the pixel data of a header-read dataset cannot decode.

    Checks that a decoder for the transfer syntax is installed, that native pixel data
    holds at least the expected number of bytes, and that the file is long enough for
    the declared element length.
    """
    ts = ensure_transfer_syntax(ds)
    ts_label = f"{uid_name(ts)} ({ts})"
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise FileProblem(
            "failed",
            f"transfer syntax {ts_label} has no pixel decoder in pydicom; transcode the file "
            "to an uncompressed or JPEG syntax (e.g. with gdcmconv or dcmconv)",
        ) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise FileProblem(
            "failed",
            f"transfer syntax {ts_label} cannot be decoded here: install {missing}",
        )
    tag = next((t for t in (0x7FE00010, 0x7FE00008, 0x7FE00009) if t in ds), None)
    if tag is None:
        raise FileProblem("failed", "no pixel data element")
    raw = ds.get_item(tag, keep_deferred=True)
    length = getattr(raw, "length", None)
    value = getattr(raw, "value", None)
    value_tell = getattr(raw, "value_tell", None)
    undefined = length is None or length == 0xFFFFFFFF
    if not undefined and length is not None:
        if isinstance(value, bytes | bytearray):
            available = len(value)  # loaded: pydicom read what the file had
        elif value_tell is not None and ts != DeflatedExplicitVRLittleEndian:
            available = max(os.path.getsize(path) - value_tell, 0)  # deferred
        else:
            available = length
        if available < length:
            raise FileProblem("failed", f"truncated: pixel data has {available} of {length} bytes")
    if ts.is_encapsulated:
        return
    if tag == 0x7FE00010 and length is not None and not undefined:
        try:
            expected = get_expected_length(ds, "bytes")
        except Exception:
            expected = None
        if expected is not None and length < expected:
            frames = get_int(ds, "NumberOfFrames") or 1
            raise FileProblem(
                "failed",
                f"truncated: pixel data has {length} of {expected} bytes expected for "
                f"{frames} frame(s) of {ds.get('Rows')}x{ds.get('Columns')} at "
                f"{ds.get('BitsAllocated')} bits; check Rows/Columns/NumberOfFrames",
            )
