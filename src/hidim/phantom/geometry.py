"""Frame layout and the geometric primitives behind every named region.

A frame is a header band (burned-in text) above a fan-shaped scan sector whose apex sits at
the top centre. Positions are pixel centres ``(row, col)``; the sector is described in
pixels so that ``truth.json`` can be used without hidim. Region primitives (sector, ellipse,
ring, box) are plain dicts of floats; :func:`primitive_mask` rasterises any of them at any
output shape (scaling from the native frame), which is what occlusion tests need after a
store resized the clips.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hidim.errors import PhantomError

__all__ = ["Layout", "make_layout", "primitive_mask", "ellipse_primitive", "SECTOR_DEPTH_CM"]

SECTOR_DEPTH_CM = 16.0
HALF_ANGLE_DEG = 37.0


@dataclass(frozen=True)
class Layout:
    """Native frame geometry.

    Attributes:
        rows, cols: Frame size (pixels).
        header_rows: Height of the text band at the top.
        apex_row, apex_col: Sector apex (pixel-centre coordinates; may be fractional).
        radius: Sector radius (pixels).
        r_min: Near-field radius below which the sector is blank (pixels).
        half_angle_deg: Half opening angle of the fan.
    """

    rows: int
    cols: int
    header_rows: int
    apex_row: float
    apex_col: float
    radius: float
    r_min: float
    half_angle_deg: float

    @property
    def cm_per_px(self) -> float:
        """Physical pixel size (isotropic), centimetres."""
        return SECTOR_DEPTH_CM / self.radius

    def sector_primitive(self) -> dict[str, Any]:
        """The sector as a region primitive (pixels)."""
        return {
            "kind": "sector",
            "apex_row": self.apex_row,
            "apex_col": self.apex_col,
            "radius": self.radius,
            "r_min": self.r_min,
            "half_angle_deg": self.half_angle_deg,
        }

    def region_box(self) -> tuple[int, int, int, int]:
        """Bounding box of the sector ``(min_x0, min_y0, max_x1, max_y1)`` (inclusive pixels).

        This is what ``SequenceOfUltrasoundRegions`` declares.
        """
        half = self.radius * math.sin(math.radians(self.half_angle_deg))
        x0 = max(0, int(math.floor(self.apex_col - half)))
        x1 = min(self.cols - 1, int(math.ceil(self.apex_col + half)))
        y0 = max(0, int(math.floor(self.apex_row)))
        y1 = min(self.rows - 1, int(math.ceil(self.apex_row + self.radius)))
        return x0, y0, x1, y1

    def to_norm(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates → normalised sector coordinates ``(x, y)`` (units of radius)."""
        return (cols - self.apex_col) / self.radius, (rows - self.apex_row) / self.radius

    def to_px(self, x: float, y: float) -> tuple[float, float]:
        """Normalised ``(x, y)`` → pixel ``(row, col)``."""
        return self.apex_row + y * self.radius, self.apex_col + x * self.radius


def make_layout(size: int, header_rows: int) -> Layout:
    """The layout for a sector ``size`` pixels deep below a ``header_rows`` text band.

    Frames are ``header_rows + size`` by ``round(1.5 * size)`` (even) pixels.
    """
    if size < 16:
        raise PhantomError(f"expected a sector size of at least 16 px, got {size}")
    cols = 2 * int(round(0.75 * size))
    return Layout(
        rows=header_rows + size,
        cols=cols,
        header_rows=header_rows,
        apex_row=float(header_rows + 1),
        apex_col=(cols - 1) / 2.0,
        radius=float(size - 3),
        r_min=0.04 * (size - 3),
        half_angle_deg=HALF_ANGLE_DEG,
    )


def ellipse_primitive(
    centre_row: float,
    centre_col: float,
    semi_long: float,
    semi_short: float,
    angle_deg: float,
) -> dict[str, Any]:
    """An ellipse primitive; ``angle_deg`` is the long axis measured from +rows toward +cols."""
    return {
        "kind": "ellipse",
        "centre_row": centre_row,
        "centre_col": centre_col,
        "semi_long": semi_long,
        "semi_short": semi_short,
        "angle_deg": angle_deg,
    }


def _grid(shape: tuple[int, int], native: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Native-pixel coordinates of the centres of an output grid of ``shape``."""
    h, w = shape
    sr, sc = native[0] / h, native[1] / w
    rr = (np.arange(h) + 0.5) * sr - 0.5
    cc = (np.arange(w) + 0.5) * sc - 0.5
    return rr[:, None], cc[None, :]


def _ellipse_q(p: Mapping[str, Any], rr: np.ndarray, cc: np.ndarray) -> np.ndarray:
    phi = math.radians(float(p["angle_deg"]))
    dr, dc = rr - float(p["centre_row"]), cc - float(p["centre_col"])
    u = dr * math.cos(phi) + dc * math.sin(phi)
    v = -dr * math.sin(phi) + dc * math.cos(phi)
    return (u / float(p["semi_long"])) ** 2 + (v / float(p["semi_short"])) ** 2


def primitive_mask(
    primitive: Mapping[str, Any], shape: tuple[int, int], native: tuple[int, int]
) -> np.ndarray:
    """Rasterise a region primitive at ``shape`` (rows, cols) from a ``native`` frame size.

    Kinds: ``sector``; ``ellipse``; ``ring`` (``outer`` minus ``inner`` ellipses); ``box``
    (``row0, col0, row1, col1``, end-exclusive, native pixels); ``boxes`` (union of
    ``boxes``); ``complement`` (not ``of``); ``union`` (any of ``parts``).

    Returns:
        bool ``[rows, cols]``.
    """
    rr, cc = _grid(shape, native)
    kind = primitive.get("kind")
    if kind == "sector":
        dr, dc = rr - float(primitive["apex_row"]), cc - float(primitive["apex_col"])
        r = np.hypot(dr, dc)
        ang = np.degrees(np.arctan2(dc, dr))
        return (
            (r <= float(primitive["radius"]))
            & (r >= float(primitive["r_min"]))
            & (np.abs(ang) <= float(primitive["half_angle_deg"]))
            & (dr > 0)
        )
    if kind == "ellipse":
        return _ellipse_q(primitive, rr, cc) <= 1.0
    if kind == "ring":
        return primitive_mask(primitive["outer"], shape, native) & ~primitive_mask(
            primitive["inner"], shape, native
        )
    if kind == "box":
        r0, c0, r1, c1 = (float(v) for v in primitive["box"])
        return (rr >= r0 - 0.5) & (rr < r1 - 0.5) & (cc >= c0 - 0.5) & (cc < c1 - 0.5)
    if kind == "boxes":
        out = np.zeros(shape, dtype=bool)
        for box in primitive["boxes"]:
            out |= primitive_mask({"kind": "box", "box": box}, shape, native)
        return out
    if kind == "complement":
        return ~primitive_mask(primitive["of"], shape, native)
    if kind == "union":
        out = np.zeros(shape, dtype=bool)
        for part in primitive["parts"]:
            out |= primitive_mask(part, shape, native)
        return out
    raise PhantomError(
        f"unknown region primitive kind {kind!r}; expected sector, ellipse, ring, box, boxes, "
        "complement or union"
    )
