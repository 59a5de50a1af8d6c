"""The cardiac cycle: phase of every frame, LV volume curve, end-diastole/end-systole frames.

A cycle starts at end-diastole (ED, cycle position 0). Systole lasts ``systole_s`` seconds
(the volume falls monotonically to end-systole, ES); diastole fills the ventricle again with
rapid early filling, a diastasis plateau and an atrial kick (the volume never falls during
diastole). So *systole = LV area decreasing*, *diastole = LV area non-decreasing*.

These functions are the ground truth that temporal-importance tools are checked against;
they take time in seconds so they also apply after frame-rate normalisation (frame ``i`` of a
clip resampled to ``f`` Hz is at ``i / f`` seconds from the original first frame).
"""

from __future__ import annotations

import numpy as np

from hidim.errors import PhantomError

__all__ = [
    "SYSTOLE",
    "DIASTOLE",
    "systolic_fraction",
    "cycle_position",
    "cardiac_phase",
    "relative_volume",
    "ed_es_frames",
]

SYSTOLE = "systole"
DIASTOLE = "diastole"


def _check_hr(heart_rate_bpm: float) -> None:
    if not 20.0 <= float(heart_rate_bpm) <= 250.0:
        raise PhantomError(
            f"expected a heart rate in 20..250 bpm, got {heart_rate_bpm}; pass beats per minute"
        )


def systolic_fraction(heart_rate_bpm: float, systole_s: float = 0.32) -> float:
    """Share of the cycle spent in systole (``systole_s * HR / 60``, capped at 0.5)."""
    _check_hr(heart_rate_bpm)
    return float(min(0.5, systole_s * heart_rate_bpm / 60.0))


def cycle_position(
    time_s: np.ndarray | float, heart_rate_bpm: float, phase_offset: float
) -> np.ndarray:
    """Position within the cardiac cycle, in ``[0, 1)``; 0 is end-diastole.

    Args:
        time_s: Time(s) in seconds since the clip's first frame.
        heart_rate_bpm: Heart rate (beats per minute).
        phase_offset: Cycle position of the first frame, in ``[0, 1)``.
    """
    _check_hr(heart_rate_bpm)
    t = np.asarray(time_s, dtype=float)
    return np.mod(phase_offset + t * heart_rate_bpm / 60.0, 1.0)


def cardiac_phase(
    time_s: np.ndarray | float,
    heart_rate_bpm: float,
    phase_offset: float,
    systole_s: float = 0.32,
) -> np.ndarray:
    """``"systole"`` or ``"diastole"`` at each time.

    Args:
        time_s: Time(s) in seconds since the clip's first frame (e.g. ``np.arange(T) / fps``).
        heart_rate_bpm: Heart rate (``truth.json`` series entry ``heart_rate_bpm``).
        phase_offset: ``truth.json`` series entry ``phase_offset``.
        systole_s: Systole duration (``truth.json`` ``systole_s``).

    Returns:
        String array with the shape of ``time_s``.
    """
    u = cycle_position(time_s, heart_rate_bpm, phase_offset)
    fs = systolic_fraction(heart_rate_bpm, systole_s)
    return np.where(u < fs, SYSTOLE, DIASTOLE)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def relative_volume(position: np.ndarray, ef_percent: float, systolic_frac: float) -> np.ndarray:
    """LV volume relative to end-diastole (1 at ED, ``1 - EF`` at ES).

    Args:
        position: Cycle positions in ``[0, 1)``.
        ef_percent: Ejection fraction in percent.
        systolic_frac: Output of :func:`systolic_fraction`.
    """
    u = np.asarray(position, dtype=float)
    fs = systolic_frac
    ejected = np.where(
        u < fs,
        0.5 * (1.0 - np.cos(np.pi * u / fs)),  # 0 → 1 during systole
        1.0
        - 0.8 * _smoothstep((u - fs) / (0.45 * (1.0 - fs)))
        - 0.2 * _smoothstep((u - fs - 0.75 * (1.0 - fs)) / (0.25 * (1.0 - fs))),
    )
    return 1.0 - (ef_percent / 100.0) * ejected


def ed_es_frames(
    n_frames: int, fps: float, heart_rate_bpm: float, phase_offset: float, systolic_frac: float
) -> tuple[list[int], list[int]]:
    """Frames nearest to each end-diastole and end-systole instant inside the clip.

    Returns:
        ``(ed_frames, es_frames)``, sorted frame indices.
    """
    period = 60.0 / heart_rate_bpm
    duration = (n_frames - 1) / fps

    def instants(at: float) -> list[int]:
        k0 = int(np.floor(phase_offset - at)) - 1
        out: list[int] = []
        for k in range(k0, k0 + int(duration / period) + 4):
            t = (k + at - phase_offset) * period
            if -0.5 / fps <= t <= duration + 0.5 / fps:
                out.append(min(n_frames - 1, max(0, int(round(t * fps)))))
        return sorted(set(out))

    return instants(0.0), instants(systolic_frac)
