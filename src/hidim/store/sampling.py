"""Clip sampling along T: where clips start, and how short series are brought to length.

Sampling (choosing start frames) is kept apart from reading so it can be tested and reused:

* ``"random"`` — one clip per series per epoch, start uniform in ``[0, T - L]``;
* ``"centre"`` — one clip per series, centred (``(T - L) // 2``): deterministic evaluation;
* ``"all"`` — every clip of a series: starts ``0, stride, 2*stride, ...`` plus one clip
  ending on the last frame, so every frame is covered (test-time averaging).

A series shorter than the clip length ``L`` is read whole and brought to length by
:func:`fit_length`: ``"pad"`` appends zero frames (after normalisation; right for volumes
and for models that must not see invented motion), ``"loop"`` repeats the series from its
first frame (right for periodic cine such as a cardiac cycle).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from hidim.errors import StoreError

__all__ = [
    "Sampling",
    "ShortPolicy",
    "SAMPLING_MODES",
    "SHORT_POLICIES",
    "all_starts",
    "centre_start",
    "random_start",
    "draw_start",
    "fit_length",
]

Sampling = Literal["random", "centre", "all"]
ShortPolicy = Literal["pad", "loop"]
SAMPLING_MODES: tuple[str, ...] = ("random", "centre", "all")
SHORT_POLICIES: tuple[str, ...] = ("pad", "loop")


def all_starts(n_frames: int, clip_frames: int, stride: int | None = None) -> list[int]:
    """Start frames of every clip of a series, covering every frame.

    Args:
        n_frames: frames in the series (T).
        clip_frames: clip length L.
        stride: step between starts (default ``L``: non-overlapping).

    Returns:
        ``[0, s, 2s, ...]`` and, if the last frame is not covered, ``T - L``; ``[0]`` when
        ``T <= L``.
    """
    step = clip_frames if stride is None else stride
    if step < 1:
        raise StoreError(f"expected a stride >= 1 frame, got {step}")
    if n_frames <= clip_frames:
        return [0]
    starts = list(range(0, n_frames - clip_frames + 1, step))
    if starts[-1] + clip_frames < n_frames:
        starts.append(n_frames - clip_frames)
    return starts


def centre_start(n_frames: int, clip_frames: int) -> int:
    """Start of the centred clip (0 when the series is not longer than the clip)."""
    return max(0, (n_frames - clip_frames) // 2)


def random_start(n_frames: int, clip_frames: int, rng: np.random.Generator) -> int:
    """A uniform random start in ``[0, T - L]`` (0 when ``T <= L``)."""
    return int(rng.integers(0, n_frames - clip_frames + 1)) if n_frames > clip_frames else 0


def draw_start(
    n_frames: int, clip_frames: int | None, sampling: str, rng: np.random.Generator
) -> int:
    """Start of a ``"centre"`` or ``"random"`` clip (0 for whole-series reads)."""
    if clip_frames is None:
        return 0
    if sampling == "centre":
        return centre_start(n_frames, clip_frames)
    return random_start(n_frames, clip_frames, rng)


def fit_length(clip: np.ndarray, length: int, policy: ShortPolicy = "pad") -> np.ndarray:
    """Bring a ``[C, t, H, W]`` clip with ``t <= length`` to ``[C, length, H, W]``.

    Args:
        clip: the frames that exist (``t >= 1``).
        length: wanted frames.
        policy: ``"pad"`` (zero frames appended) or ``"loop"`` (repeat from the first frame).
    """
    c, t, h, w = clip.shape
    if t == length:
        return clip
    if t > length:
        return clip[:, :length]
    if t == 0:
        raise StoreError("expected a series with at least one frame, got 0 frames")
    if policy == "loop":
        index = np.arange(length) % t
        return np.ascontiguousarray(clip[:, index])
    if policy == "pad":
        out = np.zeros((c, length, h, w), dtype=clip.dtype)
        out[:, :t] = clip
        return out
    raise StoreError(f"expected a short-clip policy in {SHORT_POLICIES}, got {policy!r}")
