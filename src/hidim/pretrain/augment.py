"""Video-consistent augmentations of one view ``[C, T, H, W]``: sample, then apply.

A *view* is one clip of a series. Its augmentation is drawn **once** and applied to every
frame identically — the same crop box, the same flip, the same brightness / contrast /
gamma — so the heart's motion is untouched and the only thing that changes between frames
is the anatomy (per-frame jitter would teach the encoder that flicker is signal). Only the
Gaussian noise is drawn per pixel and frame, as scanner noise is.

Sampling is kept apart from applying (as TorchIO does): :func:`sample_view_params` draws an
:class:`AugmentParams` from a ``numpy`` generator, :func:`apply_view_params` is a
deterministic function of the clip and those parameters, so an item's augmentation is
reproducible from ``(seed, epoch, index)`` whatever the number of DataLoader workers, and
the parameters can be recorded.

Geometry uses ``torchvision.transforms.v2.functional`` (``resized_crop`` with antialiasing,
``horizontal_flip``), which treat the leading ``C, T`` dimensions as a batch. Intensities
are in the store's normalised units: brightness and noise scale with the view's SD; gamma
is applied on the view's min..max range (MONAI ``AdjustContrast``'s formula), so it is
defined for z-scored data with negative values.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from hidim.errors import TrainingError
from hidim.pretrain.config import AugmentConfig

__all__ = ["AugmentParams", "sample_view_params", "apply_view_params", "VideoAugment"]

_GAMMA_EPS = 1e-7  # as monai.transforms.AdjustContrast


@dataclass(frozen=True)
class AugmentParams:
    """One view's augmentation (identity: full crop, no flip, factors 1, shifts 0).

    Attributes:
        top, left, height, width: Crop box in pixels (resized back to the input size).
        flip: Left-right flip.
        contrast: Factor around the view mean.
        brightness: Shift in view SDs.
        gamma: Exponent on the view's min..max range.
        noise_std: Gaussian noise SD in view SDs.
        noise_seed: Seed of the noise draw.
    """

    top: int
    left: int
    height: int
    width: int
    flip: bool = False
    contrast: float = 1.0
    brightness: float = 0.0
    gamma: float = 1.0
    noise_std: float = 0.0
    noise_seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for logs)."""
        return asdict(self)


def _crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop`` box, drawn from ``rng`` instead of torch's RNG."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height  # fall back to a centre crop of the allowed aspect ratio
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def sample_view_params(
    config: AugmentConfig, *, height: int, width: int, rng: np.random.Generator
) -> AugmentParams:
    """Draw one view's augmentation.

    Args:
        config: Strengths (a strength of 0 gives the identity for that augmentation).
        height, width: Frame size ``H, W`` in pixels.
        rng: The item's generator (e.g. :func:`hidim.store.dataset.item_rng`).
    """
    if height < 1 or width < 1:
        raise TrainingError(f"expected a frame size >= 1 x 1, got {height} x {width}")
    top, left, h, w = _crop_box(height, width, config.crop_scale, config.crop_ratio, rng)
    return AugmentParams(
        top=top,
        left=left,
        height=h,
        width=w,
        flip=bool(rng.random() < config.flip_p),
        contrast=float(rng.uniform(1 - config.contrast, 1 + config.contrast)),
        brightness=float(rng.uniform(-config.brightness, config.brightness)),
        gamma=float(math.exp(rng.uniform(-config.gamma, config.gamma))),
        noise_std=float(config.noise_std),
        noise_seed=int(rng.integers(0, 2**62)),
    )


def apply_view_params(clip: Tensor, params: AugmentParams) -> Tensor:
    """Apply one view's augmentation to every frame of ``clip``.

    Args:
        clip: float ``[C, T, H, W]``.
        params: From :func:`sample_view_params`.

    Returns:
        float ``[C, T, H, W]`` (same shape and dtype; a new tensor).
    """
    if clip.ndim != 4 or not clip.is_floating_point():
        raise TrainingError(
            f"expected a float clip [C, T, H, W], got {tuple(clip.shape)} {clip.dtype}"
        )
    _, _, height, width = clip.shape
    p = params
    if p.top + p.height > height or p.left + p.width > width or min(p.height, p.width) < 1:
        raise TrainingError(
            f"crop box (top {p.top}, left {p.left}, {p.height} x {p.width}) does not fit a "
            f"{height} x {width} frame; sample the parameters for this frame size"
        )
    x = clip
    if (p.top, p.left, p.height, p.width) != (0, 0, height, width):
        x = TF.resized_crop(x, p.top, p.left, p.height, p.width, [height, width], antialias=True)
    if p.flip:
        x = TF.horizontal_flip(x)
    x = x.clone() if x is clip else x
    sd = x.std(correction=0)  # population SD: a frame repeated T times has the same SD
    if p.contrast != 1.0:
        mean = x.mean()
        x = (x - mean) * p.contrast + mean
    if p.brightness != 0.0:
        x = x + p.brightness * sd
    if p.gamma != 1.0:
        lo = x.min()
        span = x.max() - lo
        x = ((x - lo) / (span + _GAMMA_EPS)).clamp_min(0).pow(p.gamma) * span + lo
    if p.noise_std > 0.0:
        g = torch.Generator().manual_seed(p.noise_seed)
        x = x + torch.randn(x.shape, generator=g, dtype=x.dtype) * (p.noise_std * sd)
    return x


class VideoAugment:
    """Draw and apply one view's augmentation: ``clip, params = augment(clip, rng)``.

    Args:
        config: The ``augment`` config section.
    """

    def __init__(self, *, config: AugmentConfig) -> None:
        self.config = config

    def __call__(self, clip: Tensor, rng: np.random.Generator) -> tuple[Tensor, AugmentParams]:
        """``[C, T, H, W]`` → augmented ``[C, T, H, W]`` and the parameters used."""
        if clip.ndim != 4:
            raise TrainingError(f"expected a clip [C, T, H, W], got {tuple(clip.shape)}")
        params = sample_view_params(
            self.config, height=int(clip.shape[2]), width=int(clip.shape[3]), rng=rng
        )
        return apply_view_params(clip, params), params
