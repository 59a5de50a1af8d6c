"""Burned-in text that moves from frame to frame in a cine loop is blanked in every frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from hidim.deidentify import DeidOptions, PixelPolicy, deidentify

T, H, W = 8, 160, 256


def _cine(path: Path, frames: np.ndarray, *, modality: str, sop_class: str) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "MRN1"
    ds.Rows, ds.Columns, ds.NumberOfFrames = H, W, len(frames)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = frames.tobytes()
    ds.save_as(path, enforce_file_format=True)


def _draw(base: np.ndarray, text: str, xy: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(base)
    ImageDraw.Draw(img).text(xy, text, fill=255, font=ImageFont.load_default(size=18))
    return np.asarray(img)


def _only_output(out: Path) -> np.ndarray:
    (path,) = list(out.rglob("*.dcm"))
    return dcmread(path).pixel_array


def _run(tmp_path: Path, key_file: Path, path: Path) -> tuple[dict, np.ndarray]:
    out = tmp_path / "out"
    summary = deidentify(
        [path],
        out,
        key_file=key_file,
        reid_table=tmp_path / "reid.csv",
        options=DeidOptions(pixels=PixelPolicy(mode="auto")),
        show_progress=False,
    )
    assert summary.count("ok") == 1, summary.rows
    return summary.rows[0], _only_output(out)


def test_deid_text_moving_below_the_fan_is_not_taken_for_the_sector(tmp_path, key_file) -> None:
    """Ultrasound without regions: a name sliding along under the fan moves too, but it is a
    short band, not image: it is blanked, and the fan stays bit-identical."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    angle, radius = np.arctan2(xx - W / 2, yy + 10), np.hypot(xx - W / 2, yy + 10)
    fan = (np.abs(angle) < 0.5) & (radius > 30) & (radius < 120)
    frames = []
    for t in range(T):
        base = np.full((H, W), 8, np.uint8)
        base[fan] = rng.integers(40, 200, fan.sum())
        frames.append(_draw(base, "DOE JOHN", (4 + 14 * t, 136)))
    clip = np.stack(frames)
    path = tmp_path / "us.dcm"
    _cine(path, clip, modality="US", sop_class="1.2.840.10008.5.1.4.1.1.3.1")
    row, after = _run(tmp_path, key_file, path)
    assert row["sector_source"] == "motion"
    text = clip == 255
    assert not (after[text] == 255).any(), "moving text survived in some frame"
    assert np.array_equal(after[:, fan], clip[:, fan])


def test_deid_text_at_a_new_place_in_every_frame_is_tracked(
    tmp_path, key_file, need_tesseract
) -> None:
    """A clip without a sector (OCR path): a name drawn at a random place in each frame is
    read in a sampled frame and found again in every other frame."""
    rng = np.random.default_rng(1)
    xx = np.arange(W)[None, :]
    frames = []
    for _ in range(T):
        base = (30 + 40 * np.sin(xx / 25.0) ** 2 + rng.integers(0, 12, (H, W))).astype(np.uint8)
        at = (int(rng.integers(2, W - 110)), int(rng.integers(2, H - 24)))
        frames.append(_draw(base, "DOE JOHN", at))
    clip = np.stack(frames)
    path = tmp_path / "xa.dcm"
    _cine(path, clip, modality="XA", sop_class="1.2.840.10008.5.1.4.1.1.12.1")
    row, after = _run(tmp_path, key_file, path)
    assert row["pixel_decision"] == "ocr"
    text = clip == 255
    assert not (after[text] == 255).any(), "moving text survived in some frame"
    assert row["masked_fraction"] < 0.6  # boxes around the text, not the whole frame
