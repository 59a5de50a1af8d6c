"""Serial occlusion: a region the model relies on gives a significant drop, others none."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hidim.errors import ExplainError
from hidim.explain.occlusion import (
    Region,
    estimate_sector,
    grid_cell_mask,
    grid_occlusion_map,
    mask_region,
    occlude,
    occlusion_scores,
    occlusion_test,
    outside_sector_region,
)


def _items(toys, n: int = 40, seed: int = 3):
    x, y = toys.local_data(n, seed)
    return [{"clip": x[i], "target": float(y[i]), "series_key": f"s{i:02d}"} for i in range(n)]


def _square(r0: int, r1: int, c0: int, c1: int, h: int = 12, w: int = 12) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[r0:r1, c0:c1] = True
    return m


def test_occluding_the_evidence_region_drops_auroc_significantly(toys, trained_local) -> None:
    items = _items(toys)
    regions = [
        Region("evidence_corner", lambda it: _square(0, 3, 0, 3), anatomical=False),
        Region("far_corner", lambda it: _square(9, 12, 9, 12)),
    ]
    prob = torch.nn.Sequential(trained_local, torch.nn.Sigmoid())
    res = occlusion_test(prob, items, regions, task="binary", n_boot=300, seed=1)
    assert list(res.table["metric"].unique()) == ["auroc", "brier"]  # probabilities → + Brier
    table = res.table[res.table["metric"] == "auroc"].set_index("region")
    ev, far = table.loc["evidence_corner"], table.loc["far_corner"]
    assert ev["original"] > 0.95
    assert ev["drop"] > 0.3 and ev["drop_lower"] > 0 and ev["significant"]
    assert ev["p_value"] < 0.01
    assert abs(far["drop"]) < 0.05 and not far["significant"]
    assert far["drop_lower"] <= 0 <= far["drop_upper"]
    assert ev["masked_fraction"] == pytest.approx(9 / 144)
    assert list(res.scores.columns[:2]) == ["series_key", "target"]
    assert ev["anatomical"] is False  # carried for the report's shortcut flag


def test_brier_catches_reliance_that_auroc_cannot_see() -> None:
    """Positives carry anatomy evidence *and* a marker. Masking the marker drops their
    probability from 0.9 to 0.35, still above every negative: AUROC is blind, Brier is not."""

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            anatomy = x[:, 0, :, 4:8, 4:8].mean(dim=(1, 2, 3))
            marker = x[:, 0, :, 0:2, 0:2].mean(dim=(1, 2, 3))
            return self.w * (0.05 + 0.3 * anatomy + 0.55 * marker)

    rng = np.random.default_rng(0)
    items = []
    for i in range(40):
        y = i % 2
        clip = torch.zeros(1, 2, 12, 12)
        clip[:, :, 4:8, 4:8] = y + 0.01 * rng.random()
        clip[:, :, 0:2, 0:2] = float(y)
        items.append({"clip": clip, "target": float(y)})
    marker = Region("marker", lambda it: _square(0, 2, 0, 2), anatomical=False)
    table = occlusion_test(Model(), items, [marker], task="binary", fill="zero", n_boot=200).table
    by = table.set_index("metric")
    assert by.loc["auroc", "drop"] == pytest.approx(0.0) and not by.loc["auroc", "significant"]
    assert by.loc["brier", "drop"] > 0.1 and by.loc["brier", "significant"]


def test_grid_map_peaks_at_the_cell_the_model_reads(toys, trained_local) -> None:
    drops, table = grid_occlusion_map(
        trained_local, _items(toys, 16), task="binary", grid=(3, 3), n_boot=50
    )
    assert drops.shape == (3, 3)
    assert np.unravel_index(np.nanargmax(drops), drops.shape) == (0, 0)
    assert len(table) == 9


def test_survival_and_regression_metrics(toys, corner) -> None:
    """A risk that is the corner's brightness: occluding the corner destroys the C-index and
    raises the MAE; the same metric machinery serves each task."""
    model = toys.RegionModel(corner)
    rng = np.random.default_rng(0)
    items = []
    for _ in range(30):
        clip = torch.rand(1, 4, 12, 12) * 0.2
        level = rng.uniform(0, 1)
        clip[:, :, 0:3, 0:3] += level
        items.append(
            {"clip": clip, "time": float(10 - 9 * level + rng.uniform(0, 0.5)), "event": True,
             "target": float(model(clip[None]).item())}
        )  # fmt: skip
    region = [Region("corner", lambda it: corner.numpy().astype(bool))]
    surv = occlusion_test(model, items, region, task="survival", n_boot=100).table.iloc[0]
    assert surv["metric"] == "c_index" and surv["original"] > 0.9 and surv["significant"]
    reg = occlusion_test(model, items, region, task="regression", n_boot=100).table.iloc[0]
    assert reg["metric"] == "mae" and reg["original"] == pytest.approx(0, abs=1e-4)
    assert reg["drop"] > 0 and reg["significant"]  # positive drop = worse (higher MAE)


def test_occlude_fills() -> None:
    clip = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    m = np.zeros((4, 4), bool)
    m[0, 0] = True
    out = occlude(clip, m, fill="zero")
    assert (out[:, :, 0, 0] == 0).all() and torch.equal(out[:, :, 1:], clip[:, :, 1:])
    out = occlude(clip, m, fill="mean")
    torch.testing.assert_close(out[:, 0, 0, 0], clip.mean(dim=(1, 2, 3)))
    frames = np.array([False, True, False])
    out = occlude(clip, frames, fill="temporal_mean")
    torch.testing.assert_close(out[:, 1], clip.mean(dim=1))
    assert torch.equal(out[:, 0], clip[:, 0])
    blurred = occlude(clip, np.ones((4, 4), bool), fill="blur")
    assert blurred.std() < clip.std()
    with pytest.raises(ExplainError, match="unknown fill"):
        occlude(clip, m, fill="ink")
    with pytest.raises(ExplainError, match="does not fit"):
        occlude(clip, np.ones((5, 5), bool))


def test_estimated_sector_excludes_static_text_and_background() -> None:
    rng = np.random.default_rng(0)
    h, w = 40, 60
    yy, xx = np.mgrid[:h, :w]
    angle = np.degrees(np.arctan2(xx - w / 2, yy + 1e-9))
    sector = (np.hypot(yy, xx - w / 2) < 38) & (np.abs(angle) < 40)
    clip = np.zeros((1, 8, h, w), np.float32)
    clip[:, :, sector] = rng.uniform(0.2, 1.0, (1, 8, int(sector.sum())))
    clip[:, :, 0:4, 0:12] = 1.0  # burned-in text: bright but static
    est = estimate_sector(clip)
    agreement = (est == sector).mean()
    assert agreement > 0.97
    assert not est[0:4, 0:12].any()
    region = outside_sector_region()
    outside = region.mask_fn({"clip": torch.from_numpy(clip), "series_key": "x"})
    assert outside[0:4, 0:12].all() and not region.anatomical


def test_explicit_masks_and_absent_regions(toys, corner) -> None:
    model = toys.RegionModel(corner)
    items = [{"clip": torch.rand(1, 4, 12, 12), "series_key": k, "target": float(i % 2)}
             for i, k in enumerate(["a", "b"])]  # fmt: skip
    region = mask_region("lv", {"a": _square(0, 3, 0, 3)})
    scores = occlusion_scores(model, items, [region])
    assert scores.loc[0, "masked__lv"] > 0 and scores.loc[1, "masked__lv"] == 0
    assert scores.loc[1, "lv"] == pytest.approx(scores.loc[1, "original"])  # absent: unchanged


def test_grid_cells_tile_the_frame() -> None:
    cells = [grid_cell_mask((10, 13), (3, 4), (r, c)) for r in range(3) for c in range(4)]
    assert (np.sum(cells, axis=0) == 1).all()
    with pytest.raises(ExplainError, match="outside a 3x4 grid"):
        grid_cell_mask((10, 13), (3, 4), (3, 0))


def test_occlusion_errors(toys, corner) -> None:
    model = toys.RegionModel(corner)
    r = Region("x", lambda it: None)
    with pytest.raises(ExplainError, match="unique"):
        occlusion_scores(model, [], [r, r])
    with pytest.raises(ExplainError, match="no items"):
        occlusion_scores(model, [], [r])
    with pytest.raises(ExplainError, match="unknown task"):
        occlusion_test(model, [], [r], task="ranking")
    scores = occlusion_scores(model, [{"clip": torch.rand(1, 4, 12, 12)}], [r])
    from hidim.explain.occlusion import performance_drop

    with pytest.raises(ExplainError, match="lack label columns \\['target'\\]"):
        performance_drop(scores, [r], task="binary")
