"""The pixels are what truth.json says: LV area ↔ EF, phases, text, sector, marker, regions.

Measured from the DICOM files with pydicom and scipy, never from the renderer's internals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from hidim.errors import PhantomError
from hidim.phantom import PhantomConfig, ef_from_area_ratio, generate, load_truth, region_mask

DARK = 85  # mid-grey between blood (~0-20) and myocardium/tissue (>140) after log compression


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("phantom") / "ph"
    cfg = PhantomConfig(
        patients=10,
        seed=5,
        effects={
            "shortcut": True,
            "shortcut_site": "northgate",
            "shortcut_p_positive": 1.0,
            "shortcut_p_negative": 0.5,
        },
    )
    generate(out, cfg)
    return out, load_truth(out)


def _frames(out: Path, entry: dict) -> np.ndarray:
    return pydicom.dcmread(out / entry["file"]).pixel_array


def _dark_area(frame: np.ndarray, mask: np.ndarray) -> int:
    return int((ndimage.median_filter(frame, 3)[mask] < DARK).sum())


def test_measured_lv_area_ratio_gives_the_true_ef(phantom) -> None:
    out, truth = phantom
    errors = []
    for entry in truth.data["series"].values():
        frames = _frames(out, entry)
        roi = region_mask(entry, "lv_cavity")  # the largest cavity over the cycle
        ed = np.mean([_dark_area(frames[f], roi) for f in entry["ed_frames"]])
        es = np.mean([_dark_area(frames[f], roi) for f in entry["es_frames"]])
        errors.append(ef_from_area_ratio(es / ed) - entry["ef_true"])
        f0 = entry["ed_frames"][0]
        assert _dark_area(frames[f0], roi) == pytest.approx(entry["lv_area_px"][f0], rel=0.05)
    assert np.max(np.abs(errors)) < 6.0
    assert abs(np.mean(errors)) < 2.5


def test_phase_labels_follow_the_lv_area(phantom) -> None:
    out, truth = phantom
    for entry in list(truth.data["series"].values())[:6]:
        frames = _frames(out, entry)
        roi = region_mask(entry, "lv_cavity")
        measured = np.array([_dark_area(f, roi) for f in frames], dtype=float)
        area = np.asarray(entry["lv_area_px"])
        phase = np.asarray(entry["phase"])
        sys = (phase[:-1] == "systole") & (phase[1:] == "systole")
        dia = (phase[:-1] == "diastole") & (phase[1:] == "diastole")
        assert (np.diff(area)[sys] <= 1e-6).all() and (np.diff(area)[dia] >= -1e-6).all()
        assert np.corrcoef(measured, area)[0, 1] > 0.95  # the pixels follow the truth curve
        for es in entry["es_frames"]:
            assert measured[es] < measured[entry["ed_frames"]].min()


def test_fps_in_dicom_equals_truth(phantom) -> None:
    out, truth = phantom
    for entry in truth.data["series"].values():
        ds = pydicom.dcmread(out / entry["file"], stop_before_pixels=True)
        assert int(ds.CineRate) == entry["fps"]
        assert float(ds.FrameTime) == pytest.approx(1000.0 / entry["fps"], abs=1e-3)
        assert int(ds.NumberOfFrames) == entry["n_frames"] == len(entry["phase"])
        assert int(ds.HeartRate) == round(entry["heart_rate_bpm"])


def test_text_lies_outside_the_sector_and_the_us_region(phantom) -> None:
    out, truth = phantom
    for entry in truth.data["series"].values():
        frames = _frames(out, entry)
        sector = region_mask(entry, "sector")
        text = region_mask(entry, "text")
        assert text.any() and not (text & sector).any()
        x0, y0, x1, y1 = entry["us_region"]
        rows = np.nonzero(text.any(axis=1))[0]
        assert rows.max() < y0  # every text row is above the ultrasound region
        header = frames[:, : entry["regions"]["header"]["box"][2]]
        assert (header == header[0]).all()  # burned-in text is static
        outside = region_mask(entry, "outside_sector") & ~region_mask(entry, "header")
        assert (frames[:, outside] == 0).all()  # nothing else is painted outside the sector
        painted = [b["text"] for b in entry["burned_in_text"]]
        patient = truth.patient(entry["patient_id"])
        assert len(painted) == 3 and patient["study_uid"] == entry["study_uid"]


def test_shortcut_marker_only_where_declared(phantom) -> None:
    out, truth = phantom
    seen = {True: 0, False: 0}
    for entry in truth.data["series"].values():
        frames = _frames(out, entry)
        declared = entry["shortcut_marker"]
        seen[declared] += 1
        assert declared == truth.patient(entry["patient_id"])["shortcut"]
        if declared:
            box = region_mask(entry, "shortcut_marker")
            assert (frames[:, box] == 255).all()
            assert (box & region_mask(entry, "sector")).sum() == box.sum()  # inside the sector
            assert not (box & region_mask(entry, "lv_cavity")).any()
            assert not (box & region_mask(entry, "myocardium")).any()
        else:
            assert "shortcut_marker" not in entry["regions"]
            with pytest.raises(PhantomError, match="no region 'shortcut_marker'"):
                region_mask(entry, "shortcut_marker")
            saturated = (frames[:, region_mask(entry, "sector")] == 255).all(axis=0)
            assert not saturated.any()
    assert seen[True] and seen[False]


def test_region_masks_scale_to_resized_clips(phantom) -> None:
    _, truth = phantom
    entry = next(iter(truth.data["series"].values()))
    native = region_mask(entry, "lv_cavity")
    half = region_mask(entry, "lv_cavity", shape=(native.shape[0] // 2, native.shape[1] // 2))
    assert half.sum() == pytest.approx(native.sum() / 4, rel=0.1)
    es = entry["es_frames"][0]
    assert region_mask(entry, "lv_cavity", frame=es).sum() < native.sum()
    assert region_mask(entry, "myocardium", frame=es).sum() > 0
    with pytest.raises(PhantomError, match="frame must be in 0.."):
        region_mask(entry, "lv_cavity", frame=10_000)


def test_site_shift_sets_fps_gain_and_noise(tmp_path: Path) -> None:
    cfg = PhantomConfig(patients=9, seed=8, views=("A4C",), effects={"site_shift": True})
    generate(tmp_path / "ph", cfg)
    truth = load_truth(tmp_path / "ph")
    tissue_level: dict[str, list[float]] = {}
    for entry in truth.data["series"].values():
        site = cfg.site(entry["site"])
        assert entry["fps"] == site.fps and entry["gain"] == site.gain
        frames = _frames(tmp_path / "ph", entry)
        tissue = region_mask(entry, "sector") & ~region_mask(entry, "lv_cavity")
        tissue &= ~region_mask(entry, "myocardium") & ~region_mask(entry, "rv_cavity")
        tissue_level.setdefault(site.name, []).append(float(np.median(frames[0][tissue])))
    means = {k: np.mean(v) for k, v in tissue_level.items()}
    assert means.keys() == {"northgate", "riverside", "hillcrest"}
    assert means["riverside"] > means["northgate"] > means["hillcrest"]  # gain 1.35 / 1.0 / 0.75
    assert len({cfg.site(s).fps for s in means}) == len(means)
