"""Temporal-phase importance: occlude time windows of every test clip and report the
performance drop per cardiac phase.

Phases per frame come from truth (the phantom's ``truth.json`` via
:func:`hidim.explain.regions.phantom_phases`, or any per-frame labels through
:func:`phases_from_labels`) or are estimated from the clip (:func:`estimate_phases`: the
LV-area curve from an LV mask when one is given, else the dark-cavity area inside the scan
sector — systole is where it shrinks).

Windows (:func:`phase_window_masks`): the whole ``systole`` and ``diastole``, and four
windows of equal width — around ``end_diastole`` and ``end_systole`` (the frames that carry
an ejection-fraction signal: EF = (EDV − ESV) / EDV) and in the middle of each phase
(``mid_systole``, ``mid_diastole``) as controls. Each window is ``width`` frames; the
table reports the occluded fraction per window so unequal counts stay visible. Occluded frames are replaced by the
per-pixel temporal mean of the clip (anatomy kept, that moment's motion removed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor, nn

from hidim.errors import ExplainError
from hidim.explain.occlusion import (
    OcclusionResult,
    Region,
    estimate_sector,
    occlusion_scores,
    performance_drop,
)

__all__ = [
    "SYSTOLE",
    "DIASTOLE",
    "PHASE_WINDOWS",
    "FramePhases",
    "phases_from_labels",
    "estimate_phases",
    "phase_window_masks",
    "temporal_regions",
    "temporal_occlusion_test",
    "sliding_window_importance",
    "prediction_shift",
]

SYSTOLE = "systole"
DIASTOLE = "diastole"
PHASE_WINDOWS = (
    "end_diastole",
    "end_systole",
    "mid_systole",
    "mid_diastole",
    "systole",
    "diastole",
)
Item = Mapping[str, Any]


@dataclass(frozen=True)
class FramePhases:
    """The cardiac phase of every frame of one clip.

    Attributes:
        phase: ``[T]`` strings, ``"systole"`` or ``"diastole"``.
        ed: End-diastole frames (first frame of each systole).
        es: End-systole frames (first frame of each diastole after a systole).
        source: ``"truth"`` or ``"estimated"``.
        signal: The LV-area proxy used when estimated (``[T]``), else ``None``.
    """

    phase: np.ndarray
    ed: tuple[int, ...]
    es: tuple[int, ...]
    source: str
    signal: np.ndarray | None = None


def phases_from_labels(labels: Sequence[str] | np.ndarray, *, source: str = "truth") -> FramePhases:
    """Phases from per-frame labels; ED/ES are the frames where systole/diastole begin."""
    p = np.asarray(labels).astype(str)
    bad = sorted(set(p.tolist()) - {SYSTOLE, DIASTOLE})
    if p.ndim != 1 or bad:
        raise ExplainError(
            f"expected one label per frame from {{'systole', 'diastole'}}, got {bad or p.shape}"
        )
    sys_ = p == SYSTOLE
    ed = [i for i in range(1, len(p)) if sys_[i] and not sys_[i - 1]]
    es = [i for i in range(1, len(p)) if not sys_[i] and sys_[i - 1]]
    return FramePhases(p, tuple(ed), tuple(es), source)


def _smooth(x: np.ndarray, k: int) -> np.ndarray:
    if k <= 1 or len(x) < 3:
        return x
    pad = np.pad(x, (k // 2, k - 1 - k // 2), mode="edge")
    return np.convolve(pad, np.ones(k) / k, mode="valid")


def estimate_phases(
    clip: Tensor | np.ndarray,
    *,
    lv_mask: np.ndarray | None = None,
    smooth_frames: int = 3,
) -> FramePhases:
    """Estimate systole/diastole per frame from the LV-area change.

    Args:
        clip: ``[C, T, H, W]``.
        lv_mask: Optional bool ``[T, H, W]`` LV segmentation (its area is the volume proxy).
            Without it the proxy is the number of dark pixels (below Otsu's threshold of
            the clip) inside the estimated scan sector — blood in the cavity is dark.
        smooth_frames: Moving-average width applied to the proxy before differencing.

    Returns:
        :class:`FramePhases` with ``source="estimated"``; frames where the (smoothed) area
        falls are systole, the rest diastole.
    """
    from skimage.filters import threshold_otsu

    a = clip.detach().cpu().numpy() if isinstance(clip, Tensor) else np.asarray(clip)
    if a.ndim != 4 or a.shape[1] < 3:
        raise ExplainError(f"expected a clip [C, T>=3, H, W], got shape {a.shape}")
    if lv_mask is not None:
        m = np.asarray(lv_mask, bool)
        if m.shape != a.shape[1:]:
            raise ExplainError(f"lv_mask must be [T, H, W] = {a.shape[1:]}, got {m.shape}")
        area = m.reshape(m.shape[0], -1).sum(1).astype(float)
    else:
        grey = a.mean(0)
        sector = estimate_sector(a)
        if sector.sum() < 16:
            sector = np.ones(grey.shape[1:], bool)
        vals = grey[:, sector]
        thr = threshold_otsu(vals) if np.ptp(vals) > 0 else float(vals.mean())
        area = (vals < thr).sum(1).astype(float)
    s = _smooth(area, smooth_frames)
    slope = np.gradient(s)
    labels = np.where(slope < 0, SYSTOLE, DIASTOLE)
    ph = phases_from_labels(labels, source="estimated")
    return FramePhases(ph.phase, ph.ed, ph.es, "estimated", area)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    out, start = [], None
    for i, f in enumerate(flags):
        if f and start is None:
            start = i
        if not f and start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, len(flags)))
    return out


def _window(n: int, centre: int, width: int) -> np.ndarray:
    m = np.zeros(n, bool)
    lo = max(0, centre - width // 2)
    m[lo : min(n, lo + width)] = True
    return m


def phase_window_masks(phases: FramePhases, *, width: int | None = None) -> dict[str, np.ndarray]:
    """Bool ``[T]`` frame masks of the phase windows (see the module docstring).

    Args:
        phases: The clip's phases.
        width: Frames per ED/ES/mid window (default: half the median systole length, at
            least 1). Windows of one kind around each occurrence are merged.

    Returns:
        ``{window name: [T] bool}``; a window absent from the clip is all False.
    """
    n = len(phases.phase)
    sys_runs = _runs(phases.phase == SYSTOLE)
    dia_runs = _runs(phases.phase == DIASTOLE)
    if width is None:
        lengths = [b - a for a, b in sys_runs] or [n // 3]
        width = max(1, int(np.median(lengths)) // 2)
    if width < 1:
        raise ExplainError(f"width must be >= 1 frame, got {width}")
    out = {k: np.zeros(n, bool) for k in PHASE_WINDOWS}
    out["systole"] = phases.phase == SYSTOLE
    out["diastole"] = phases.phase == DIASTOLE
    for f in phases.ed:
        out["end_diastole"] |= _window(n, f, width)
    for f in phases.es:
        out["end_systole"] |= _window(n, f, width)
    # Mid windows: the middle of each run; a run cut by the clip's start or end is placed
    # half a typical (median complete) run length from its visible end.
    for key, runs in (("mid_systole", sys_runs), ("mid_diastole", dia_runs)):
        complete = [b - a for a, b in runs if a > 0 and b < n]
        typical = int(np.median(complete)) if complete else max((b - a for a, b in runs), default=0)
        for a, b in runs:
            if a > 0 and b < n:
                centre = (a + b) // 2
            elif a == 0 and b < n:
                centre = b - typical // 2
            elif a > 0 and b == n:
                centre = a + typical // 2
            else:
                continue
            if b - a >= width and 0 <= centre < n:
                out[key] |= _window(n, centre, width)
        out[key] &= ~(out["end_diastole"] | out["end_systole"])
    return out


def temporal_regions(
    phase_fn: Callable[[Item], FramePhases | None],
    *,
    windows: Sequence[str] = ("end_diastole", "end_systole", "mid_systole", "mid_diastole"),
    width: int | None = None,
) -> list[Region]:
    """Occlusion regions (frame masks) for the chosen phase windows.

    Args:
        phase_fn: Item → its :class:`FramePhases` (truth or :func:`estimate_phases`), or
            ``None`` when unknown (the clip is then scored unoccluded).
        windows: Names from :data:`PHASE_WINDOWS`.
        width: See :func:`phase_window_masks`.
    """
    unknown = [w for w in windows if w not in PHASE_WINDOWS]
    if unknown:
        raise ExplainError(f"unknown phase windows {unknown}; expected from {list(PHASE_WINDOWS)}")

    def fn_for(name: str) -> Callable[[Item], np.ndarray | None]:
        def fn(item: Item) -> np.ndarray | None:
            ph = phase_fn(item)
            if ph is None:
                return None
            mask = phase_window_masks(ph, width=width)[name]
            return mask if mask.any() else None

        return fn

    return [Region(name, fn_for(name), anatomical=True, fill="temporal_mean") for name in windows]


def temporal_occlusion_test(
    scorer: nn.Module | Callable[[Item], nn.Module],
    items: Iterable[Item],
    phase_fn: Callable[[Item], FramePhases | None],
    *,
    task: str,
    windows: Sequence[str] = ("end_diastole", "end_systole", "mid_systole", "mid_diastole"),
    width: int | None = None,
    batch_size: int = 8,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    progress: bool = False,
) -> OcclusionResult:
    """Performance drop when each phase window is occluded (temporal-mean fill).

    Returns:
        :class:`~hidim.explain.occlusion.OcclusionResult`; its table has one row per window
        (``region`` = window name) with the drop, CI and p-value.
    """
    regions = temporal_regions(phase_fn, windows=windows, width=width)
    scores = occlusion_scores(
        scorer, items, regions, fill="temporal_mean", batch_size=batch_size, progress=progress
    )
    table = performance_drop(scores, regions, task=task, n_boot=n_boot, alpha=alpha, seed=seed)
    return OcclusionResult(scores, table)


def sliding_window_importance(
    scorer: nn.Module,
    items: Iterable[Item],
    *,
    task: str,
    n_frames: int,
    window: int = 4,
    stride: int | None = None,
    batch_size: int = 8,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Performance drop when a sliding window of frames is occluded (importance over time).

    Args:
        n_frames: Frames per clip (every item must have this many).
        window: Frames occluded at a time.
        stride: Step between windows (default ``window``).

    Returns:
        The :func:`~hidim.explain.occlusion.performance_drop` table (primary metric) with
        ``start`` and ``stop`` columns (frame indices, stop exclusive).
    """
    stride = stride or window
    if not 1 <= window <= n_frames:
        raise ExplainError(f"window must be in [1, {n_frames}], got {window}")
    starts = list(range(0, n_frames - window + 1, stride))

    def frames(s: int) -> Callable[[Item], np.ndarray]:
        def fn(item: Item) -> np.ndarray:
            t = item["clip"].shape[1]
            if t != n_frames:
                raise ExplainError(f"expected clips of {n_frames} frames, got {t}")
            m = np.zeros(t, bool)
            m[s : s + window] = True
            return m

        return fn

    regions = [Region(f"frames_{s}_{s + window}", frames(s), fill="temporal_mean") for s in starts]
    scores = occlusion_scores(scorer, items, regions, fill="temporal_mean", batch_size=batch_size)
    table = performance_drop(
        scores, regions, task=task, n_boot=n_boot, seed=seed, all_metrics=False
    )
    table.insert(1, "start", starts)
    table.insert(2, "stop", [s + window for s in starts])
    return table


def prediction_shift(
    scores: pd.DataFrame,
    windows: Sequence[str],
    *,
    contrast: tuple[Sequence[str], Sequence[str]] | None = (
        ("end_diastole", "end_systole"),
        ("mid_systole", "mid_diastole"),
    ),
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """How far predictions move when each window is occluded — label-free importance.

    A performance drop needs the change to cross the labels; the prediction shift
    ``mean |score(occluded) - score(original)|`` measures reliance directly and is far
    more sensitive on small test sets. Only clips in which every window exists count.

    Args:
        scores: :func:`~hidim.explain.occlusion.occlusion_scores` output of the windows.
        windows: Window names (columns of ``scores``).
        contrast: ``(A, B)``: report ``mean shift over A − mean shift over B`` per clip with
            a bootstrap CI and two-sided p-value (default: ED/ES windows vs mid-phase ones).
        n_boot: Bootstrap replicates.
        alpha: 1 - confidence level.
        seed: Bootstrap seed.

    Returns:
        ``{"n": clips, "shift": {window: {"value", "lower", "upper"}}, "contrast": {...}}``.
    """
    from hidim.evaluate.bootstrap import bootstrap_ci

    present = np.ones(len(scores), bool)
    for w in windows:
        present &= scores.get(f"masked__{w}", pd.Series(1.0, index=scores.index)).to_numpy() > 0
    sub = scores[present]
    out: dict[str, Any] = {"n": int(len(sub)), "shift": {}}
    if len(sub) < 2:
        return out
    base = sub["original"].to_numpy(float)
    delta = {w: np.abs(sub[w].to_numpy(float) - base) for w in windows}
    for w, d in delta.items():
        res = bootstrap_ci(np.mean, d, n_boot=n_boot, alpha=alpha, seed=seed)
        out["shift"][w] = {"value": res.estimate, "lower": res.low, "upper": res.high}
    if contrast is not None and all(w in delta for w in (*contrast[0], *contrast[1])):
        diff = np.mean([delta[w] for w in contrast[0]], 0) - np.mean(
            [delta[w] for w in contrast[1]], 0
        )
        res = bootstrap_ci(np.mean, diff, n_boot=n_boot, alpha=alpha, seed=seed)
        reps = np.asarray(res.replicates, float)
        p = 2 * min(float(np.mean(reps <= 0)), float(np.mean(reps >= 0)))
        out["contrast"] = {
            "a": list(contrast[0]),
            "b": list(contrast[1]),
            "value": res.estimate,
            "lower": res.low,
            "upper": res.high,
            "p_value": float(min(1.0, max(p, 1.0 / (reps.size + 1)))),
        }
    return out
