"""torchvision video backbones: R3D-18, MC3-18, R(2+1)D-18, S3D, MViT-v2-S, Swin3D-T.

All take ``[B, C, T, H, W]`` and return the pooled embedding before the Kinetics classifier.
Kinetics-400 weights load from the torch hub cache only (see :mod:`hidim.models.weights`);
a 1-channel stem is adapted from the RGB one.

Transformers get an explicit ``feature_map`` layer (identity on a ``[B, K, T', H', W']``
view of the last tokens) so Grad-CAM has a 5-D target like the CNNs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models import video as tvv

from hidim.models.registry import Backbone, register_backbone
from hidim.models.weights import init_backbone_weights

__all__ = ["VideoResNetBackbone", "S3DBackbone", "MViTBackbone", "Swin3DBackbone"]

_KINETICS = ("kinetics400",)


class VideoResNetBackbone(Backbone):
    """torchvision ``VideoResNet`` (R3D / MC3 / R(2+1)D) without its classifier → ``[B, 512]``."""

    def __init__(self, net: tvv.VideoResNet) -> None:
        super().__init__(out_dim=512, gradcam_layer="net.layer4")
        net.fc = nn.Identity()  # type: ignore[assignment]
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T, H, W]`` → ``[B, 512]``."""
        return self.net(x)


class S3DBackbone(Backbone):
    """torchvision S3D features + global average pooling → ``[B, 1024]``.

    torchvision's fixed ``AvgPool3d(2, 7, 7)`` is replaced by adaptive pooling, so the
    backbone accepts clips of any size above the documented minimum (at 16 x 224 x 224 the
    two are identical).
    """

    def __init__(self, net: Any) -> None:
        super().__init__(out_dim=1024, gradcam_layer="net.features")
        self.net = net
        self.pool = nn.AdaptiveAvgPool3d(1)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T, H, W]`` → ``[B, 1024]``."""
        return self.pool(self.net.features(x)).flatten(1)


class MViTBackbone(Backbone):
    """torchvision MViT-v2-S up to the class token after the final norm → ``[B, 768]``.

    Needs clips of exactly 16 x 224 x 224 (fixed positional encodings).
    """

    def __init__(self, net: Any) -> None:
        super().__init__(out_dim=768, gradcam_layer="feature_map")
        self.net = net
        self.feature_map = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, 16, 224, 224]`` → ``[B, 768]``."""
        net = self.net
        x = net.conv_proj(x).flatten(2).transpose(1, 2)
        x = net.pos_encoding(x)
        thw = (net.pos_encoding.temporal_size,) + tuple(net.pos_encoding.spatial_size)
        for block in net.blocks:
            x, thw = block(x, thw)
        cls_token, tokens = x[:, :1], x[:, 1:]
        b, _, k = tokens.shape
        t, h, w = (int(v) for v in thw)
        grid = self.feature_map(tokens.transpose(1, 2).reshape(b, k, t, h, w))
        x = torch.cat([cls_token, grid.flatten(2).transpose(1, 2)], dim=1)
        return net.norm(x)[:, 0]


class Swin3DBackbone(Backbone):
    """torchvision Swin3D-T features + norm + global average pooling → ``[B, 768]``."""

    def __init__(self, net: Any) -> None:
        super().__init__(out_dim=768, gradcam_layer="feature_map")
        self.net = net
        self.feature_map = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T, H, W]`` → ``[B, 768]``."""
        net = self.net
        x = net.pos_drop(net.patch_embed(x))
        x = net.norm(net.features(x))  # [B, T', H', W', K]
        x = self.feature_map(x.permute(0, 4, 1, 2, 3))
        return x.mean(dim=(2, 3, 4))


def _kinetics_backbone(
    net: nn.Module,
    wrapper: Any,
    *,
    name: str,
    stem: str,
    head: tuple[str, ...],
    enum: Any,
    in_channels: int,
    weights: str | None,
) -> Backbone:
    """A torchvision video model as a backbone: its ``head`` modules replaced by identities,
    Kinetics-400 (or local) weights loaded without the classifier, the stem adapted to
    ``in_channels``, wrapped in ``wrapper``."""
    for attr in head:
        setattr(net, attr, nn.Identity())
    info = init_backbone_weights(
        net,
        backbone=name,
        stem=stem,
        in_channels=in_channels,
        weights=weights,
        named={"kinetics400": enum.KINETICS400_V1},
        drop_prefixes=tuple(f"{attr}." for attr in head),
    )
    model = wrapper(net)
    model.weights_info = info
    return model


def _video_resnet(
    factory: Any, enum: Any, name: str, in_channels: int, weights: str | None
) -> Backbone:
    return _kinetics_backbone(
        factory(weights=None),
        VideoResNetBackbone,
        name=name,
        stem="stem.0",
        head=("fc",),
        enum=enum,
        in_channels=in_channels,
        weights=weights,
    )


@register_backbone(
    "r3d_18",
    summary="torchvision ResNet3D-18 (full 3-D convs), Kinetics-400 weights; D=512",
    kind="video",
    min_frames=1,
    min_size=16,
    weights=_KINETICS,
    notes="Kinetics weights were trained on 16 x 112 x 112 clips.",
)
def r3d_18(*, in_channels: int = 1, weights: str | None = None) -> Backbone:
    """ResNet3D-18 (Tran et al. 2018)."""
    return _video_resnet(tvv.r3d_18, tvv.R3D_18_Weights, "r3d_18", in_channels, weights)


@register_backbone(
    "mc3_18",
    summary="torchvision Mixed-Convolution 3-D/2-D ResNet-18, Kinetics-400 weights; D=512",
    kind="video",
    min_frames=1,
    min_size=16,
    weights=_KINETICS,
    notes="Kinetics weights were trained on 16 x 112 x 112 clips.",
)
def mc3_18(*, in_channels: int = 1, weights: str | None = None) -> Backbone:
    """MC3-18: 3-D convs in the stem and layer1, 2-D afterwards."""
    return _video_resnet(tvv.mc3_18, tvv.MC3_18_Weights, "mc3_18", in_channels, weights)


@register_backbone(
    "r2plus1d_18",
    summary="torchvision R(2+1)D-18 (factorised space/time convs), Kinetics-400; D=512",
    kind="video",
    min_frames=1,
    min_size=16,
    weights=_KINETICS,
    notes="EchoNet-Dynamic's backbone; Kinetics weights trained on 16 x 112 x 112 clips.",
)
def r2plus1d_18(*, in_channels: int = 1, weights: str | None = None) -> Backbone:
    """R(2+1)D-18."""
    return _video_resnet(
        tvv.r2plus1d_18, tvv.R2Plus1D_18_Weights, "r2plus1d_18", in_channels, weights
    )


@register_backbone(
    "s3d",
    summary="torchvision S3D (separable 3-D inception), Kinetics-400 weights; D=1024",
    kind="video",
    min_frames=8,
    min_size=32,
    heavy=True,
    weights=_KINETICS,
    notes="Kinetics weights were trained on 16+ x 224 x 224 clips.",
)
def s3d(*, in_channels: int = 1, weights: str | None = None) -> Backbone:
    """S3D (Xie et al. 2018) with adaptive pooling."""
    return _kinetics_backbone(
        tvv.s3d(weights=None),
        S3DBackbone,
        name="s3d",
        stem="features.0.0.0",
        head=("avgpool", "classifier"),
        enum=tvv.S3D_Weights,
        in_channels=in_channels,
        weights=weights,
    )


@register_backbone(
    "mvit_v2_s",
    summary="torchvision Multiscale Vision Transformer v2-S, Kinetics-400 weights; D=768",
    kind="video",
    min_frames=16,
    min_size=224,
    fixed_shape=(16, 224, 224),
    heavy=True,
    weights=_KINETICS,
    notes="Fixed positional encodings: clips must be exactly 16 x 224 x 224.",
)
def mvit_v2_s(*, in_channels: int = 1, weights: str | None = None) -> Backbone:
    """MViT-v2-S (Li et al. 2022), class-token embedding."""
    return _kinetics_backbone(
        tvv.mvit_v2_s(weights=None),
        MViTBackbone,
        name="mvit_v2_s",
        stem="conv_proj",
        head=("head",),
        enum=tvv.MViT_V2_S_Weights,
        in_channels=in_channels,
        weights=weights,
    )


@register_backbone(
    "swin3d_t",
    summary="torchvision Video Swin Transformer-T, Kinetics-400 weights; D=768",
    kind="video",
    min_frames=2,
    min_size=32,
    heavy=True,
    weights=_KINETICS,
    notes="Kinetics weights were trained on 32 x 224 x 224 clips (patch 2 x 4 x 4).",
)
def swin3d_t(*, in_channels: int = 1, weights: str | None = None) -> Backbone:
    """Swin3D-T (Liu et al. 2022)."""
    return _kinetics_backbone(
        tvv.swin3d_t(weights=None),
        Swin3DBackbone,
        name="swin3d_t",
        stem="patch_embed.proj",
        head=("head",),
        enum=tvv.Swin3D_T_Weights,
        in_channels=in_channels,
        weights=weights,
    )
