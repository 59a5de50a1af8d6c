"""Burned-in PHI in pixel data: decide per file, find it, blank it.

Decision (:func:`needs_pixel_check`): a file's pixels are checked when ``BurnedInAnnotation``
is ``YES``, or its modality/SOP class is one where text is routinely burned in (ultrasound,
secondary capture, angiography, radiography, endoscopy, photographs, documents...) — whatever
``BurnedInAnnotation`` says, because that attribute is often absent or wrong — or when the
image type says ``SECONDARY``. Original CT/MR/PET/NM acquisitions are not OCR'd by default
(``mode="all"`` checks everything); the audit records why each file was or was not checked.

Cleaning (:func:`clean_pixels`):

* ultrasound: the scan sector (:mod:`hidim.deidentify.sector`) is kept bit-identical and
  everything outside it is blanked;
* without a sector (screenshots, single-frame ultrasound without regions, X-ray...): text
  found by OCR (:mod:`hidim.deidentify.ocr`) on the static content of the clip and on sampled
  frames is blanked; words read in a sampled frame but not in the static content (text that
  moves per frame) are tracked through every frame and blanked wherever they are;
* a file that needs a text check that cannot be done (OCR unavailable or disabled, pixels
  that cannot be decoded) is reported for quarantine, never released unchecked.

Blanking uses the value that displays as black for the photometric interpretation (the
darkest palette entry for PALETTE COLOR, the maximum for MONOCHROME1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from hidim.deidentify.ocr import (
    TextBox,
    boxes_to_mask,
    detect_text,
    tesseract_available,
    track_boxes,
)
from hidim.deidentify.sector import find_sector

__all__ = [
    "PixelPolicy",
    "PixelOutcome",
    "RISKY_MODALITIES",
    "needs_pixel_check",
    "decode_frames",
    "display_gray",
    "clean_pixels",
    "clear_overlay_bits",
]

#: Modalities whose images routinely carry burned-in text (always checked in "auto" mode).
RISKY_MODALITIES = frozenset(
    {"US", "IVUS", "SC", "XA", "RF", "XC", "ES", "OT", "DX", "CR", "MG", "PX", "IO", "GM",
     "SM", "OP", "DOC", "TG", "BDUS", "EPS", "OPV", "HD"}
)  # fmt: skip
_SECONDARY_CAPTURE_ROOT = "1.2.840.10008.5.1.4.1.1.7"
_ULTRASOUND_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.6.2"}
)


@dataclass(frozen=True, kw_only=True)
class PixelPolicy:
    """How pixels are checked.

    Attributes:
        mode: ``"auto"`` (by modality, SOP class, image type, BurnedInAnnotation), ``"all"``
            (every image), ``"none"`` (never — the user takes responsibility; recorded).
        ocr: Allow OCR; when a file needs it and this is off, the file is quarantined.
        ocr_inside_sector: Also OCR inside an ultrasound sector and blank text found there
            (off by default: the sector stays bit-identical).
        max_ocr_frames: Frames of a clip OCR'd besides its static composite.
        min_conf: Minimum Tesseract confidence of a word.
        pad_px: Margin added around each text box.
    """

    mode: Literal["auto", "all", "none"] = "auto"
    ocr: bool = True
    ocr_inside_sector: bool = False
    max_ocr_frames: int = 2
    min_conf: float = 40.0
    pad_px: int = 2


@dataclass
class PixelOutcome:
    """What happened to a file's pixels (no PHI: counts and categories only)."""

    decision: str
    reason: str
    changed: bool = False
    frames: np.ndarray | None = None
    photometric_out: str | None = None
    sector_source: str = ""
    masked_fraction: float = 0.0
    ocr_boxes: int = 0
    ocr_boxes_in_sector: int = 0
    quarantine_reason: str | None = None


def clear_overlay_bits(ds: Dataset) -> int:
    """Zero the bits of native pixel data that are not image: retired overlay planes embedded
    in the unused high bits (``OverlayBitPosition`` without ``OverlayData``), which removing
    the 60xx group would hide from viewers but leave in the file.

    For unsigned pixels every bit outside ``BitsStored`` is cleared; for signed pixels (whose
    unused bits may carry the sign) only the planes the overlay groups name.

    Call it before the header pass (which removes the 60xx groups).

    Returns:
        Number of pixel samples that changed (0 when there was nothing to clear).
    """
    raw = ds._dict.get(0x7FE00010)  # type: ignore[call-overload]
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if raw is None or ts is None or ts.is_compressed:
        return 0
    groups = {t >> 16 for t in ds._dict if 0x6000 <= t >> 16 <= 0x60FF and not (t >> 16) & 1}
    try:
        allocated, stored = int(ds.BitsAllocated), int(ds.BitsStored)
        high = int(ds.get("HighBit", stored - 1))
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    except (AttributeError, TypeError, ValueError):
        return 0
    if not groups or allocated not in (8, 16, 32) or stored >= allocated:
        return 0
    image_bits = ((1 << stored) - 1) << max(0, high - stored + 1)
    if signed:
        planes = 0
        for group in groups:
            position = ds.get((group << 16) | 0x0102)
            if position is not None and ((group << 16) | 0x3000) not in ds._dict:
                bit = int(position.value or 0)
                if 0 <= bit < allocated and not (image_bits >> bit) & 1:
                    planes |= 1 << bit
        keep = ((1 << allocated) - 1) & ~planes
    else:
        keep = image_bits
    value = raw.value
    if not isinstance(value, bytes) or not value:
        return 0
    order = "<" if ds.original_encoding[1] in (True, None) else ">"
    usable = len(value) - len(value) % (allocated // 8)
    samples = np.frombuffer(value[:usable], dtype=f"{order}u{allocated // 8}")
    dirty = (samples & ~np.array(keep, samples.dtype)) != 0
    changed = int(dirty.sum())
    if not changed:
        return 0
    cleaned = (samples & np.array(keep, samples.dtype)).tobytes() + value[usable:]
    if isinstance(raw, RawDataElement):
        ds._dict[0x7FE00010] = raw._replace(value=cleaned, length=len(cleaned))  # type: ignore[index]
    else:
        raw.value = cleaned
    return changed


def _has_pixels(ds: Dataset) -> bool:
    return any(t in ds._dict for t in (0x7FE00010, 0x7FE00008, 0x7FE00009))


def needs_pixel_check(ds: Dataset, policy: PixelPolicy) -> tuple[bool, str]:
    """Whether ``ds``'s pixels must be checked for burned-in text, and why."""
    if not _has_pixels(ds):
        return False, "no pixel data"
    if policy.mode == "none":
        return False, "pixel check disabled by the user"
    if policy.mode == "all":
        return True, "pixel check requested for every image"
    burned = str(ds.get("BurnedInAnnotation", "") or "").upper()
    if burned == "YES":
        return True, "BurnedInAnnotation is YES"
    modality = str(ds.get("Modality", "") or "").upper()
    if modality in RISKY_MODALITIES:
        return True, f"modality {modality} routinely carries burned-in text"
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class.startswith(_SECONDARY_CAPTURE_ROOT):
        return True, "secondary capture SOP class"
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "SECONDARY" in image_type:
        return True, "ImageType SECONDARY"
    return False, f"modality {modality or 'unknown'} original acquisition, no burned-in flag"


def decode_frames(ds: Dataset) -> np.ndarray:
    """Decode pixel data to ``[T, H, W, C]`` (YBR converted to RGB, palette indices kept)."""
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames == 1:
        arr = arr[None]
    if spp == 1:
        arr = arr[..., None]
    return np.ascontiguousarray(arr)


def display_gray(ds: Dataset, frames: np.ndarray) -> np.ndarray:
    """``[T, H, W]`` float32 luminance in 0-255 as a viewer would show it (for analysis)."""
    pi = str(ds.get("PhotometricInterpretation", "")).strip()
    x: np.ndarray
    if pi == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        x = apply_color_lut(frames[..., 0], ds).max(axis=-1).astype(np.float32)
    else:
        x = frames.max(axis=-1).astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(x)
    if pi == "MONOCHROME1":
        x = 255.0 - x
    return x


def _fill_value(ds: Dataset, frames: np.ndarray) -> np.ndarray:
    """The stored value(s) that display as black for this photometric interpretation."""
    pi = str(ds.get("PhotometricInterpretation", "")).strip()
    channels = frames.shape[-1]
    if pi == "MONOCHROME1":
        return np.full(channels, frames.max(), frames.dtype)
    if pi == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        desc = ds.RedPaletteColorLookupTableDescriptor
        n_entries = int(desc[0]) or 65536
        first = int(desc[1])
        idx = np.arange(first, first + n_entries, dtype=frames.dtype)
        colours = apply_color_lut(idx, ds).astype(np.float64).sum(axis=-1)
        return np.full(channels, idx[int(np.argmin(colours))], frames.dtype)
    if channels == 1:
        return np.full(channels, frames.min(), frames.dtype)
    return np.zeros(channels, frames.dtype)


def _is_ultrasound(ds: Dataset) -> bool:
    modality = str(ds.get("Modality", "") or "").upper()
    return modality in ("US", "IVUS") or str(ds.get("SOPClassUID", "")) in _ULTRASOUND_CLASSES


def _ocr_images(gray: np.ndarray, max_frames: int) -> list[tuple[int | None, np.ndarray]]:
    """The static composite of a clip (median over sampled frames, index ``None``) plus a
    few frames (with their index)."""
    t = gray.shape[0]
    if t == 1:
        return [(0, gray[0])]
    idx = np.unique(np.linspace(0, t - 1, min(t, 16)).round().astype(int))
    images: list[tuple[int | None, np.ndarray]] = [(None, np.median(gray[idx], axis=0))]
    picks = np.unique(np.linspace(0, t - 1, max(1, max_frames)).round().astype(int))
    images.extend((int(i), gray[i]) for i in picks)
    return images


def _moving_words(
    gray: np.ndarray, static: np.ndarray, index: int, boxes: list[TextBox]
) -> list[tuple[int, TextBox]]:
    """Words read in frame ``index`` that are not in the clip's static composite (text that
    moves or changes from frame to frame)."""
    seeds = []
    for b in boxes:
        if b.source != "ocr":
            continue
        here = gray[index, b.top : b.top + b.height, b.left : b.left + b.width]
        there = static[b.top : b.top + b.height, b.left : b.left + b.width]
        if here.size and float(np.abs(here - there).mean()) > 8.0:
            seeds.append((index, b))
    return seeds


def clean_pixels(ds: Dataset, policy: PixelPolicy) -> PixelOutcome:
    """Check ``ds`` for burned-in PHI and return the cleaned frames (``ds`` is not modified).

    Returns:
        A :class:`PixelOutcome`. ``changed`` is True when ``frames`` (``[T, H, W, C]``, RGB
        for YBR inputs) must replace the pixel data; ``quarantine_reason`` is set when the
        file cannot be released safely.
    """
    needed, reason = needs_pixel_check(ds, policy)
    if not needed:
        decision = "no_pixels" if reason == "no pixel data" else "not_checked"
        return PixelOutcome(decision=decision, reason=reason)
    try:
        frames = decode_frames(ds)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "cannot check"
        return PixelOutcome(
            decision="undecodable",
            reason=reason,
            quarantine_reason=f"pixel data cannot be decoded ({type(exc).__name__})",
        )
    gray = display_gray(ds, frames)
    shape = gray.shape[1:]
    keep = np.ones(shape, bool)
    sector_source = ""
    if _is_ultrasound(ds):
        sector = find_sector(ds, gray)
        sector_source = sector.source
        if sector.source != "none":
            keep = sector.mask
    has_sector = sector_source not in ("", "none")
    need_ocr = not has_sector or policy.ocr_inside_sector
    text_mask = np.zeros(shape, bool)
    n_boxes = n_in_sector = 0
    if need_ocr:
        if not (policy.ocr and tesseract_available()):
            if not has_sector:
                why = "disabled (--no-ocr)" if not policy.ocr else "unavailable (no tesseract)"
                return PixelOutcome(
                    decision="needs_ocr",
                    reason=reason,
                    sector_source=sector_source or "n/a",
                    quarantine_reason=f"burned-in text check needs OCR, which is {why}",
                )
        else:
            boxes: list[TextBox] = []
            seeds: list[tuple[int, TextBox]] = []
            images = _ocr_images(gray, policy.max_ocr_frames)
            for index, image in images:
                found = detect_text(image, min_conf=policy.min_conf)
                boxes.extend(found)
                if index is not None and gray.shape[0] > 1:
                    seeds.extend(_moving_words(gray, images[0][1], index, found))
            if seeds:
                boxes.extend(track_boxes(gray, seeds))  # text that moves per frame
            n_boxes = sum(1 for b in boxes if b.source == "ocr")
            text_mask = boxes_to_mask(boxes, shape, pad=policy.pad_px)
            if has_sector:
                n_in_sector = int(
                    sum(1 for b in boxes if b.source == "ocr" and keep[b.top, b.left])
                )
                if not policy.ocr_inside_sector:
                    text_mask &= ~keep
    blank = ~keep | text_mask
    decision = ("sector" if has_sector else "") + ("+ocr" if need_ocr and n_boxes else "")
    decision = decision.lstrip("+") or "checked_clean"
    outcome = PixelOutcome(
        decision=decision,
        reason=reason,
        sector_source=sector_source or "n/a",
        ocr_boxes=n_boxes,
        ocr_boxes_in_sector=n_in_sector,
        masked_fraction=float(blank.mean()),
    )
    if not blank.any():
        return outcome
    fill = _fill_value(ds, frames)
    out = frames.copy()
    out[:, blank, :] = fill
    if np.array_equal(out, frames):
        return outcome
    pi = str(ds.get("PhotometricInterpretation", "")).strip()
    outcome.changed = True
    outcome.frames = out
    outcome.photometric_out = "RGB" if pi.startswith("YBR") else pi
    return outcome
