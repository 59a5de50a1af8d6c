"""Temporal-phase importance: ED/ES windows matter to an EF-like model, nothing matters to
a model that ignores time; phase estimation from the LV-area change."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hidim.errors import ExplainError
from hidim.explain.temporal import (
    estimate_phases,
    phase_window_masks,
    phases_from_labels,
    prediction_shift,
    sliding_window_importance,
    temporal_occlusion_test,
)

T = 32
PERIOD = 16.0


def _cohort(toys, n: int = 24):
    """Clips whose 'EF' (area swing) is the regression target; random phase per clip."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        ef = float(rng.uniform(0.2, 0.6))
        clip, labels = toys.pulsating_clip(T, period=PERIOD, ef=ef, phase=float(rng.uniform()),
                                           size=16, seed=i)  # fmt: skip
        items.append({"clip": clip, "target": ef, "series_key": f"s{i}", "phases": labels})
    return items


def _truth(item):
    return phases_from_labels(item["phases"])


def test_phases_from_labels_marks_ed_and_es() -> None:
    labels = ["diastole", "systole", "systole", "diastole", "diastole", "systole"]
    ph = phases_from_labels(labels)
    assert ph.ed == (1, 5) and ph.es == (3,)
    with pytest.raises(ExplainError, match="systole"):
        phases_from_labels(["filling"])


def test_window_masks_are_equal_width_and_disjoint() -> None:
    labels = np.array(["systole"] * 6 + ["diastole"] * 6 + ["systole"] * 6 + ["diastole"] * 6)
    masks = phase_window_masks(phases_from_labels(labels), width=2)
    for name in ("end_diastole", "end_systole", "mid_systole", "mid_diastole"):
        assert masks[name].any(), name
    for name in ("end_diastole", "end_systole", "mid_systole", "mid_diastole"):
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, masks[name].astype(int), 0])))[::2]
        assert (runs == 2).all(), (name, runs)  # every window is `width` frames
    assert masks["mid_systole"].sum() == masks["end_systole"].sum() == 4
    windows = ("end_diastole", "end_systole", "mid_systole", "mid_diastole")
    for i, a in enumerate(windows):
        for b in windows[i + 1 :]:
            assert not (masks[a] & masks[b]).any(), (a, b)
    assert masks["systole"].sum() == 12


def test_ef_model_depends_on_end_diastole_and_end_systole_windows(toys) -> None:
    items = _cohort(toys)
    model = toys.AreaRangeModel()
    # Calibrate the score to the target scale so the MAE is meaningful.
    with torch.no_grad():
        raw = torch.stack([model(it["clip"][None]) for it in items]).squeeze()
        target = torch.tensor([it["target"] for it in items])
        model.scale.copy_((raw * target).sum() / (raw * raw).sum())
    res = temporal_occlusion_test(model, items, _truth, task="regression", width=4, n_boot=200)
    drop = res.table.set_index("region")["drop"]
    ends = min(drop["end_diastole"], drop["end_systole"])
    mids = max(drop["mid_systole"], drop["mid_diastole"])
    # The area curve is flat-topped at ED (pixel quantisation), so ED matters less than ES,
    # but both end windows matter far more than the mid-phase controls, which do not matter.
    assert ends > 5 * max(mids, 1e-3), drop.to_dict()
    assert abs(mids) < 1e-3
    table = res.table.set_index("region")
    assert table.loc["end_systole", "significant"] and table.loc["end_diastole", "significant"]
    shift = prediction_shift(res.scores, list(drop.index), n_boot=200)
    assert shift["contrast"]["lower"] > 0  # predictions move more at ED/ES than mid-phase
    assert shift["shift"]["mid_systole"]["value"] < 1e-3


def test_model_that_ignores_time_windows_has_no_temporal_drop(toys) -> None:
    class StaticCorner(nn.Module):
        """Reads a corner that is the same in every frame: no time window carries anything."""

        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, x):
            return self.w * x[:, :, :, 0:2, 0:2].mean(dim=(1, 2, 3, 4))

    items = _cohort(toys, 16)
    for it in items:
        it["clip"][:, :, 0:2, 0:2] = it["target"]
    res = temporal_occlusion_test(StaticCorner(), items, _truth, task="regression", n_boot=100)
    assert len(res.table) == 4
    assert np.allclose(res.table["drop"], 0, atol=1e-6)
    assert not res.table["significant"].any()
    assert (res.table["masked_fraction"] > 0).all()  # the windows were occluded
    shift = prediction_shift(res.scores, list(res.table["region"]), n_boot=100)
    assert shift["contrast"]["value"] == pytest.approx(0, abs=1e-6)


def test_sliding_window_curve_marks_the_frames_the_model_reads(toys) -> None:
    class LastFrames(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, x):
            return self.w * x[:, :, -4:].mean(dim=(1, 2, 3, 4))

    items = _cohort(toys, 12)
    for it in items:
        it["target"] = float(it["clip"][:, -4:].mean())
    table = sliding_window_importance(LastFrames(), items, task="regression", n_frames=T,
                                      window=4, n_boot=50)  # fmt: skip
    assert table.iloc[-1]["drop"] > 0 and table.iloc[-1]["stop"] == T
    assert np.allclose(table.iloc[:-1]["drop"], 0, atol=1e-6)


def test_estimated_phases_match_the_truth_of_a_pulsating_cavity(toys) -> None:
    agreement = []
    for seed in range(5):
        clip, labels = toys.pulsating_clip(T, period=PERIOD, ef=0.5, phase=0.1 * seed, seed=seed)
        est = estimate_phases(clip)
        assert est.source == "estimated" and est.signal is not None
        agreement.append((est.phase == labels).mean())
    assert np.mean(agreement) > 0.85, agreement


def test_estimate_phases_from_an_lv_mask_and_errors(toys) -> None:
    clip, labels = toys.pulsating_clip(T, period=PERIOD, ef=0.5, size=16)
    lv_mask = clip[0].numpy() < 0.4
    est = estimate_phases(clip, lv_mask=lv_mask, smooth_frames=1)
    assert (est.phase == labels).mean() > 0.85
    with pytest.raises(ExplainError, match="lv_mask must be"):
        estimate_phases(clip, lv_mask=lv_mask[:, :5])
    with pytest.raises(ExplainError, match="T>=3"):
        estimate_phases(clip[:, :2])
