"""Which SOP classes hidim reads as images, and why the others are skipped.

An instance is an image for hidim when it carries pixel data (PixelData, FloatPixelData or
DoubleFloatPixelData) with Rows and Columns, and its SOP class is not one of the
pixel-bearing non-image classes below (segmentations, dose grids, ...). Everything without
pixel data (structured reports, waveforms, presentation states, RT plans/structures, key
object selections, encapsulated documents, raw data) is skipped with its SOP class named.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from hidim.ingest.dsutil import get_str, uid_name

__all__ = ["MEDIA_STORAGE_DIRECTORY", "PIXEL_TAGS", "NON_IMAGE_WITH_PIXELS", "skip_reason"]

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # PixelData, FloatPixelData, DoubleFloat...

# Pixel-bearing SOP classes that are not images to learn from, with the advice we give.
NON_IMAGE_WITH_PIXELS: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.66.4": "segmentation, not an image (import it as an annotation)",
    "1.2.840.10008.5.1.4.1.1.66.7": "label map segmentation, not an image (import it as an annotation)",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT dose grid, not an image",
    "1.2.840.10008.5.1.4.1.1.30": "parametric map, not an acquired image",
}

# Families of non-image classes, for a more useful reason than "no pixel data".
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("1.2.840.10008.5.1.4.1.1.88.", "structured report"),
    ("1.2.840.10008.5.1.4.1.1.9.", "waveform"),
    ("1.2.840.10008.5.1.4.1.1.11.", "presentation state"),
    ("1.2.840.10008.5.1.4.1.1.481.", "radiotherapy object"),
    ("1.2.840.10008.5.1.4.1.1.104.", "encapsulated document"),
    ("1.2.840.10008.5.1.4.1.1.66", "raw data / registration / fiducials"),
)


def skip_reason(ds: Dataset) -> str | None:
    """Why this dataset is not an image hidim reads, or ``None`` when it is one.

    Args:
        ds: a dataset read header-only (``defer_size``) so pixel elements are present.

    Returns:
        A reason such as ``"unsupported SOP class Basic Text SR
        (1.2.840.10008.5.1.4.1.1.88.11): not an image (structured report)"``.
    """
    sop = get_str(ds, "SOPClassUID") or ""
    label = f"{uid_name(sop)} ({sop})" if sop else "(no SOPClassUID)"
    if sop in NON_IMAGE_WITH_PIXELS:
        return f"unsupported SOP class {label}: {NON_IMAGE_WITH_PIXELS[sop]}"
    has_pixels = any(tag in ds for tag in PIXEL_TAGS)
    if not has_pixels and not sop:
        return "no SOPClassUID and no pixel data: not an image"
    if not has_pixels:
        family = next((name for prefix, name in _FAMILIES if sop.startswith(prefix)), None)
        if family is None and "Image" in uid_name(sop):
            return f"{label} instance without pixel data (a header-only or stripped file)"
        detail = f"not an image ({family})" if family else "not an image (no pixel data)"
        return f"unsupported SOP class {label}: {detail}"
    if ds.get("Rows") in (None, "", 0) or ds.get("Columns") in (None, "", 0):
        return f"SOP class {label}: pixel data without Rows/Columns, cannot be an image"
    return None
