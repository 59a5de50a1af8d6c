"""Heart geometry for the two views and its motion over the cardiac cycle.

Each view is a small set of ellipses in normalised sector coordinates (``x`` lateral, ``y``
depth, both in units of the sector radius, apex at the origin):

- **A4C-like**: LV (viewer's right) and RV (left) contracting toward the apex, with
  myocardial walls; left and right atria below them filling during ventricular systole.
- **PLAX-like**: a thin RV band at the top, the LV long axis across the middle (contracting
  about its centre), aortic root and left atrium on the right, a bright posterior
  pericardium below.

LV motion: volume ``V(t)`` relative to end-diastole follows :func:`~hidim.phantom.cycle.relative_volume`;
both semi-axes scale by ``s = V^(1/3)``, so the area-length volume ``8 A^2 / (3 pi L)`` scales
by ``s^3 = V`` and **EF = 1 - (A_ES / A_ED)^(3/2)** holds exactly. The myocardium keeps its
area (incompressible wall), so it thickens in systole. A failing LV is also dilated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hidim.phantom.cycle import relative_volume
from hidim.phantom.geometry import Layout, ellipse_primitive

__all__ = [
    "Chamber",
    "Band",
    "VIEW_CHAMBERS",
    "VIEW_BANDS",
    "MARKER_POSITION",
    "ChamberMotion",
    "chamber_motion",
    "lv_dilation",
    "echogenicity",
    "TISSUE_LEVEL",
    "WALL_LEVEL",
    "BLOOD_LEVEL",
]

TISSUE_LEVEL = 0.14
WALL_LEVEL = 0.9
BAND_LEVEL = 1.0
BLOOD_LEVEL = 0.0015
RV_EF_PERCENT = 45.0

Kind = Literal["lv", "rv", "atrium", "vessel"]


@dataclass(frozen=True)
class Chamber:
    """A blood pool: ellipse at end-diastole (normalised), how it moves, and its wall.

    ``angle_deg`` is the long axis measured from +depth toward +lateral; ``anchor`` is the
    fixed point of contraction (the apex), ``None`` for contraction about the centre.
    """

    name: str
    kind: Kind
    centre: tuple[float, float]
    semi_long: float
    semi_short: float
    angle_deg: float
    wall: float = 0.0
    anchor: tuple[float, float] | None = None


@dataclass(frozen=True)
class Band:
    """A static bright reflector (pericardium, valve plane): an ellipse of ``BAND_LEVEL``."""

    centre: tuple[float, float]
    semi_long: float
    semi_short: float
    angle_deg: float


def _apex_chamber(
    name: str,
    kind: Kind,
    anchor: tuple[float, float],
    a: float,
    b: float,
    angle: float,
    wall: float,
) -> Chamber:
    phi = math.radians(angle)
    centre = (anchor[0] + a * math.sin(phi), anchor[1] + a * math.cos(phi))
    return Chamber(name, kind, centre, a, b, angle, wall, anchor)


VIEW_CHAMBERS: dict[str, tuple[Chamber, ...]] = {
    "A4C": (
        _apex_chamber("lv", "lv", (0.03, 0.145), 0.255, 0.10, 8.0, 0.04),
        _apex_chamber("rv", "rv", (-0.075, 0.17), 0.21, 0.075, -18.0, 0.02),
        Chamber("la", "atrium", (0.14, 0.88), 0.09, 0.10, 0.0),
        Chamber("ra", "atrium", (-0.17, 0.85), 0.09, 0.095, 0.0),
    ),
    "PLAX": (
        Chamber("rv", "rv", (0.0, 0.22), 0.26, 0.045, 100.0, 0.02),
        Chamber("lv", "lv", (-0.04, 0.52), 0.26, 0.105, 100.0, 0.04),
        Chamber("ao", "vessel", (0.20, 0.36), 0.08, 0.04, 100.0, 0.015),
        Chamber("la", "atrium", (0.25, 0.69), 0.10, 0.085, 100.0),
    ),
}
VIEW_BANDS: dict[str, tuple[Band, ...]] = {
    "A4C": (Band((0.0, 0.80), 0.34, 0.012, 90.0),),
    "PLAX": (Band((-0.03, 0.77), 0.36, 0.018, 100.0),),
}
# Where the planted shortcut marker sits (normalised): inside the sector, on plain tissue.
MARKER_POSITION: dict[str, tuple[float, float]] = {"A4C": (-0.42, 0.66), "PLAX": (-0.42, 0.74)}


def lv_dilation(ef_percent: float) -> float:
    """End-diastolic LV size factor: 1 at EF >= 55 %, rising to 1.12 at EF <= 20 %."""
    return 1.0 + 0.12 * min(1.0, max(0.0, (55.0 - ef_percent) / 35.0))


@dataclass(frozen=True)
class ChamberMotion:
    """Per-frame ellipse of one chamber, normalised units; arrays are ``[T]``."""

    chamber: Chamber
    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray
    b: np.ndarray
    wall: np.ndarray  # wall thickness (0 when the chamber has no wall)

    def ellipse_px(self, layout: Layout, frame: int, outer: bool = False) -> dict[str, Any]:
        """Pixel ellipse primitive at ``frame`` (the wall's outer border when ``outer``)."""
        d = float(self.wall[frame]) if outer else 0.0
        row, col = layout.to_px(float(self.cx[frame]), float(self.cy[frame]))
        return ellipse_primitive(
            row,
            col,
            (float(self.a[frame]) + d) * layout.radius,
            (float(self.b[frame]) + d) * layout.radius,
            self.chamber.angle_deg,
        )


def _wall_thickness(a: np.ndarray, b: np.ndarray, wall_area: float) -> np.ndarray:
    """Thickness ``d`` with ``pi (a+d)(b+d) - pi a b = wall_area`` (incompressible wall)."""
    s = a + b
    return 0.5 * (-s + np.sqrt(s * s + 4.0 * wall_area / math.pi))


def chamber_motion(
    chamber: Chamber,
    position: np.ndarray,
    *,
    ef_percent: float,
    systolic_frac: float,
    shift: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
) -> ChamberMotion:
    """Ellipse of ``chamber`` at each cycle position.

    Args:
        chamber: The chamber template.
        position: Cycle positions ``[T]`` in ``[0, 1)``.
        ef_percent: LV ejection fraction.
        systolic_frac: Share of the cycle in systole.
        shift: Whole-heart translation (normalised), per series.
        scale: Whole-heart size factor, per series.
    """
    ejected = 1.0 - relative_volume(position, 100.0, systolic_frac)  # 0 at ED, 1 at ES
    size = scale
    if chamber.kind == "lv":
        size *= lv_dilation(ef_percent)
        s = np.cbrt(relative_volume(position, ef_percent, systolic_frac))
    elif chamber.kind == "rv":
        s = np.cbrt(relative_volume(position, RV_EF_PERCENT, systolic_frac))
    elif chamber.kind == "atrium":
        s = np.cbrt(0.7 + 0.3 * ejected)
    else:
        s = 1.0 + 0.04 * ejected
    s = np.asarray(s, dtype=float)
    a0, b0 = chamber.semi_long * size, chamber.semi_short * size
    cx0 = shift[0] + chamber.centre[0] * scale
    cy0 = shift[1] + chamber.centre[1] * scale
    if chamber.anchor is not None:
        ax, ay = shift[0] + chamber.anchor[0] * scale, shift[1] + chamber.anchor[1] * scale
        phi = math.radians(chamber.angle_deg)
        cx = ax + a0 * s * math.sin(phi)
        cy = ay + a0 * s * math.cos(phi)
    else:
        cx, cy = np.full_like(s, cx0), np.full_like(s, cy0)
    a, b = a0 * s, b0 * s
    if chamber.wall > 0:
        w = chamber.wall * size
        wall = _wall_thickness(a, b, math.pi * ((a0 + w) * (b0 + w) - a0 * b0))
    else:
        wall = np.zeros_like(s)
    return ChamberMotion(chamber, np.asarray(cx), np.asarray(cy), a, b, wall)


def _soft_ellipse(
    x: np.ndarray,
    y: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    angle_deg: float,
    radius_px: float,
) -> np.ndarray:
    """Anti-aliased membership ``[P, T]`` (0..1, ~1 px edge) of points ``[P]`` in ellipses ``[T]``.

    Uses ``q = (u/a)^2 + (v/b)^2`` and the first-order edge distance ``(1 - q) / 2`` in units
    of the semi-axis, which avoids a square root per point and frame.
    """
    phi = math.radians(angle_deg)
    c, s_ = np.float32(math.cos(phi)), np.float32(math.sin(phi))
    dx = x[:, None] - cx.astype(np.float32)[None, :]
    dy = y[:, None] - cy.astype(np.float32)[None, :]
    u = (dy * c + dx * s_) * (1.0 / a).astype(np.float32)[None, :]
    v = (dx * c - dy * s_) * (1.0 / b).astype(np.float32)[None, :]
    q = u * u + v * v
    half_edge = (0.5 * b * radius_px).astype(np.float32)[None, :]
    return np.clip(np.float32(0.5) + (np.float32(1.0) - q) * half_edge, 0.0, 1.0)


def echogenicity(
    motions: list[ChamberMotion],
    bands: tuple[Band, ...],
    x: np.ndarray,
    y: np.ndarray,
    tissue: np.ndarray,
    radius_px: float,
) -> np.ndarray:
    """Mean backscatter ``[P, T]`` (0..1) at sector points ``(x, y)`` ``[P]`` (float32).

    Order: tissue → myocardial walls → bright bands → blood pools. Each chamber is evaluated
    only on the points inside its largest extent, so the cost scales with the heart's area,
    not the frame's. Points are the leading axis so that gathering a chamber's points reads
    contiguous rows.
    """
    x = x.astype(np.float32)
    y = y.astype(np.float32)
    t = motions[0].a.shape[0]
    # Painted in the log domain: a pixel half inside a cavity gets the geometric mean of the
    # two levels, i.e. halfway on the displayed (log-compressed) grey scale, so a cavity's
    # apparent area after thresholding at mid-grey matches its geometric area.
    out = np.repeat(np.log(tissue.astype(np.float32))[:, None], t, axis=1)

    def paint(m: ChamberMotion, grow: np.ndarray, level: float) -> None:
        reach = float(np.max(np.maximum(m.a, m.b) + grow)) + 2.0 / radius_px
        near = np.nonzero(
            (np.abs(x - float(np.mean(m.cx))) <= reach + float(np.ptp(m.cx)))
            & (np.abs(y - float(np.mean(m.cy))) <= reach + float(np.ptp(m.cy)))
        )[0]
        if near.size == 0:
            return
        w = _soft_ellipse(
            x[near], y[near], m.cx, m.cy, m.a + grow, m.b + grow, m.chamber.angle_deg, radius_px
        )
        sub = out[near]
        sub += (np.float32(math.log(level)) - sub) * w
        out[near] = sub

    for m in motions:
        if m.chamber.wall > 0:
            paint(m, m.wall, WALL_LEVEL)
    for band in bands:
        phi = math.radians(band.angle_deg)
        c, s_ = math.cos(phi), math.sin(phi)
        dx, dy = x - band.centre[0], y - band.centre[1]
        q = ((dy * c + dx * s_) / band.semi_long) ** 2 + ((dx * c - dy * s_) / band.semi_short) ** 2
        w = np.clip(0.5 + (1.0 - q) * 0.5 * band.semi_short * radius_px, 0.0, 1.0)
        out += (np.float32(math.log(BAND_LEVEL)) - out) * w.astype(np.float32)[:, None]
    for m in motions:
        paint(m, np.zeros_like(m.a), BLOOD_LEVEL)
    return np.exp(out, out=out)
