"""Find burned-in text in an image: Tesseract (via ``pytesseract``) plus text-line geometry.

Tesseract alone misses light text on coloured bars and small fonts, so every image is read
twice — inverted luminance (light-on-dark overlays) and a local-contrast binarisation (text
on coloured or grey bars) — upscaled for small fonts. Each confident word box then pulls in
the whole text line it belongs to: strokes that stand out from their neighbourhood are joined
horizontally into line components, and any component touching a word is masked whole (so a
name is masked even when OCR read only part of the line).

Only boxes leave this module: the words that were read are never returned, logged or stored.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

__all__ = ["TextBox", "tesseract_available", "detect_text", "track_boxes", "boxes_to_mask"]


@dataclass(frozen=True)
class TextBox:
    """A rectangle of burned-in text, in pixel coordinates of the analysed image.

    Attributes:
        left: First column (px). top: First row (px). width, height: Size (px).
        source: ``"ocr"`` (a word Tesseract read confidently), ``"line"`` (the text line
            around such a word) or ``"track"`` (the same word found in another frame of a
            clip by :func:`track_boxes`).
    """

    left: int
    top: int
    width: int
    height: int
    source: str


@lru_cache(maxsize=1)
def tesseract_available() -> bool:
    """Whether the Tesseract binary and ``pytesseract`` are usable on this machine."""
    if shutil.which("tesseract") is None:
        return False
    try:
        import pytesseract

        pytesseract.get_tesseract_version()
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False
    return True


def _to_uint8(image: np.ndarray) -> np.ndarray:
    x = image.astype(np.float32)
    if x.ndim == 3:
        x = x.max(axis=2)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros(x.shape, np.uint8)
    return ((x - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _contrast_mask(gray: np.ndarray, threshold: float = 40.0) -> np.ndarray:
    """Pixels that differ strongly from their local background (text strokes)."""
    background = ndimage.median_filter(gray, size=15)
    return np.abs(gray.astype(np.int16) - background.astype(np.int16)) > threshold


def _ocr_words(image: np.ndarray, scale: int, min_conf: float) -> list[tuple[int, int, int, int]]:
    import pytesseract
    from PIL import Image

    pil = Image.fromarray(image)
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.LANCZOS)
    data = pytesseract.image_to_data(
        pil, output_type=pytesseract.Output.DICT, config="--psm 11 --oem 1"
    )
    boxes = []
    for i, word in enumerate(data["text"]):
        if not word or not any(ch.isalnum() for ch in word):
            continue
        try:
            conf = float(data["conf"][i])
        except (TypeError, ValueError):
            continue
        n_alnum = sum(ch.isalnum() for ch in word)
        # One-character "words" in speckle are common false positives: keep them only
        # when Tesseract is very sure.
        if conf < min_conf or (n_alnum < 2 and conf < 85.0):
            continue
        boxes.append(
            (
                data["left"][i] // scale,
                data["top"][i] // scale,
                max(1, -(-data["width"][i] // scale)),
                max(1, -(-data["height"][i] // scale)),
            )
        )
    return boxes


def detect_text(
    image: np.ndarray,
    *,
    min_conf: float = 40.0,
    scale: int | None = None,
) -> list[TextBox]:
    """Boxes of burned-in text in one image.

    Args:
        image: ``[H, W]`` or ``[H, W, C]`` display values (any dtype; min-max normalised).
        min_conf: Minimum Tesseract word confidence (0-100).
        scale: Upscaling before OCR (default 3 below 400 px width, else 2).

    Returns:
        Word boxes and the text-line boxes around them (never the words).
    """
    gray = _to_uint8(image)
    h, w = gray.shape
    scale = scale or (3 if w < 400 else 2)
    contrast = _contrast_mask(gray)
    variants = [255 - gray, np.where(contrast, 0, 255).astype(np.uint8)]
    words: list[tuple[int, int, int, int]] = []
    for variant in variants:
        words.extend(_ocr_words(variant, scale, min_conf))
    boxes = [TextBox(x, y, bw, bh, "ocr") for x, y, bw, bh in words]
    if not words:
        return boxes
    # Text lines: join strokes horizontally (about one character width); a line component
    # touching a word is masked whole when it is no taller than a text line around that word.
    joined = ndimage.binary_dilation(contrast, structure=np.ones((3, 9), bool))
    labels, _ = ndimage.label(joined)
    objects = ndimage.find_objects(labels)
    added: set[int] = set()
    for x, y, bw, bh in words:
        patch = labels[y : y + bh, x : x + bw]
        for lab in np.unique(patch[patch > 0]):
            if lab in added:
                continue
            sl = objects[lab - 1]
            top, bottom = sl[0].start, sl[0].stop
            left, right = sl[1].start, sl[1].stop
            if bottom - top > 2.5 * bh + 4 or right - left > 0.9 * w:
                continue  # image structure touching the word, not a text line
            added.add(int(lab))
            boxes.append(TextBox(left, top, right - left, bottom - top, "line"))
    return boxes


def track_boxes(
    gray: np.ndarray,
    seeds: list[tuple[int, TextBox]],
    *,
    min_score: float = 0.7,
    max_templates: int = 12,
) -> list[TextBox]:
    """Find words read in one frame of a clip in every other frame (text that moves).

    OCR runs on a few frames of a clip; a name drawn at a new place in every frame would be
    masked only where it was read. Each word box read in frame ``i`` is used as a template
    (normalised cross-correlation, :func:`skimage.feature.match_template`) in every frame,
    and each place it matches becomes a box too.

    Args:
        gray: ``[T, H, W]`` display luminance of the clip.
        seeds: ``(frame index, word box)`` pairs read by OCR.
        min_score: Correlation a match needs (0-1).
        max_templates: Largest number of words tracked (biggest first).

    Returns:
        Boxes (``source="track"``) where the words are in the other frames.
    """
    from skimage.feature import match_template, peak_local_max

    seeds = sorted(seeds, key=lambda s: -s[1].width * s[1].height)[:max_templates]
    t, h, w = gray.shape
    found: list[TextBox] = []
    for index, box in seeds:
        template = gray[index, box.top : box.top + box.height, box.left : box.left + box.width]
        if template.shape[0] < 4 or template.shape[1] < 4 or float(template.std()) < 1.0:
            continue
        bh, bw = template.shape
        for frame in range(t):
            if frame == index:
                continue
            score = match_template(gray[frame], template)
            peaks = peak_local_max(
                score, min_distance=max(1, min(bh, bw) // 2), threshold_abs=min_score,
                num_peaks=4,
            )  # fmt: skip
            found.extend(TextBox(int(x), int(y), bw, bh, "track") for y, x in peaks)
    return found


def boxes_to_mask(boxes: list[TextBox], shape: tuple[int, int], pad: int = 2) -> np.ndarray:
    """Boolean ``[H, W]`` mask of ``boxes`` grown by ``pad`` pixels on every side."""
    mask = np.zeros(shape, bool)
    h, w = shape
    for b in boxes:
        y0, y1 = max(0, b.top - pad), min(h, b.top + b.height + pad)
        x0, x1 = max(0, b.left - pad), min(w, b.left + b.width + pad)
        mask[y0:y1, x0:x1] = True
    return mask
