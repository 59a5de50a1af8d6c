"""MONAI 3-D backbones for volumes (CT/MR): ResNet-10/18/34 and DenseNet-121.

A volume is a clip whose ``T`` axis holds slices: ``[B, C, S, H, W]``. MONAI's networks are
built with ``spatial_dims=3`` and their classifier removed. MONAI's ``pretrained=True`` would
download MedicalNet / ImageNet files, so hidim loads pretrained weights only from a local
file (``weights: /path/to/resnet_18_23dataset.pth`` works: its ``module.`` prefix is
stripped, its 1-channel stem matches grey volumes).
"""

from __future__ import annotations

from typing import Any

from monai.networks import nets as mnets
from torch import Tensor, nn

from hidim.models.registry import Backbone, register_backbone
from hidim.models.weights import init_backbone_weights

__all__ = ["MonaiResNetBackbone", "MonaiDenseNetBackbone"]


class MonaiResNetBackbone(Backbone):
    """MONAI ``ResNet`` with ``feed_forward=False`` → ``[B, 512]`` (basic blocks)."""

    def __init__(self, net: Any) -> None:
        super().__init__(out_dim=int(net.in_planes), gradcam_layer="net.layer4")
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, S, H, W]`` → ``[B, 512]``."""
        return self.net(x)


class MonaiDenseNetBackbone(Backbone):
    """MONAI ``DenseNet121`` (3-D) without its output layer → ``[B, 1024]``."""

    def __init__(self, net: Any) -> None:
        super().__init__(out_dim=1024, gradcam_layer="net.features")
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, S, H, W]`` → ``[B, 1024]``."""
        return self.net(x)


def _resnet(factory: Any, name: str, in_channels: int, weights: str | None, stride: int):
    net = factory(
        spatial_dims=3,
        n_input_channels=in_channels,
        conv1_t_stride=stride,
        feed_forward=False,
        shortcut_type="B",
        bias_downsample=False,
    )
    info = init_backbone_weights(
        net,
        backbone=name,
        stem="conv1",
        in_channels=in_channels,
        weights=weights,
        drop_prefixes=("fc.",),
    )
    model = MonaiResNetBackbone(net)
    model.weights_info = info
    return model


_RESNET_NOTES = (
    "Axes are (slices, rows, cols); anisotropic volumes may want resampling first. "
    "MedicalNet weights load from a local file."
)


@register_backbone(
    "resnet10_3d",
    summary="MONAI 3-D ResNet-10 for volumes; D=512",
    kind="volume",
    min_frames=8,
    min_size=8,
    notes=_RESNET_NOTES,
)
def resnet10_3d(
    *, in_channels: int = 1, weights: str | None = None, conv1_stride: int = 2
) -> Backbone:
    """MONAI ResNet-10 (``conv1_stride`` 2 as in MedicalNet)."""
    return _resnet(mnets.resnet10, "resnet10_3d", in_channels, weights, conv1_stride)


@register_backbone(
    "resnet18_3d",
    summary="MONAI 3-D ResNet-18 for volumes; D=512",
    kind="volume",
    min_frames=8,
    min_size=8,
    notes=_RESNET_NOTES,
)
def resnet18_3d(
    *, in_channels: int = 1, weights: str | None = None, conv1_stride: int = 2
) -> Backbone:
    """MONAI ResNet-18."""
    return _resnet(mnets.resnet18, "resnet18_3d", in_channels, weights, conv1_stride)


@register_backbone(
    "resnet34_3d",
    summary="MONAI 3-D ResNet-34 for volumes; D=512",
    kind="volume",
    min_frames=8,
    min_size=8,
    notes=_RESNET_NOTES,
)
def resnet34_3d(
    *, in_channels: int = 1, weights: str | None = None, conv1_stride: int = 2
) -> Backbone:
    """MONAI ResNet-34."""
    return _resnet(mnets.resnet34, "resnet34_3d", in_channels, weights, conv1_stride)


@register_backbone(
    "densenet121_3d",
    summary="MONAI 3-D DenseNet-121 for volumes; D=1024",
    kind="volume",
    min_frames=32,
    min_size=32,
    heavy=True,
    notes="Stride-2 stem, max-pool and three 2x transitions: S, H, W >= 32.",
)
def densenet121_3d(*, in_channels: int = 1, weights: str | None = None) -> Backbone:
    """MONAI DenseNet-121 with ``spatial_dims=3``."""
    net = mnets.DenseNet121(spatial_dims=3, in_channels=in_channels, out_channels=1)
    net.class_layers.out = nn.Identity()
    info = init_backbone_weights(
        net,
        backbone="densenet121_3d",
        stem="features.conv0",
        in_channels=in_channels,
        weights=weights,
        drop_prefixes=("class_layers.out.",),
    )
    model = MonaiDenseNetBackbone(net)
    model.weights_info = info
    return model
