"""From a planned series to pixels: speckle, attenuation, gain, noise, log compression.

Sampling is apart from applying: :func:`plan_series` draws every random acquisition choice
(frame rate, cycle phase of the first frame, heart position jitter) and computes the exact
geometry; :func:`render_series` turns a plan into uint8 frames ``[T, H, W]`` (or
``[T, H, W, 3]``), vectorised over all frames at once and evaluated only on the pixels
inside the sector.

Image model (per frame ``t`` and sector pixel ``p``):
``I = E * S * (att(depth) * gain)^2 + (noise * U)^2``, with ``E`` the mean backscatter from
:func:`~hidim.phantom.anatomy.echogenicity`, ``S`` the speckle intensity (exponential, i.e.
fully developed speckle, a static and a fresh draw mixed so it decorrelates slowly over
time), ``att`` depth attenuation left after time-gain compensation, ``U`` uniform electronic
noise; the displayed grey level is ``I`` log-compressed over a 36 dB dynamic range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hidim.phantom.anatomy import (
    MARKER_POSITION,
    TISSUE_LEVEL,
    VIEW_BANDS,
    VIEW_CHAMBERS,
    Band,
    ChamberMotion,
    chamber_motion,
    echogenicity,
)
from hidim.phantom.cohort import PatientRecord
from hidim.phantom.config import PhantomConfig, SiteConfig
from hidim.phantom.cycle import cycle_position, systolic_fraction
from hidim.phantom.geometry import Layout

__all__ = ["SeriesPlan", "plan_series", "render_series", "series_rng", "marker_box"]

DYNAMIC_RANGE_DB = 36.0
REFERENCE_DB = 6.0  # envelope 2.0 maps to white
SPECKLE_CORRELATION = 0.75
ATTENUATION = 0.9  # residual after TGC: envelope x exp(-ATTENUATION * depth / radius)
SYSTOLE_S = 0.32
TEXT_COLOUR = (1.0, 0.92, 0.55)


def series_rng(seed: int, patient_index: int, view: str) -> np.random.Generator:
    """The random stream of one series (independent of every other series and of N)."""
    view_code = 1 + ("A4C", "PLAX").index(view)
    return np.random.default_rng(np.random.SeedSequence([seed, 1, patient_index, view_code]))


@dataclass(frozen=True)
class SeriesPlan:
    """All choices and the exact geometry of one cine loop.

    Attributes:
        view: ``A4C`` or ``PLAX``.
        fps: Frame rate (Hz); frame ``i`` is at ``i / fps`` seconds.
        n_frames: Number of frames.
        heart_rate_bpm: Heart rate.
        phase_offset: Cycle position of frame 0 (0 = end-diastole).
        systolic_frac: Share of the cycle in systole.
        position: Cycle position of every frame ``[T]``.
        motions: Per-frame ellipses of every chamber (the LV is :attr:`lv`).
        bands: Static bright reflectors, after the per-series shift and scale.
        shift, scale: Whole-heart position jitter (normalised) and size factor.
        gain, noise_sd, tint: Acquisition settings (site-specific under site shift).
        marker: Whether the shortcut marker is burned into this series.
    """

    view: str
    fps: int
    n_frames: int
    heart_rate_bpm: float
    phase_offset: float
    systolic_frac: float
    position: np.ndarray
    motions: tuple[ChamberMotion, ...]
    bands: tuple[Band, ...]
    shift: tuple[float, float]
    scale: float
    gain: float
    noise_sd: float
    tint: tuple[float, float, float]
    marker: bool

    @property
    def lv(self) -> ChamberMotion:
        """The left ventricle's motion."""
        return next(m for m in self.motions if m.chamber.name == "lv")


def plan_series(
    patient: PatientRecord,
    view: str,
    config: PhantomConfig,
    site: SiteConfig,
    rng: np.random.Generator,
) -> SeriesPlan:
    """Draw the acquisition and compute the geometry of one series.

    Args:
        patient: The patient (EF, heart rate, site, shortcut flag).
        view: ``A4C`` or ``PLAX``.
        config: The phantom configuration.
        site: The patient's site.
        rng: The series' own stream (:func:`series_rng`).
    """
    shifted = config.effects.site_shift
    fps = site.fps if shifted else int(rng.choice(np.asarray(config.fps_choices)))
    hr = patient.hr_bpm
    n_frames = max(8, int(round(config.cycles * 60.0 / hr * fps)))
    phase_offset = float(rng.random())
    shift = (float(rng.uniform(-0.02, 0.02)), float(rng.uniform(-0.015, 0.015)))
    scale = float(rng.uniform(0.96, 1.04))
    fs = systolic_fraction(hr, SYSTOLE_S)
    position = cycle_position(np.arange(n_frames) / fps, hr, phase_offset)
    motions = tuple(
        chamber_motion(
            ch, position, ef_percent=patient.ef_true, systolic_frac=fs, shift=shift, scale=scale
        )
        for ch in VIEW_CHAMBERS[view]
    )
    bands = tuple(
        Band(
            (shift[0] + b.centre[0] * scale, shift[1] + b.centre[1] * scale),
            b.semi_long * scale,
            b.semi_short,
            b.angle_deg,
        )
        for b in VIEW_BANDS[view]
    )
    return SeriesPlan(
        view=view,
        fps=int(fps),
        n_frames=n_frames,
        heart_rate_bpm=hr,
        phase_offset=phase_offset,
        systolic_frac=fs,
        position=position,
        motions=motions,
        bands=bands,
        shift=shift,
        scale=scale,
        gain=site.gain if shifted else 1.0,
        noise_sd=site.noise_sd if shifted else 0.04,
        tint=site.tint if shifted else (1.0, 1.0, 1.0),
        marker=patient.shortcut,
    )


def marker_box(layout: Layout, view: str) -> tuple[int, int, int, int]:
    """Pixel box ``(row0, col0, row1, col1)`` (end-exclusive) of the shortcut marker."""
    k = max(2, int(round((layout.rows - layout.header_rows) / 20)))
    row, col = layout.to_px(*MARKER_POSITION[view])
    r0, c0 = int(round(row - k / 2)), int(round(col - k / 2))
    return r0, c0, r0 + k, c0 + k


def _sector_points(layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices and normalised coordinates of the pixels inside the sector."""
    rr, cc = np.mgrid[0 : layout.rows, 0 : layout.cols]
    x, y = layout.to_norm(rr.astype(float), cc.astype(float))
    r = np.hypot(x, y)
    inside = (
        (y > 0)
        & (r <= 1.0)
        & (r >= layout.r_min / layout.radius)
        & (np.abs(np.degrees(np.arctan2(x, y))) <= layout.half_angle_deg)
    )
    flat = np.flatnonzero(inside)
    return flat, x.ravel()[flat].astype(np.float32), y.ravel()[flat].astype(np.float32)


def render_series(
    plan: SeriesPlan,
    layout: Layout,
    header: np.ndarray | None,
    *,
    rgb: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render a planned series.

    Args:
        plan: From :func:`plan_series`.
        layout: Frame layout.
        header: uint8 ``[header_rows, cols]`` burned-in text band, or ``None``.
        rgb: Return ``[T, H, W, 3]`` instead of ``[T, H, W]``.
        rng: The series' stream, continued after planning.

    Returns:
        uint8 frames.
    """
    flat, x, y = _sector_points(layout)
    t, p = plan.n_frames, flat.shape[0]
    k = rng.uniform(2.0, 6.0, size=(3, 2))
    ph = rng.uniform(0.0, 2.0 * math.pi, size=3)
    texture = 1.0 + 0.25 * np.mean(
        [np.cos(k[i, 0] * x + k[i, 1] * y + ph[i]) for i in range(3)], axis=0
    )
    e = echogenicity(list(plan.motions), plan.bands, x, y, TISSUE_LEVEL * texture, layout.radius)
    # Speckle intensity: a static and a fresh exponential (fully developed speckle) mixed.
    u = rng.random((2, p, t), dtype=np.float32)
    static = -np.log1p(-rng.random((p, 1), dtype=np.float32))
    rho = np.float32(SPECKLE_CORRELATION)
    speckle = rho * static - (np.float32(1.0) - rho) * np.log1p(-u[0])
    gain = np.exp(-ATTENUATION * np.hypot(x, y)).astype(np.float32) * np.float32(plan.gain)
    intensity = e * speckle * (gain * gain)[:, None]
    intensity += np.square(np.float32(plan.noise_sd) * u[1])
    db = np.float32(10.0 / math.log(10.0)) * np.log(np.maximum(intensity, np.float32(1e-12)))
    grey = (db - np.float32(REFERENCE_DB - DYNAMIC_RANGE_DB)) * np.float32(255.0 / DYNAMIC_RANGE_DB)
    np.clip(grey, 0.0, 255.0, out=grey)
    flat_frames = np.zeros((t, layout.rows * layout.cols), dtype=np.uint8)
    flat_frames[:, flat] = np.rint(grey).astype(np.uint8).T
    frames = flat_frames.reshape(t, layout.rows, layout.cols)
    if plan.marker:
        r0, c0, r1, c1 = marker_box(layout, plan.view)
        frames[:, r0:r1, c0:c1] = 255
    if header is not None:
        frames[:, : header.shape[0], :] = header[None]
    if not rgb:
        return frames
    factor = np.empty((layout.rows, layout.cols, 3), dtype=np.float32)
    factor[:] = np.asarray(plan.tint, dtype=np.float32)
    factor[: layout.header_rows] = np.asarray(TEXT_COLOUR, dtype=np.float32)
    return np.rint(frames[..., None] * factor[None]).astype(np.uint8)
