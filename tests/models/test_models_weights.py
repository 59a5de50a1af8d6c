"""Pretrained weights without downloads: hub-cache names, local files, stem adaptation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.models.video import mc3_18

from hidim.errors import ModelError
from hidim.models.registry import get_backbone
from hidim.models.weights import adapt_first_conv, hub_checkpoint_path, read_state_dict


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache in tmp (TORCH_HOME); nothing is ever downloaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_one_channel_stem_matches_three_channel_model_on_repeated_grey(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = mc3_18()
    file = tmp_path / "mc3.pth"
    torch.save(source.state_dict(), file)
    grey = get_backbone("mc3_18", in_channels=1, weights=str(file)).eval()
    rgb = get_backbone("mc3_18", in_channels=3, weights=str(file)).eval()
    assert grey.net.stem[0].in_channels == 1
    x = torch.rand(2, 1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), rgb(x.repeat(1, 3, 1, 1, 1)), rtol=1e-4, atol=1e-5)
    assert grey.weights_info["source"] == "file" and len(grey.weights_info["sha256"]) == 64


@settings(max_examples=25, deadline=None)
@given(c0=st.integers(1, 4), k=st.integers(1, 5), seed=st.integers(0, 1000))
def test_adapted_conv_responds_to_grey_like_the_original(c0: int, k: int, seed: int) -> None:
    """For equal channels, conv_k(x repeated k) == conv_c0(x repeated c0), any c0 and k."""
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(c0, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    x = torch.randn(1, 1, 5, 5, generator=g)
    new = adapt_first_conv(conv, k)
    assert new.in_channels == k
    with torch.no_grad():
        torch.testing.assert_close(new(x.repeat(1, k, 1, 1)), conv(x.repeat(1, c0, 1, 1)))


def test_named_weights_load_from_the_hub_cache(hub: Path) -> None:
    torch.manual_seed(1)
    reference = resnet18()
    path = hub_checkpoint_path(ResNet18_Weights.IMAGENET1K_V1.url)
    assert path.parent == hub
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    net = get_backbone("resnet18_2d", in_channels=3, weights="imagenet")
    torch.testing.assert_close(net.net.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert net.weights_info["source"] == "imagenet"
    assert net.weights_info["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_offline_without_the_file_says_where_to_put_it(hub: Path) -> None:
    expected = hub_checkpoint_path("https://download.pytorch.org/models/r3d_18-b3b3357e.pth")
    with pytest.raises(ModelError, match="never downloads") as info:
        get_backbone("r3d_18", weights="kinetics400")
    message = str(info.value)
    assert "r3d_18-b3b3357e.pth" in message and str(expected) in message
    assert "--weights" in message


def test_local_file_problems_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        get_backbone("small3d", weights=str(tmp_path / "none.pth"))
    wrong = tmp_path / "wrong.pth"
    torch.save(resnet18().state_dict(), wrong)
    with pytest.raises(ModelError, match="have no 'stem.0.weight'"):
        get_backbone("r3d_18", weights=str(wrong))
    with pytest.raises(ModelError, match="no pretrained weights named 'imagenet'"):
        get_backbone("r3d_18", weights="imagenet")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read weights file"):
        get_backbone("small3d", weights=str(junk))


def test_lightning_and_ddp_wrappers_are_unwrapped(tmp_path: Path) -> None:
    """A Lightning checkpoint of a DDP-wrapped hidim backbone loads into a fresh one."""
    torch.manual_seed(2)
    trained = get_backbone("small3d", in_channels=1, widths=(4, 8, 8, 8))
    state = {f"module.{k}": v for k, v in trained.state_dict().items()}
    file = tmp_path / "run.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, file)
    assert set(read_state_dict(file)) == set(trained.state_dict())
    loaded = get_backbone("small3d", in_channels=1, widths=(4, 8, 8, 8), weights=str(file)).eval()
    x = torch.randn(2, 1, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained.eval()(x))
