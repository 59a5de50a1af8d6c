"""2-D-per-frame baselines: a 2-D CNN on every frame, then temporal pooling.

This is the comparison the paper argues users should make: does a video (3-D) model beat
a frame model that sees the same pixels but cannot convolve across time? Each frame
``[C, H, W]`` of a clip goes through the same 2-D trunk; the per-frame feature maps are
stacked back into a 5-D map ``[B, K, T, h, w]`` (the ``feature_map`` layer, so Grad-CAM works
as for 3-D models), pooled over space, then over time by ``mean`` (frame averaging),
``max``, ``meanmax`` (both, concatenated) or learned ``attention``.

* ``resnet18_2d`` — torchvision ResNet-18 (ImageNet weights from the hub cache);
* ``small2d`` — the 2-D twin of ``small3d`` (same widths and spatial strides, 3x3/5x5
  kernels without the time axis), so ``small3d`` vs ``small2d`` isolates what temporal
  convolution adds at equal capacity and cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models import ResNet18_Weights, resnet18

from hidim.errors import ModelError
from hidim.models.registry import Backbone, register_backbone
from hidim.models.weights import init_backbone_weights

__all__ = ["FramesToVideo", "Frame2DBackbone", "ResNet18Frames", "Small2DFrames"]

_POOLINGS = ("mean", "max", "meanmax", "attention")


class FramesToVideo(nn.Module):
    """``[B*T, K, h, w]`` → ``[B, K, T, h, w]`` (a named layer for Grad-CAM hooks)."""

    def forward(self, x: Tensor, frames: int) -> Tensor:
        """Regroup per-frame maps of a batch of ``B`` clips with ``frames`` frames each."""
        bt, k, h, w = x.shape
        return x.reshape(bt // frames, frames, k, h, w).transpose(1, 2)


class Frame2DBackbone(Backbone):
    """Per-frame 2-D trunk + temporal pooling → ``[B, D]``.

    Subclasses implement :meth:`frame_features` (``[N, C, H, W]`` → ``[N, K, h, w]``).

    Args:
        channels: ``K``, channels of the per-frame feature map.
        pooling: ``"mean"``, ``"max"``, ``"meanmax"`` (``D = 2K``) or ``"attention"``.
    """

    def __init__(self, *, channels: int, pooling: str = "mean") -> None:
        if pooling not in _POOLINGS:
            raise ModelError(f"frame-model pooling must be one of {_POOLINGS}, got {pooling!r}")
        super().__init__(
            out_dim=channels * (2 if pooling == "meanmax" else 1), gradcam_layer="feature_map"
        )
        self.pooling = pooling
        self.feature_map = FramesToVideo()
        self.attention = (
            nn.Sequential(nn.Linear(channels, 128), nn.Tanh(), nn.Linear(128, 1))
            if pooling == "attention"
            else None
        )

    def frame_features(self, frames: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T, H, W]`` → ``[B, D]``."""
        b, c, t, h, w = x.shape
        f = self.frame_features(x.transpose(1, 2).reshape(b * t, c, h, w))
        per_frame = self.feature_map(f, t).mean(dim=(3, 4)).transpose(1, 2)  # [B, T, K]
        if self.pooling == "mean":
            return per_frame.mean(dim=1)
        if self.pooling == "max":
            return per_frame.amax(dim=1)
        if self.pooling == "meanmax":
            return torch.cat([per_frame.mean(dim=1), per_frame.amax(dim=1)], dim=1)
        weights = torch.softmax(self.attention(per_frame), dim=1)  # type: ignore[misc]
        return (weights * per_frame).sum(dim=1)


class ResNet18Frames(Frame2DBackbone):
    """torchvision ResNet-18 (``fc`` removed) on every frame → ``[B, 512]`` (1024 meanmax)."""

    def __init__(self, net: Any, *, pooling: str = "mean") -> None:
        super().__init__(channels=512, pooling=pooling)
        self.net = net

    def frame_features(self, frames: Tensor) -> Tensor:
        """``[N, C, H, W]`` → ``[N, 512, H/32, W/32]``."""
        n = self.net
        f = n.maxpool(n.relu(n.bn1(n.conv1(frames))))
        return n.layer4(n.layer3(n.layer2(n.layer1(f))))


def _stage2d(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Small2DFrames(Frame2DBackbone):
    """The per-frame twin of ``small3d``: four 2-D stages, each spatial stride 2.

    Args:
        in_channels: Input channels.
        widths: Channels of the four stages.
        pooling: Temporal pooling (``meanmax`` matches ``small3d``).
        dropout: Dropout on the embedding.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        widths: Sequence[int] = (16, 32, 64, 128),
        pooling: str = "meanmax",
        dropout: float = 0.0,
    ) -> None:
        if len(widths) != 4 or min(widths) < 1:
            raise ModelError(f"small2d widths must be 4 positive ints, got {list(widths)}")
        w = [int(v) for v in widths]
        super().__init__(channels=w[-1], pooling=pooling)
        self.stem = _stage2d(in_channels, w[0], 5, 2)
        self.body = nn.Sequential(_stage2d(w[0], w[1], 3, 2), _stage2d(w[1], w[2], 3, 2))
        self.features = _stage2d(w[2], w[3], 3, 2)
        self.dropout = nn.Dropout(dropout)

    def frame_features(self, frames: Tensor) -> Tensor:
        """``[N, C, H, W]`` → ``[N, widths[-1], H/16, W/16]``."""
        return self.features(self.body(self.stem(frames)))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T, H, W]`` → ``[B, D]``."""
        return self.dropout(super().forward(x))


@register_backbone(
    "resnet18_2d",
    summary="2-D baseline: ImageNet ResNet-18 per frame + temporal pooling; D=512",
    kind="frames",
    min_frames=1,
    min_size=32,
    weights=("imagenet",),
    notes="Cost grows with T (every frame is a 2-D forward pass).",
)
def resnet18_2d(
    *, in_channels: int = 1, weights: str | None = None, pooling: str = "mean"
) -> Backbone:
    """Per-frame ResNet-18 (ImageNet weights from the hub cache, or a local file)."""
    net = resnet18(weights=None)
    net.fc = nn.Identity()  # type: ignore[assignment]
    info = init_backbone_weights(
        net,
        backbone="resnet18_2d",
        stem="conv1",
        in_channels=in_channels,
        weights=weights,
        named={"imagenet": ResNet18_Weights.IMAGENET1K_V1},
        drop_prefixes=("fc.",),
    )
    model = ResNet18Frames(net, pooling=pooling)
    model.weights_info = info
    return model


@register_backbone(
    "small2d",
    summary="2-D twin of small3d per frame + temporal mean+max pooling; D=256",
    kind="frames",
    min_frames=1,
    min_size=16,
    notes="Same widths and spatial strides as small3d, no temporal convolution.",
)
def small2d(
    *,
    in_channels: int = 1,
    weights: str | None = None,
    widths: Sequence[int] = (16, 32, 64, 128),
    pooling: str = "meanmax",
    dropout: float = 0.0,
) -> Backbone:
    """Build :class:`Small2DFrames` (``weights``: ``None`` or a local file)."""
    model = Small2DFrames(in_channels=in_channels, widths=widths, pooling=pooling, dropout=dropout)
    if weights is not None:
        model.weights_info = init_backbone_weights(
            model, backbone="small2d", stem="stem.0", in_channels=in_channels, weights=weights
        )
    return model
