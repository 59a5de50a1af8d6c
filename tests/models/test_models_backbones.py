"""The backbone contract every registry entry passes, and the registry's own behaviour."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hidim.errors import ModelError
from hidim.models.registry import (
    Backbone,
    available_backbones,
    backbone_spec,
    check_input_shape,
    get_backbone,
    register_backbone,
)

BUILTINS = {
    "small3d",
    "r3d_18",
    "mc3_18",
    "r2plus1d_18",
    "s3d",
    "mvit_v2_s",
    "swin3d_t",
    "resnet10_3d",
    "resnet18_3d",
    "resnet34_3d",
    "densenet121_3d",
    "resnet18_2d",
    "small2d",
}


def test_registry_lists_every_required_backbone() -> None:
    assert BUILTINS <= set(available_backbones())


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_backbone_contract(name: str, record_property: pytest.RecordProperty) -> None:
    """[B, C, T, H, W] at the documented minimum → [B, out_dim]; Grad-CAM layer is 5-D;
    torch.export reproduces the eager output where the entry says it compiles."""
    torch.manual_seed(0)
    spec = backbone_spec(name)
    net = get_backbone(name, in_channels=1).eval()
    assert isinstance(net, Backbone) and net.out_dim > 0
    batch = 1 if spec.heavy else 2
    x = torch.randn(batch, 1, *spec.min_shape())
    seen: list[torch.Size] = []
    layer = net.get_submodule(net.gradcam_layer)
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        y = net(x)
    handle.remove()
    assert y.shape == (batch, net.out_dim)
    assert torch.isfinite(y).all()
    assert len(seen) == 1 and len(seen[0]) == 5 and seen[0][0] == batch
    n_params = sum(p.numel() for p in net.parameters())
    record_property("parameters", n_params)
    record_property("export", spec.export if not spec.heavy else "not checked (heavy)")
    if spec.export == "export" and not spec.heavy:
        exported = torch.export.export(net, (x,))
        torch.testing.assert_close(exported.module()(x), y, rtol=1e-4, atol=1e-4)


def test_input_below_the_documented_minimum_is_a_clear_error() -> None:
    spec = backbone_spec("s3d")
    with pytest.raises(ModelError, match=r"needs T >= 8 and H, W >= 32.*data.clip_frames"):
        check_input_shape(spec, (1, 1, 4, 64, 64))
    with pytest.raises(ModelError, match=r"exactly \(T, H, W\) = \(16, 224, 224\)"):
        check_input_shape(backbone_spec("mvit_v2_s"), (1, 1, 16, 112, 112))
    with pytest.raises(ModelError, match="5-D batch"):
        check_input_shape(spec, (1, 16, 64, 64))


def test_unknown_backbone_suggests_the_nearest_name() -> None:
    with pytest.raises(ModelError, match=r"Did you mean 'r3d_18'"):
        get_backbone("r3d18")


def test_backbone_options_are_validated() -> None:
    with pytest.raises(ModelError, match="does not take"):
        get_backbone("r3d_18", pooling="max")
    with pytest.raises(ModelError, match="pooling must be one of"):
        get_backbone("resnet18_2d", pooling="median")
    with pytest.raises(ModelError, match="in_channels must be >= 1"):
        get_backbone("small3d", in_channels=0)


def test_register_backbone_rejects_a_second_entry_under_one_name() -> None:
    class Tiny(Backbone):
        def __init__(self) -> None:
            super().__init__(out_dim=1, gradcam_layer=None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 2, 3, 4))[:, None]

    with pytest.raises(ModelError, match="already registered"):
        register_backbone("small3d", summary="x", kind="video", min_frames=1, min_size=1)(
            lambda **kw: Tiny()
        )


def test_frame_baseline_equals_per_frame_resnet_mean() -> None:
    """resnet18_2d with mean pooling is the mean over frames of the 2-D ResNet embedding."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = get_backbone("resnet18_2d", in_channels=3).eval()
    ref = resnet18()
    ref.fc = nn.Identity()
    ref.load_state_dict(net.net.state_dict())
    ref.eval()
    x = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        per_frame = torch.stack([ref(x[:, :, t]) for t in range(3)], dim=1)
        torch.testing.assert_close(net(x), per_frame.mean(dim=1), rtol=1e-5, atol=1e-5)
