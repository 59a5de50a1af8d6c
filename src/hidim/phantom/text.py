"""Burned-in text: the header band that real scanners paint above the scan sector.

The text (patient name, study date, institution) is PHI *in pixels*, the hardest place for
de-identification to reach. It is rendered with the font that ships inside Pillow (Aileron
via ``ImageFont.load_default``, no system fonts), at a size Tesseract reads without
upscaling (12 px by default), in a band *outside* the sector so that masking it never has to
touch image content. Every painted string and its pixel box go into ``truth.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["BurnedText", "header_rows", "render_header", "fit_text"]

_LINES = 3
_MARGIN = 2


@dataclass(frozen=True)
class BurnedText:
    """One burned-in string: which header field, the exact text, and its ink box.

    ``box`` is ``(row0, col0, row1, col1)`` in frame pixels, end-exclusive.
    """

    field: str
    text: str
    box: tuple[int, int, int, int]

    def to_json(self) -> dict[str, object]:
        """JSON form used in ``truth.json``."""
        return {"field": self.field, "text": self.text, "box": list(self.box)}


def _line_pitch(text_px: int) -> int:
    return text_px + 2


def header_rows(text_px: int) -> int:
    """Height of the header band (pixels) for ``text_px`` text: three lines plus margins."""
    return 2 * _MARGIN + _LINES * _line_pitch(text_px)


def _font(text_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=text_px)
    except (ImportError, OSError):  # Pillow built without FreeType: fixed bitmap font
        return ImageFont.load_default_imagefont()


def fit_text(text: str, width_px: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    """``text`` if it fits ``width_px``, else the shortened form a scanner would display.

    ``FAMILY, GIVEN`` falls back to ``FAMILY, G``; anything else is cut at the right edge.
    """
    if font.getlength(text) <= width_px:
        return text
    if ", " in text:
        family, given = text.split(", ", 1)
        short = f"{family}, {given[:1]}"
        if font.getlength(short) <= width_px:
            return short
        text = short
    while text and font.getlength(text) > width_px:
        text = text[:-1]
    return text.rstrip(" ,")


def render_header(
    lines: Sequence[tuple[str, str]], *, cols: int, text_px: int, level: int = 235
) -> tuple[np.ndarray, list[BurnedText]]:
    """Render up to three ``(field, text)`` lines into a header band.

    Args:
        lines: ``(field name, text)`` pairs, top to bottom (e.g. ``("patient_name", "DOE, JANE")``).
        cols: Frame width (pixels).
        text_px: Font size (pixels).
        level: Grey level of the ink (0..255).

    Returns:
        ``(band, burned)``: uint8 ``[header_rows(text_px), cols]`` and the painted strings with
        their ink boxes (band coordinates = frame coordinates; the band is the frame's top).
    """
    rows = header_rows(text_px)
    font = _font(text_px)
    band = np.zeros((rows, cols), dtype=np.uint8)
    burned: list[BurnedText] = []
    for k, (field, raw) in enumerate(lines[:_LINES]):
        text = fit_text(raw, cols - 2 * _MARGIN, font)
        if not text:
            continue
        top = _MARGIN + k * _line_pitch(text_px)
        img = Image.new("L", (cols, _line_pitch(text_px)), 0)
        ImageDraw.Draw(img).text((_MARGIN, 0), text, fill=level, font=font)
        ink = np.asarray(img, dtype=np.uint8)
        nz_r, nz_c = np.nonzero(ink)
        if nz_r.size == 0:
            continue
        band[top : top + ink.shape[0]] = np.maximum(band[top : top + ink.shape[0]], ink)
        box = (
            top + int(nz_r.min()),
            int(nz_c.min()),
            top + int(nz_r.max()) + 1,
            int(nz_c.max()) + 1,
        )
        burned.append(BurnedText(field=field, text=text, box=box))
    return band, burned
