"""Multi-view fusion with missing views, tabular fusion with missing values, HidimNet."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hidim.errors import ModelError
from hidim.models.fusion import MultiViewFusion, TabularFusion, masked_softmax
from hidim.models.network import HidimNet
from hidim.models.registry import backbone_spec, get_backbone


def _small(seed: int = 0):
    torch.manual_seed(seed)
    return get_backbone("small3d", in_channels=1, widths=(4, 8, 8, 8)).eval()


@pytest.mark.parametrize("pooling", ["mean", "attention"])
@pytest.mark.parametrize("shared", [True, False])
def test_masked_views_do_not_change_the_output(pooling: str, shared: bool) -> None:
    nets = _small() if shared else [_small(0), _small(1), _small(2)]
    fusion = MultiViewFusion(backbones=nets, n_views=3, pooling=pooling).eval()
    torch.manual_seed(3)
    clips = torch.randn(2, 3, 1, 4, 16, 16)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    other = clips.clone()
    other[0, 1] = torch.randn(1, 4, 16, 16) * 100  # change only the masked slots
    other[1, 2] = float("nan")
    with torch.no_grad():
        a, b = fusion(clips, mask), fusion(other, mask)
    assert a.shape == (2, fusion.out_dim)
    torch.testing.assert_close(a, b)


def test_a_single_present_view_gives_that_views_embedding() -> None:
    net = _small()
    fusion = MultiViewFusion(backbones=net, n_views=2, pooling="mean", view_embedding=False)
    clips = torch.randn(3, 2, 1, 4, 16, 16)
    mask = torch.tensor([[True, False], [False, True], [True, True]])
    with torch.no_grad():
        out = fusion.eval()(clips, mask)
        torch.testing.assert_close(out[0], net(clips[0:1, 0])[0])
        torch.testing.assert_close(out[1], net(clips[1:2, 1])[0])
        both = net(clips[2, :])
        torch.testing.assert_close(out[2], both.mean(dim=0), rtol=1e-5, atol=1e-6)


def test_view_weights_ignore_missing_views() -> None:
    fusion = MultiViewFusion(backbones=_small(), n_views=3, pooling="attention")
    feats = torch.randn(2, 3, fusion.out_dim)
    mask = torch.tensor([[True, False, True], [False, True, False]])
    w = fusion.view_weights(feats, mask)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(2))
    assert (w[~mask] == 0).all()
    assert torch.equal(
        masked_softmax(torch.zeros(1, 2), torch.tensor([[False, True]])), torch.tensor([[0.0, 1.0]])
    )


def test_a_study_without_any_view_is_an_error() -> None:
    fusion = MultiViewFusion(backbones=_small(), n_views=2)
    with pytest.raises(ModelError, match="no view present"):
        fusion(torch.randn(2, 2, 1, 4, 16, 16), torch.tensor([[True, False], [False, False]]))
    with pytest.raises(ModelError, match=r"\[B, 2, C, T, H, W\]"):
        fusion(torch.randn(2, 3, 1, 4, 16, 16), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ModelError, match="one backbone per view"):
        MultiViewFusion(backbones=[_small()], n_views=2)


def _tabular() -> TabularFusion:
    torch.manual_seed(0)
    # F = 5: age (0), sex one-hot (1, 2), bmi (3), site one-hot... of 1 category (4)
    return TabularFusion(image_dim=8, n_features=5, categorical=[(1, 2), (4, 1)]).eval()


def test_missing_tabular_values_are_masked_not_used() -> None:
    fusion = _tabular()
    image = torch.randn(2, 8)
    tab = torch.tensor([[0.3, 1.0, 0.0, -1.0, 1.0], [0.3, 0.0, 1.0, -1.0, 1.0]])
    missing = torch.zeros(2, 5, dtype=torch.bool)
    missing[:, 0] = True  # age missing: its stored value must not matter
    changed = tab.clone()
    changed[:, 0] = 123.0
    with torch.no_grad():
        torch.testing.assert_close(fusion(image, tab, missing), fusion(image, changed, missing))
        nan_tab = tab.clone()
        nan_tab[:, 0] = float("nan")  # NaN counts as missing
        torch.testing.assert_close(fusion(image, tab, missing), fusion(image, nan_tab))
        # a missing category and an unseen one (all-zero one-hot) both use the "missing" row
        miss_sex = missing.clone()
        miss_sex[:, 1:3] = True
        unseen = tab.clone()
        unseen[:, 1:3] = 0.0
        torch.testing.assert_close(fusion(image, tab, miss_sex), fusion(image, unseen, missing))
        codes = fusion.category_codes(tab, missing)
    assert codes[0].tolist() == [0, 1] and codes[1].tolist() == [0, 0]


def test_tabular_shapes_and_layout_are_validated() -> None:
    fusion = _tabular()
    with pytest.raises(ModelError, match=r"tabular input must be \[B, 5\]"):
        fusion(torch.randn(2, 8), torch.randn(2, 4))
    with pytest.raises(ModelError, match=r"image embedding must be \[B, 8\]"):
        fusion(torch.randn(2, 7), torch.randn(2, 5))
    with pytest.raises(ModelError, match="disjoint"):
        TabularFusion(image_dim=8, n_features=3, categorical=[(0, 2), (1, 2)])


class _Head(nn.Module):
    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"z": features.sum(dim=1)}


def test_hidimnet_single_multiview_and_tabular_paths() -> None:
    spec = backbone_spec("small3d")
    net = HidimNet(head=_Head(), backbone=_small(), input_spec=spec).eval()
    assert net.gradcam_layer == "backbone.features"
    out = net(torch.randn(2, 1, 4, 16, 16))
    assert out["z"].shape == (2,)
    with pytest.raises(ModelError, match=r"needs T >= 2 and H, W >= 16"):
        net(torch.randn(2, 1, 4, 8, 8))
    with pytest.raises(ModelError, match="single-view"):
        net(torch.randn(2, 2, 1, 4, 16, 16))
    mv = HidimNet(
        head=_Head(),
        multiview=MultiViewFusion(backbones=_small(), n_views=2),
        tabular=TabularFusion(image_dim=16, n_features=5, categorical=[(1, 2)]),
        input_spec=spec,
    ).eval()
    assert mv.gradcam_layer == "multiview.backbone.features"
    clips = torch.randn(2, 2, 1, 4, 16, 16)
    mask = torch.tensor([[True, False], [True, True]])
    tab = torch.randn(2, 5)
    assert mv(clips, mask, tab)["z"].shape == (2,)
    with pytest.raises(ModelError, match="pass tabular="):
        mv(clips, mask)
    with pytest.raises(ModelError, match="multi-view"):
        mv(torch.randn(2, 1, 4, 16, 16))
    with pytest.raises(ModelError, match="exactly one of"):
        HidimNet(head=_Head())
