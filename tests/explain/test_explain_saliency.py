"""explain(): one call shape, attributions where the model's evidence is, memory-bounded."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hidim.errors import ExplainError
from hidim.explain.saliency import (
    EXPLAINERS,
    available_explainers,
    explain,
    frame_windows,
    resolve_layer,
)

MODEL_METHODS = [n for n, s in EXPLAINERS.items() if s.model_dependent]


def _clip(toys, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, toys.T, toys.H, toys.W, generator=g) + 0.1


@pytest.mark.parametrize("method", available_explainers())
def test_every_explainer_returns_a_finite_thw_map(toys, corner, method: str) -> None:
    """Registry contract: each entry maps one [C,T,H,W] clip to a finite float [T,H,W]."""
    model = toys.RegionModel(corner)
    clip = torch.rand(2, toys.T, toys.H, toys.W)  # 2 channels: reductions over C must work
    model.conv = nn.Conv3d(2, 3, (1, 3, 3), padding=(0, 1, 1))
    attr = explain(model, clip, method=method, internal_batch_size=3)
    assert attr.shape == (toys.T, toys.H, toys.W)
    assert attr.dtype == torch.float32
    assert torch.isfinite(attr).all()
    assert attr.abs().sum() > 0


@pytest.mark.parametrize("method", MODEL_METHODS)
def test_attribution_concentrates_on_the_only_region_the_model_reads(toys, corner, method) -> None:
    model = toys.RegionModel(corner)
    attr = explain(model, _clip(toys), method=method, options=None).abs()
    # The 3x3 convolution lets one pixel of halo around the 3x3 corner influence the output.
    halo = torch.zeros(toys.H, toys.W, dtype=torch.bool)
    halo[0:4, 0:4] = True
    inside = attr[:, halo].sum() / attr.sum()
    assert inside > 0.95, f"{method}: only {inside:.2f} of the attribution in the region"


def test_edge_control_does_not_depend_on_the_model(toys, corner) -> None:
    clip = _clip(toys)
    a = explain(toys.RegionModel(corner, seed=0), clip, method="edge")
    b = explain(nn.Sequential(nn.Flatten(), nn.LazyLinear(1)), clip, method="edge")
    assert torch.equal(a, b)


def test_chunked_equals_whole_clip_for_a_frame_local_model(toys, corner) -> None:
    """Per-frame model summed over time: each window's gradients equal the whole clip's."""
    model = toys.RegionModel(corner)
    clip = torch.rand(1, 11, toys.H, toys.W)
    whole = explain(model, clip, method="saliency")
    chunked = explain(model, clip, method="saliency", chunk_frames=4, chunk_overlap=1)
    torch.testing.assert_close(chunked, whole)


def test_frame_windows_cover_every_frame_with_full_windows() -> None:
    wins = frame_windows(11, 4, 1)
    assert wins[0] == (0, 4) and wins[-1] == (7, 11)
    assert all(b - a == 4 for a, b in wins)
    covered = set().union(*(range(a, b) for a, b in wins))
    assert covered == set(range(11))
    assert frame_windows(3, 8, 2) == [(0, 3)]


def test_gradcam_upsamples_a_coarse_layer_and_handles_per_frame_2d_layers(toys) -> None:
    class Coarse(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv3d(1, 4, 3, stride=2, padding=1), nn.ReLU())
            self.fc = nn.Linear(4, 1)

        def forward(self, x):
            return self.fc(self.features(x).mean(dim=(2, 3, 4)))[:, 0]

    class PerFrame(nn.Module):
        """Folds T into the batch: a 2-D backbone with a [B*T, K, h, w] feature map."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
            self.fc = nn.Linear(4, 1)
            self.gradcam_layer = "conv"

        def forward(self, x):
            b, c, t, h, w = x.shape
            f = torch.relu(self.conv(x.transpose(1, 2).reshape(b * t, c, h, w)))
            return self.fc(f.mean(dim=(2, 3)).reshape(b, t, -1).mean(1))[:, 0]

    clip = torch.rand(1, 6, 12, 12)
    for model in (Coarse(), PerFrame()):
        cam = explain(model, clip, method="gradcam")
        assert cam.shape == (6, 12, 12)
        assert (cam >= 0).all()


def test_layer_can_be_a_name_a_module_or_the_declared_default(toys, corner) -> None:
    model = toys.RegionModel(corner)
    assert resolve_layer(model) is model.gate  # from model.gradcam_layer = "gate"
    assert resolve_layer(model, "conv") is model.conv
    assert resolve_layer(model, model.relu) is model.relu
    wrapper = nn.Sequential(model)  # the declared default is found on a submodule
    assert resolve_layer(wrapper) is model.gate
    plain = nn.Sequential(nn.Conv3d(1, 2, 1), nn.Conv3d(2, 2, 1))
    assert resolve_layer(plain) is plain[1]  # last convolution
    a = explain(model, _clip(toys), method="gradcam", layer="conv")
    assert a.shape == (toys.T, toys.H, toys.W)


def test_layer_errors_name_the_fix(toys, corner) -> None:
    model = toys.RegionModel(corner)
    with pytest.raises(ExplainError, match="close names: \\['gate'\\]"):
        resolve_layer(model, "gat")
    with pytest.raises(ExplainError, match="not one of its submodules"):
        resolve_layer(model, nn.Conv3d(1, 1, 1))
    with pytest.raises(ExplainError, match="has none"):
        resolve_layer(nn.Sequential(nn.Flatten(), nn.Linear(2, 1)))
    with pytest.raises(ExplainError, match="does not take a layer"):
        explain(model, _clip(toys), method="integrated_gradients", layer="conv")


def test_input_and_output_errors(toys, corner) -> None:
    model = toys.RegionModel(corner)
    with pytest.raises(ExplainError, match=r"\[C, T, H, W\], got shape \(6, 12, 12\)"):
        explain(model, torch.rand(6, 12, 12))
    with pytest.raises(ExplainError, match="Did you mean 'gradcam'"):
        explain(model, _clip(toys), method="gradcamm")
    with pytest.raises(ExplainError, match="target must be None"):
        explain(model, _clip(toys), target=2, method="saliency")

    class Dict(nn.Module):
        def forward(self, x):
            return {"score": x.sum()}

    with pytest.raises(ExplainError, match="scorer"):
        explain(Dict(), _clip(toys), method="saliency")


def test_multi_output_target_selects_the_output(toys, corner) -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv3d(1, 1, 1)

        def forward(self, x):
            h = self.conv(x)
            left, right = h[..., :6].sum(dim=(1, 2, 3, 4)), h[..., 6:].sum(dim=(1, 2, 3, 4))
            return torch.stack([left, right], 1)

    model = TwoHeads()
    clip = _clip(toys)
    right = explain(model, clip, target=1, method="saliency")
    assert right[..., :6].abs().sum() == 0 and right[..., 6:].abs().sum() > 0
    with pytest.raises(ExplainError, match=r"target must be in \[0, 2\)"):
        explain(model, clip, target=5, method="saliency")


def test_explain_leaves_the_model_as_it_found_it(toys, corner) -> None:
    model = toys.RegionModel(corner).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    explain(model, _clip(toys), method="gradcam")
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
