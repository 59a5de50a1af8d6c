"""Normalisation of one series: frame rate (by time), spatial size, intensity parameters.

* :func:`resample_fps` — resample a cine loop to a target frame rate by **linear
  interpolation in time**, not by dropping/duplicating frames. Frame ``i`` of the input
  covers ``[i, i+1) / fps_in`` seconds and is sampled at its centre ``(i + 0.5) / fps_in``;
  the output has ``round(T * fps_out / fps_in)`` frames sampled at their centres, so the
  duration ``T / fps`` is preserved to within half an output frame, the same rate is the
  identity, and a constant clip stays constant.
* :func:`resize_keep_aspect` — optional resize to ``(H, W)`` keeping the aspect ratio
  (bilinear, antialiased) and padding with the background value; by default curation keeps
  native resolution.
* :func:`intensity_parameters` — the modality-aware normalisation recorded in the manifest's
  ``intensity_norm``; it is an affine map (plus an optional clip) that readers apply, so the
  stored values stay exact (see :mod:`hidim.store.intensity`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hidim.errors import CurationError

__all__ = [
    "INTENSITY_METHODS",
    "output_frames",
    "resample_fps",
    "resize_keep_aspect",
    "parse_intensity",
    "intensity_parameters",
]

INTENSITY_METHODS: tuple[str, ...] = ("auto", "none", "zscore", "percentile", "hu", "window")

# Statistics are computed on at most this many values (a fixed stride through the series).
_MAX_STAT_SAMPLES = 1 << 22

# Rates whose sampling instants drift apart by less than this (in frames, over the whole loop)
# are the same rate written with rounding (FrameTime 33.333 ms → 30.0003 Hz): no resampling.
_SAME_RATE_FRAMES = 0.01

# Default CT HU scaling: -1000 HU (air) → 0, +1000 HU → 1, no clipping (invertible).
_HU_RANGE = (-1000.0, 1000.0)


def output_frames(n_frames: int, fps_in: float, fps_out: float) -> int:
    """Frames after resampling ``n_frames`` from ``fps_in`` to ``fps_out`` (at least 1)."""
    if not (fps_in > 0 and fps_out > 0 and math.isfinite(fps_in) and math.isfinite(fps_out)):
        raise CurationError(
            f"expected positive frame rates, got fps_in={fps_in}, fps_out={fps_out}; "
            "pass --fps with a positive number (frames per second)"
        )
    return max(1, int(round(n_frames * fps_out / fps_in)))


def resample_fps(clip: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Resample ``[C, T, H, W]`` from ``fps_in`` to ``fps_out`` by linear interpolation in time.

    Args:
        clip: frames at ``fps_in`` (frames per second).
        fps_in: acquisition frame rate (Hz).
        fps_out: target frame rate (Hz).

    Returns:
        float32 ``[C, T', H, W]`` with ``T' = round(T * fps_out / fps_in)``. Returns the
        input values unchanged when the rates are equal, or so close that no output frame
        would move by 1/100 of a frame (header rounding such as 30.0003 vs 30 Hz).
    """
    if clip.ndim != 4:
        raise CurationError(f"expected a clip [C, T, H, W], got shape {tuple(clip.shape)}")
    t_in = clip.shape[1]
    t_out = output_frames(t_in, fps_in, fps_out)
    if t_in == 0:
        raise CurationError("expected at least one frame to resample, got 0")
    if t_out == t_in and t_in * abs(1.0 - fps_in / fps_out) < _SAME_RATE_FRAMES:
        return clip.astype(np.float32, copy=False)  # same rate (up to header rounding)
    # source position (in frames) of each output frame centre, clamped to the loop
    pos = (np.arange(t_out, dtype=np.float64) + 0.5) * (fps_in / fps_out) - 0.5
    pos = np.clip(pos, 0.0, t_in - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, t_in - 1)
    w = (pos - lo).astype(np.float32)
    out = np.empty((clip.shape[0], t_out, *clip.shape[2:]), dtype=np.float32)
    for j in range(t_out):  # frame by frame: memory stays one output frame wide
        a = clip[:, lo[j]].astype(np.float32, copy=False)
        if w[j] == 0.0 or lo[j] == hi[j]:
            out[:, j] = a
        else:
            b = clip[:, hi[j]].astype(np.float32, copy=False)
            out[:, j] = a + w[j] * (b - a)  # exact for constant input
    return out


def resize_keep_aspect(
    clip: np.ndarray, size: tuple[int, int], *, pad_value: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Resize frames to fit ``size`` keeping the aspect ratio, then pad to exactly ``size``.

    Args:
        clip: ``[C, T, H, W]``.
        size: target ``(height, width)`` in pixels.
        pad_value: value of the padding (default: the clip's minimum, i.e. background —
            air for CT, black for ultrasound).

    Returns:
        float32 ``[C, T, size[0], size[1]]`` and a record ``{"size", "original", "scale",
        "pad": [top, bottom, left, right], "pad_value"}`` so coordinates (annotations) can
        be mapped: ``stored = original * scale + (left, top)``.
    """
    th, tw = int(size[0]), int(size[1])
    if th < 1 or tw < 1:
        raise CurationError(f"expected a size of at least 1x1 pixels, got {size}; pass --size H W")
    c, t, h, w = clip.shape
    scale = min(th / h, tw / w)
    nh, nw = max(1, min(th, round(h * scale))), max(1, min(tw, round(w * scale)))
    fill = float(clip.min()) if pad_value is None and clip.size else float(pad_value or 0.0)
    top, left = (th - nh) // 2, (tw - nw) // 2
    record: dict[str, Any] = {
        "size": [th, tw],
        "original": [h, w],
        "scale": scale,
        "pad": [top, th - nh - top, left, tw - nw - left],
        "pad_value": fill,
    }
    if (nh, nw) == (h, w) and (th, tw) == (h, w):
        return clip.astype(np.float32, copy=False), record
    out = np.full((c, t, th, tw), fill, dtype=np.float32)
    with torch.no_grad():
        for s in range(0, t, 32):  # bounded memory for long loops
            frames = torch.from_numpy(np.ascontiguousarray(clip[:, s : s + 32], dtype=np.float32))
            frames = frames.permute(1, 0, 2, 3)  # [t, C, H, W] as a batch of images
            resized = F.interpolate(
                frames, size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1
            )
            out[:, s : s + 32, top : top + nh, left : left + nw] = resized.permute(
                1, 0, 2, 3
            ).numpy()
    return out, record


def parse_intensity(spec: str) -> tuple[str, tuple[float, ...]]:
    """Parse an intensity option: ``auto``, ``none``, ``zscore``, ``hu``,
    ``percentile[:LO,HI]`` (default 1,99) or ``window:LEVEL,WIDTH`` (CT, in HU).

    Raises:
        CurationError: unknown method or bad numbers (the message lists the choices).
    """
    name, _, rest = spec.strip().lower().partition(":")
    if name not in INTENSITY_METHODS:
        raise CurationError(
            f"expected --intensity one of {INTENSITY_METHODS} (percentile:LO,HI, window:LEVEL,WIDTH), "
            f"got {spec!r}"
        )
    try:
        numbers = tuple(float(x) for x in rest.split(",")) if rest else ()
    except ValueError:
        raise CurationError(
            f"expected numbers after ':' in --intensity {spec!r}, e.g. window:40,400"
        ) from None
    if name == "percentile":
        numbers = numbers or (1.0, 99.0)
        if len(numbers) != 2 or not 0 <= numbers[0] < numbers[1] <= 100:
            raise CurationError(f"expected percentile:LO,HI with 0 <= LO < HI <= 100, got {spec!r}")
    elif name == "window":
        if len(numbers) != 2 or numbers[1] <= 0:
            raise CurationError(f"expected window:LEVEL,WIDTH with WIDTH > 0 (HU), got {spec!r}")
    elif numbers:
        raise CurationError(f"expected no parameters for --intensity {name}, got {spec!r}")
    return name, numbers


def _sample(array: np.ndarray) -> np.ndarray:
    flat = array.reshape(-1)
    step = max(1, flat.size // _MAX_STAT_SAMPLES)
    return flat[::step].astype(np.float64)


def intensity_parameters(
    array: np.ndarray, *, modality: str | None, spec: str = "auto"
) -> dict[str, Any]:
    """The intensity normalisation of one series, as an affine record readers apply.

    ``auto`` picks ``hu`` for CT (``(HU + 1000) / 2000``, no clipping) and ``zscore`` for
    every other modality (ultrasound, MR, ...): per-series mean 0, standard deviation 1.

    Args:
        array: the series as stored (``[C, T, H, W]``, HU for CT).
        modality: DICOM Modality (``"CT"``, ``"US"``, ``"MR"``...).
        spec: see :func:`parse_intensity`.

    Returns:
        ``{"method", "scale", "offset", "clip", "stats", "spec"}``; normalised values are
        ``clip(raw * scale + offset)``.
    """
    name, numbers = parse_intensity(spec)
    if name == "auto":
        name, numbers = ("hu", ()) if (modality or "").upper() == "CT" else ("zscore", ())
    record: dict[str, Any] = {
        "method": name,
        "spec": spec,
        "scale": 1.0,
        "offset": 0.0,
        "clip": None,
    }
    if name == "none":
        return record
    if name == "hu":
        lo, hi = _HU_RANGE
        record.update(scale=1.0 / (hi - lo), offset=-lo / (hi - lo), stats={"hu_range": [lo, hi]})
        return record
    if name == "window":
        level, width = numbers
        lo = level - width / 2
        record.update(
            scale=1.0 / width,
            offset=-lo / width,
            clip=[0.0, 1.0],
            stats={"level": level, "width": width},
        )
        return record
    sample = _sample(array)
    if name == "zscore":
        mean, std = float(sample.mean()), float(sample.std())
        std_used = std if std > 0 else 1.0
        record.update(
            scale=1.0 / std_used, offset=-mean / std_used, stats={"mean": mean, "std": std}
        )
        return record
    p_lo, p_hi = numbers
    v_lo, v_hi = (float(v) for v in np.percentile(sample, [p_lo, p_hi]))
    span = v_hi - v_lo if v_hi > v_lo else 1.0
    record.update(
        scale=1.0 / span,
        offset=-v_lo / span,
        stats={"percentiles": [p_lo, p_hi], "values": [v_lo, v_hi]},
    )
    return record
