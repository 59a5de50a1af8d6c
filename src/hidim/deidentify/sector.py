"""The ultrasound scan sector: the part of a frame that is image, not overlay.

Two sources, best first:

1. ``SequenceOfUltrasoundRegions`` — the modality's own description of its image regions.
   Regions of spatial format 2D, M-mode, spectral and waveform are image; format "none" and
   "graphics" (colour bars, text panels) are not. Rectangles are clipped to the frame.
2. The images themselves (cine loops): pixels that change across frames are the live image,
   static pixels are overlay (text, calipers, logos). The largest moving component, filled
   to its convex hull (the fan geometry of sector and curvilinear probes, the rectangle of
   linear probes), is the sector; short moving bands (text that moves per frame) are not.

When both exist the sector is the regions intersected with the moving fan (a region
rectangle also holds the static corners around a fan, where text often sits). Everything
outside the sector is blanked by :mod:`hidim.deidentify.pixels`; pixels inside it are left
exactly as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from scipy import ndimage

__all__ = ["Sector", "regions_mask", "motion_mask", "find_sector"]

_IMAGE_SPATIAL_FORMATS = frozenset({1, 2, 3, 4})  # 2D, M-mode, spectral, waveform


@dataclass(frozen=True)
class Sector:
    """The scan sector of a clip.

    Attributes:
        mask: Boolean ``[H, W]``; True inside the sector (kept bit-identical).
        source: ``"regions"``, ``"regions+motion"``, ``"motion"`` or ``"none"``.
        n_regions: Ultrasound regions used.
    """

    mask: np.ndarray
    source: str
    n_regions: int


def regions_mask(ds: Dataset, shape: tuple[int, int]) -> tuple[np.ndarray | None, int]:
    """Union of the image regions of ``SequenceOfUltrasoundRegions`` (``None`` if absent)."""
    regions = ds.get("SequenceOfUltrasoundRegions")
    if not regions:
        return None, 0
    h, w = shape
    mask = np.zeros(shape, bool)
    used = 0
    for region in regions:
        fmt = int(region.get("RegionSpatialFormat", 0) or 0)
        if fmt not in _IMAGE_SPATIAL_FORMATS:
            continue
        try:
            x0 = int(region.RegionLocationMinX0)
            y0 = int(region.RegionLocationMinY0)
            x1 = int(region.RegionLocationMaxX1)
            y1 = int(region.RegionLocationMaxY1)
        except (AttributeError, TypeError, ValueError):
            continue
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(w - 1, x1), min(h - 1, y1)
        if x1 < x0 or y1 < y0:
            continue
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
        used += 1
    return (mask if used else None), used


def motion_mask(
    gray: np.ndarray,
    *,
    threshold: float = 3.0,
    min_fraction: float = 0.05,
    max_frames: int = 48,
    min_height: float = 0.12,
) -> np.ndarray | None:
    """The moving fan of a cine loop as a filled convex region (``None`` if not found).

    The largest moving component is the fan. Other moving components join it (split fans,
    M-mode and Doppler strips) when they are at least a tenth of its size *and* at least
    ``min_height`` of the frame tall: a line of burned-in text that moves from frame to frame
    (a scrolling name, a label drawn at a new place in every frame) is a short band, and it
    must not pull the convex hull — which is kept bit-identical — over itself.

    Args:
        gray: ``[T, H, W]`` display luminance (0-255), T ≥ 2.
        threshold: Minimum temporal standard deviation (grey levels) of a moving pixel.
        min_fraction: Smallest sector accepted, as a fraction of the frame.
        max_frames: Frames sampled evenly to estimate the motion.
        min_height: Smallest height (fraction of the frame) of a secondary moving component.

    Returns:
        Boolean ``[H, W]`` or ``None`` when too little of the frame moves.
    """
    from skimage.morphology import convex_hull_image

    t = gray.shape[0]
    if t < 2:
        return None
    idx = np.unique(np.linspace(0, t - 1, min(t, max_frames)).round().astype(int))
    std = gray[idx].astype(np.float32).std(axis=0)
    moving = std > threshold
    moving = ndimage.binary_opening(moving, structure=np.ones((3, 3), bool))
    labels, n = ndimage.label(moving)
    if n == 0:
        return None
    sizes = ndimage.sum(moving, labels, index=np.arange(1, n + 1))
    objects = ndimage.find_objects(labels)
    biggest = int(np.argmax(sizes))
    tall = min_height * gray.shape[1]
    chosen = [
        i
        for i in range(n)
        if i == biggest
        or (sizes[i] >= 0.1 * sizes[biggest] and objects[i][0].stop - objects[i][0].start >= tall)
    ]
    keep = np.isin(labels, 1 + np.asarray(chosen))
    if keep.sum() < min_fraction * keep.size:
        return None
    hull = convex_hull_image(keep)
    return ndimage.binary_dilation(hull, iterations=2)


def find_sector(ds: Dataset, gray: np.ndarray) -> Sector:
    """The sector of an ultrasound clip from its regions and/or its motion.

    Args:
        ds: The data set (for ``SequenceOfUltrasoundRegions``).
        gray: ``[T, H, W]`` display luminance of the clip.

    Returns:
        A :class:`Sector`; ``source == "none"`` when neither source gives one.
    """
    shape = gray.shape[1:]
    regions, n_regions = regions_mask(ds, shape)
    motion = motion_mask(gray) if gray.shape[0] > 1 else None
    if regions is not None and motion is not None:
        both = regions & motion
        if both.sum() >= 0.3 * regions.sum():
            return Sector(both, "regions+motion", n_regions)
        return Sector(regions, "regions", n_regions)
    if regions is not None:
        return Sector(regions, "regions", n_regions)
    if motion is not None:
        return Sector(motion, "motion", 0)
    return Sector(np.zeros(shape, bool), "none", 0)
