"""Render attributions: overlay videos (GIF, MP4 when an encoder is installed), key-frame
panels (PNG) and the per-frame importance curve (PNG, matplotlib).

All writers are atomic (temporary file + rename) and return the written path. Colour maps
come from matplotlib; GIFs are encoded by imageio's Pillow plugin; MP4 needs the optional
``imageio-ffmpeg`` (or ``av``) package and raises a clear error without it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from hidim.errors import ExplainError
from hidim.provenance import atomic_write_bytes

__all__ = [
    "normalise_map",
    "overlay_frames",
    "frame_importance",
    "write_overlay_gif",
    "write_overlay_mp4",
    "write_overlay_panel",
    "plot_frame_importance",
]


def _np(a: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(a, Tensor):
        return a.detach().cpu().float().numpy()
    return np.asarray(a, dtype=np.float32)


def _check_pair(clip: np.ndarray, attr: np.ndarray) -> None:
    if clip.ndim != 4:
        raise ExplainError(f"expected clip [C, T, H, W], got shape {clip.shape}")
    if attr.shape != clip.shape[1:]:
        raise ExplainError(
            f"expected attribution [T, H, W] = {clip.shape[1:]} matching the clip, "
            f"got {attr.shape}; pass the output of hidim.explain.explain for this clip"
        )


def normalise_map(attr: Tensor | np.ndarray, *, percentile: float = 99.0) -> np.ndarray:
    """|attribution| scaled to [0, 1] with the top ``100 - percentile`` % saturated.

    Args:
        attr: Any-shaped attribution.
        percentile: Values above this percentile of |attr| map to 1 (robust to outliers).

    Returns:
        float32 array of the same shape in [0, 1] (all zeros for an all-zero map).
    """
    a = np.abs(_np(attr))
    hi = float(np.percentile(a, percentile)) if a.size else 0.0
    if hi <= 0:
        hi = float(a.max()) if a.size else 0.0
    if hi <= 0:
        return np.zeros_like(a, dtype=np.float32)
    return np.clip(a / hi, 0.0, 1.0).astype(np.float32)


def _base_rgb(clip: np.ndarray) -> np.ndarray:
    """[C, T, H, W] → float [T, H, W, 3] in [0, 1] (grey from the channel mean, or RGB)."""
    img = np.moveaxis(clip[:3], 0, -1) if clip.shape[0] == 3 else clip.mean(0)[..., None]
    lo, hi = np.percentile(img, [0.5, 99.5])
    img = np.clip((img - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    return np.broadcast_to(img, (*img.shape[:3], 3)).astype(np.float32)


def overlay_frames(
    clip: Tensor | np.ndarray,
    attr: Tensor | np.ndarray,
    *,
    alpha: float = 0.6,
    cmap: str = "inferno",
    percentile: float = 99.0,
) -> np.ndarray:
    """Blend an attribution heat map over every frame of its clip.

    The heat map's opacity grows with the attribution, so unimportant pixels show the
    image unchanged.

    Args:
        clip: ``[C, T, H, W]`` (grey from the channel mean; 3 channels are shown as RGB).
        attr: ``[T, H, W]`` attribution of that clip.
        alpha: Opacity of the strongest attribution, in [0, 1].
        cmap: A matplotlib colour map name.
        percentile: Saturation percentile of |attr| (see :func:`normalise_map`).

    Returns:
        uint8 ``[T, H, W, 3]`` frames.
    """
    import matplotlib

    c, a = _np(clip), _np(attr)
    _check_pair(c, a)
    if not 0.0 <= alpha <= 1.0:
        raise ExplainError(f"alpha must be in [0, 1], got {alpha}")
    heat = normalise_map(a, percentile=percentile)
    colours = matplotlib.colormaps[cmap](heat)[..., :3]
    weight = alpha * heat[..., None]
    out = (1.0 - weight) * _base_rgb(c) + weight * colours
    return (np.clip(out, 0.0, 1.0) * 255).round().astype(np.uint8)


def frame_importance(attr: Tensor | np.ndarray) -> np.ndarray:
    """Share of the total |attribution| in each frame: float ``[T]`` summing to 1 (or zeros)."""
    a = np.abs(_np(attr))
    if a.ndim != 3:
        raise ExplainError(f"expected attribution [T, H, W], got shape {a.shape}")
    per = a.reshape(a.shape[0], -1).sum(1)
    total = per.sum()
    return (per / total).astype(np.float64) if total > 0 else np.zeros_like(per, np.float64)


def _upscale(frames: np.ndarray, min_side: int) -> np.ndarray:
    """Nearest-neighbour enlarge [T, H, W, 3] so the shorter side is at least ``min_side``."""
    factor = max(1, int(np.ceil(min_side / max(1, min(frames.shape[1:3])))))
    if factor == 1:
        return frames
    return frames.repeat(factor, axis=1).repeat(factor, axis=2)


def write_overlay_gif(
    path: str | os.PathLike[str],
    clip: Tensor | np.ndarray,
    attr: Tensor | np.ndarray,
    *,
    fps: float = 10.0,
    min_side: int = 128,
    **overlay_kwargs: float | str,
) -> Path:
    """Write the overlay video as an endlessly looping GIF.

    Args:
        path: Output ``.gif`` path.
        clip: ``[C, T, H, W]``.
        attr: ``[T, H, W]``.
        fps: Playback frame rate (frames per second).
        min_side: Enlarge small clips (nearest neighbour) to at least this many pixels.
        **overlay_kwargs: Passed to :func:`overlay_frames`.
    """
    import imageio.v3 as iio

    if fps <= 0:
        raise ExplainError(f"fps must be > 0, got {fps}")
    frames = _upscale(overlay_frames(clip, attr, **overlay_kwargs), min_side)  # type: ignore[arg-type]
    data = iio.imwrite("<bytes>", frames, extension=".gif", duration=1000.0 / fps, loop=0)
    return atomic_write_bytes(path, data)


def write_overlay_mp4(
    path: str | os.PathLike[str],
    clip: Tensor | np.ndarray,
    attr: Tensor | np.ndarray,
    *,
    fps: float = 10.0,
    min_side: int = 128,
    **overlay_kwargs: float | str,
) -> Path:
    """Write the overlay video as H.264 MP4 (needs ``imageio-ffmpeg`` or ``av``).

    Raises:
        ExplainError: No MP4 encoder is installed (fix: ``pip install imageio-ffmpeg`` or use
            :func:`write_overlay_gif`).
    """
    import importlib.util

    import imageio.v3 as iio

    if not any(importlib.util.find_spec(m) for m in ("imageio_ffmpeg", "av")):
        raise ExplainError(
            "MP4 needs an encoder: pip install imageio-ffmpeg (or av); GIF works without one"
        )
    frames = _upscale(overlay_frames(clip, attr, **overlay_kwargs), min_side)  # type: ignore[arg-type]
    # H.264 wants even sides.
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    data = iio.imwrite("<bytes>", frames, extension=".mp4", fps=fps)
    return atomic_write_bytes(path, data)


def _png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def write_overlay_panel(
    path: str | os.PathLike[str],
    clip: Tensor | np.ndarray,
    attr: Tensor | np.ndarray,
    *,
    frames: Sequence[int] | None = None,
    n_frames: int = 4,
    title: str = "",
    frame_labels: Sequence[str] | None = None,
) -> Path:
    """A PNG panel of key frames: image (top) and overlay (bottom).

    Args:
        path: Output ``.png`` path.
        clip: ``[C, T, H, W]``.
        attr: ``[T, H, W]``.
        frames: Frame indices to show (default: the ``n_frames`` frames with the most
            attribution, in time order).
        n_frames: How many frames when ``frames`` is not given.
        title: Figure title (e.g. prediction and label; never PHI).
        frame_labels: Optional label per clip frame (e.g. cardiac phase), shown under it.
    """
    c, a = _np(clip), _np(attr)
    _check_pair(c, a)
    if frames is None:
        imp = frame_importance(a)
        frames = sorted(np.argsort(-imp, kind="stable")[: min(n_frames, len(imp))].tolist())
    frames = [int(f) for f in frames]
    if not frames or min(frames) < 0 or max(frames) >= a.shape[0]:
        raise ExplainError(f"frames must be indices in [0, {a.shape[0]}), got {frames}")
    over = overlay_frames(c, a)
    base = (_base_rgb(c) * 255).astype(np.uint8)
    fig = Figure(figsize=(2.2 * len(frames), 4.6))
    axes = fig.subplots(2, len(frames), squeeze=False)
    for j, f in enumerate(frames):
        axes[0, j].imshow(base[f])
        axes[1, j].imshow(over[f])
        label = f"frame {f}"
        if frame_labels is not None and f < len(frame_labels):
            label += f" ({frame_labels[f]})"
        axes[1, j].set_xlabel(label, fontsize=8)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return atomic_write_bytes(path, _png_bytes(fig))


def plot_frame_importance(
    path: str | os.PathLike[str],
    importance: Sequence[float] | np.ndarray | Tensor,
    *,
    phases: Sequence[str] | None = None,
    fps: float | None = None,
    title: str = "Per-frame importance",
    band: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Path:
    """Plot the per-frame importance curve, shading the cardiac phases when known.

    Args:
        path: Output ``.png`` path.
        importance: ``[T]`` importance per frame (e.g. :func:`frame_importance`, or the mean
            over clips).
        phases: Optional phase label per frame (``"systole"``/``"diastole"``/...).
        fps: Frame rate; when given the x axis is in seconds.
        title: Plot title.
        band: Optional ``(lower, upper)`` per frame (e.g. a bootstrap interval).
    """
    y = _np(importance) if isinstance(importance, Tensor) else np.asarray(importance, float)
    if y.ndim != 1:
        raise ExplainError(f"expected importance [T], got shape {y.shape}")
    if phases is not None and len(phases) != len(y):
        raise ExplainError(f"expected one phase per frame ({len(y)}), got {len(phases)}")
    x = np.arange(len(y), dtype=np.float64)
    if fps:
        x = x / fps
    fig = Figure(figsize=(6.0, 2.6))
    ax = fig.subplots()
    if phases is not None:
        palette = {"systole": "#f4c7c3", "diastole": "#c6dbef"}
        step = (x[1] - x[0]) if len(x) > 1 else 1.0
        seen: set[str] = set()
        for i, p in enumerate(phases):
            colour = palette.get(str(p), "#e5e5e5")
            ax.axvspan(
                x[i] - step / 2,
                x[i] + step / 2,
                color=colour,
                lw=0,
                label=str(p) if p not in seen else None,
            )
            seen.add(str(p))
    if band is not None:
        ax.fill_between(x, band[0], band[1], color="#555555", alpha=0.25, lw=0)
    ax.plot(x, y, color="black", lw=1.5, marker="o", ms=2.5)
    ax.set_xlabel("time (s)" if fps else "frame")
    ax.set_ylabel("share of attribution")
    ax.set_title(title, fontsize=10)
    if phases is not None:
        ax.legend(fontsize=7, loc="upper right")
    return atomic_write_bytes(path, _png_bytes(fig))
