"""ClipDataset / StudyDataset: sampling modes, short clips, labels, tabular, DataLoader workers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from hidim.errors import LabelError, StoreError
from hidim.store import ClipDataset, Store, StudyDataset
from hidim.store.sampling import all_starts, fit_length

SPECS = [
    {"uid": "1.1", "patient": "p1", "study": "s1", "frames": 20, "view": "A4C", "split": "train"},
    {"uid": "1.2", "patient": "p1", "study": "s1", "frames": 5, "view": "PLAX", "split": "train"},
    {"uid": "2.1", "patient": "p2", "study": "s2", "frames": 12, "view": "A4C", "split": "train"},
    {"uid": "3.1", "patient": "p3", "study": "s3", "frames": 9, "view": "A4C", "split": "val"},
]
LABELS = pd.DataFrame(
    {
        "patient_key": ["p1", "p2", "p3", "p1"],
        "study_uid": [None, None, None, "s1"],
        "lvef": [55.0, 30.0, np.nan, 60.0],
        "time": [100.0, 20.0, 50.0, np.nan],
        "event": [False, True, False, None],
        "age": [70.0, np.nan, 40.0, np.nan],
        "sex": ["F", "M", None, None],
    }
)


def _frames(clip: torch.Tensor) -> list[int]:
    # the fixture stores value t (+ k*1000 noise) in frame t
    return [int(v) % 1000 for v in clip[0, :, 0, 0]]


def test_all_starts_cover_every_frame() -> None:
    assert all_starts(20, 8) == [0, 8, 12]
    assert all_starts(16, 8) == [0, 8]
    assert all_starts(5, 8) == [0]
    assert all_starts(10, 4, stride=3) == [0, 3, 6]


def test_fit_length_pads_or_loops() -> None:
    clip = np.arange(3, dtype=np.float32).reshape(1, 3, 1, 1) + 1
    assert fit_length(clip, 5, "pad")[0, :, 0, 0].tolist() == [1, 2, 3, 0, 0]
    assert fit_length(clip, 7, "loop")[0, :, 0, 0].tolist() == [1, 2, 3, 1, 2, 3, 1]


def test_sampling_modes(make_store) -> None:
    root, arrays = make_store(SPECS)
    centre = ClipDataset(root, split="train", clip_frames=4, sampling="centre")
    assert len(centre) == 3
    starts = {item["series_key"]: item["clip_start"] for item in centre}
    by_frames = {k: a.shape[1] for k, a in arrays.items()}
    for key, start in starts.items():
        assert start == max(0, (by_frames[key] - 4) // 2)
    item = centre[0]
    assert item["clip"].shape == (1, 4, 8, 6) and item["clip"].dtype == torch.float32
    assert _frames(item["clip"]) == list(range(item["clip_start"], item["clip_start"] + 4))

    every = ClipDataset(root, split="train", clip_frames=4, sampling="all")
    assert len(every) == sum(len(all_starts(by_frames[k], 4)) for k in starts)
    covered = {}
    for it in every:
        covered.setdefault(it["series_key"], set()).update(_frames(it["clip"]))
    assert all(covered[k] == set(range(by_frames[k])) for k in starts)

    rand = ClipDataset(root, split="train", clip_frames=4, sampling="random", seed=3)
    again = ClipDataset(root, split="train", clip_frames=4, sampling="random", seed=3)
    first = [rand[i]["clip_start"] for i in range(len(rand))]
    assert first == [again[i]["clip_start"] for i in range(len(again))]
    draws = set()
    for epoch in range(8):
        rand.set_epoch(epoch)
        draws.add(rand[0]["clip_start"])
    assert len(draws) > 1  # new starts each epoch


def test_short_series_are_padded_or_looped(make_store) -> None:
    root, _ = make_store(SPECS)
    pad = ClipDataset(root, split="train", clip_frames=8, sampling="centre", views=["PLAX"])
    loop = ClipDataset(
        root, split="train", clip_frames=8, sampling="centre", views=["PLAX"], short="loop"
    )
    assert len(pad) == 1
    assert _frames(pad[0]["clip"])[:5] == [0, 1, 2, 3, 4] and pad[0]["clip"][:, 5:].abs().sum() == 0
    assert _frames(loop[0]["clip"]) == [0, 1, 2, 3, 4, 0, 1, 2]


def test_targets_survival_and_tabular(make_store) -> None:
    root, _ = make_store(SPECS, labels=LABELS)
    with pytest.warns(UserWarning, match="1 series left out"):
        ds = ClipDataset(
            root,
            split=None,
            clip_frames=4,
            sampling="centre",
            targets="lvef",
            tabular=["age", "sex"],
        )
    assert list(ds.excluded["series_key"]) == [
        Store(root).manifest.set_index("key_uid").loc["3.1", "series_key"]
    ]
    items = {it["patient_key"] + it["view"]: it for it in ds}
    # study-level row (s1) wins over the patient-level row for lvef; survival from patient row
    assert float(items["p1A4C"]["target"]) == 60.0 and float(items["p2A4C"]["target"]) == 30.0
    assert float(items["p1A4C"]["time"]) == 100.0 and not bool(items["p1A4C"]["event"])
    assert bool(items["p2A4C"]["event"])
    assert ds.tabular_names == ["age", "sex=F", "sex=M"]
    p2 = items["p2A4C"]
    assert p2["tabular_missing"].tolist() == [True, False, False] and p2["tabular"].tolist()[
        1:
    ] == [0.0, 1.0]
    # z-score statistics come from the training split only (p1: 70, p2: missing → mean 70)
    assert items["p1A4C"]["tabular"][0] == 0.0

    with pytest.raises(LabelError, match="expected target column 'lvf'"):
        ClipDataset(root, split="train", clip_frames=4, targets="lvf")
    with pytest.raises(LabelError, match="expected tabular column 'bmi'"):
        ClipDataset(root, split="train", clip_frames=4, tabular=["bmi"])
    with pytest.raises(LabelError, match="expected split in"):
        ClipDataset(root, split="training", clip_frames=4)
    with pytest.raises(StoreError, match="expected sampling in"):
        ClipDataset(root, split="train", clip_frames=4, sampling="middle")  # type: ignore[arg-type]


def test_dataloader_with_two_workers_matches_in_process(make_store) -> None:
    root, _ = make_store(SPECS, labels=LABELS)
    ds = ClipDataset(
        root, split="train", clip_frames=4, sampling="random", seed=0, targets=["lvef", "time"]
    )
    expected = [ds[i] for i in range(len(ds))]
    batches = list(DataLoader(ds, batch_size=2, num_workers=2, shuffle=False))
    clip = torch.cat([b["clip"] for b in batches])
    assert clip.shape == (3, 1, 4, 8, 6)
    torch.testing.assert_close(clip, torch.stack([e["clip"] for e in expected]))
    assert torch.cat([b["target"] for b in batches]).shape == (3, 2)
    assert sum((b["series_key"] for b in batches), []) == [e["series_key"] for e in expected]


def test_study_dataset_views_and_mask(make_store) -> None:
    root, _ = make_store(SPECS, labels=LABELS)
    ds = StudyDataset(
        root, views=["A4C", "PLAX"], split="train", clip_frames=4, sampling="centre", targets="lvef"
    )
    assert len(ds) == 2
    s1, s2 = ds[0], ds[1]
    assert s1["clips"].shape == (2, 1, 4, 8, 6) and s1["view_mask"].tolist() == [True, True]
    assert s2["view_mask"].tolist() == [True, False] and s2["clips"][1].abs().sum() == 0
    assert s2["series_keys"][1] == "" and float(s1["target"]) == 60.0
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["clips"].shape == (2, 2, 1, 4, 8, 6) and batch["view_mask"].shape == (2, 2)
    with pytest.raises(StoreError, match="use ClipDataset"):
        StudyDataset(root, views=["A4C"], split="train", clip_frames=4, sampling="all")
