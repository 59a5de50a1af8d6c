"""Burned-in PHI: the ultrasound sector stays bit-identical, text outside it is gone."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from pydicom import dcmread

from hidim.deidentify import DeidOptions, PixelPolicy, deidentify
from hidim.deidentify.pixels import display_gray
from hidim.deidentify.sector import regions_mask


def _run(tmp_path: Path, key_file: Path, files: list[Path], **policy) -> tuple:
    inp = tmp_path / "in"
    inp.mkdir(exist_ok=True)
    for f in files:
        shutil.copy(f, inp / f.name)
    out = tmp_path / "out"
    summary = deidentify(
        [inp],
        out,
        key_file=key_file,
        reid_table=tmp_path / "reid.csv",
        options=DeidOptions(pixels=PixelPolicy(**policy)),
        show_progress=False,
    )
    return summary, out


def _only_output(out: Path):
    (path,) = list(out.rglob("*.dcm"))
    return dcmread(path)


def test_deid_sector_from_regions_is_bit_identical(tmp_path, key_file, testdata) -> None:
    src = testdata("gdcm-US-ALOKA-16.dcm")
    summary, out = _run(tmp_path, key_file, [src])
    assert summary.rows[0]["pixel_decision"] == "sector"
    before, after = dcmread(src), _only_output(out)
    mask, n = regions_mask(before, (before.Rows, before.Columns))
    assert n == 2 and mask is not None
    a, b = before.pixel_array, after.pixel_array
    assert np.array_equal(a[mask], b[mask])
    assert not np.array_equal(a[~mask], b[~mask])
    assert after.BurnedInAnnotation == "NO"
    assert "113101" in {i.CodeValue for i in after.DeidentificationMethodCodeSequence}
    assert after.PhotometricInterpretation == "PALETTE COLOR"
    # The header band with "WESTWAY MEDICAL" (rows 0-20) is above the regions: blanked.
    top = display_gray(after, b[None, ..., None])[0, :20]
    assert top.max() == top.min()


def test_deid_cine_sector_from_motion_identical_after_decode(tmp_path, key_file, testdata) -> None:
    src = testdata("examples_ybr_color.dcm")  # JPEG baseline cine, lossy input
    summary, out = _run(tmp_path, key_file, [src])
    row = summary.rows[0]
    assert row["sector_source"] == "regions+motion"
    assert row["transfer_syntax_out"] == "1.2.840.10008.1.2.5"  # RLE: lossless re-encode
    before, after = dcmread(src), _only_output(out)
    assert after.PhotometricInterpretation == "RGB"
    a, b = before.pixel_array, after.pixel_array
    assert a.shape == b.shape
    changed = np.any(a != b, axis=(0, 3))
    kept = ~changed
    assert kept.mean() > 0.2 and changed.mean() > 0.2
    # Every kept pixel is identical in every frame; every changed one is black.
    assert np.array_equal(a[:, kept], b[:, kept])
    assert b[:, changed].max() == 0


def _tesseract_words(ds) -> str:
    import pytesseract
    from PIL import Image

    arr = ds.pixel_array
    frames = arr[None] if arr.ndim == 3 else arr[None, ..., None]
    gray = display_gray(ds, frames)[0, :60, :320]  # the top-left text block
    img = Image.fromarray((255 - gray).astype(np.uint8))
    img = img.resize((img.width * 3, img.height * 3))
    return pytesseract.image_to_string(img, config="--psm 11").upper()


def test_deid_ocr_masks_burned_in_institution(tmp_path, key_file, testdata, need_tesseract) -> None:
    src = testdata("US1_UNCR.dcm")  # "BAPTIST MED CTR" burned in, no ultrasound regions
    before = dcmread(src)
    assert "BAPTIST" in _tesseract_words(before)
    summary, out = _run(tmp_path, key_file, [src])
    assert summary.rows[0]["pixel_decision"] == "ocr"
    words = _tesseract_words(_only_output(out))
    for word in ("BAPTIST", "MED CTR"):
        assert word not in words


def test_deid_unchecked_text_is_quarantined_not_released(tmp_path, key_file, testdata) -> None:
    src = testdata("examples_rgb_color.dcm")  # single-frame US without regions → needs OCR
    summary, out = _run(tmp_path, key_file, [src], ocr=False)
    row = summary.rows[0]
    assert row["status"] == "quarantined" and "OCR" in row["reason"]
    assert not list(out.rglob("*.dcm"))
    assert (summary.quarantine_dir / f"{row['input_id']}.json").is_file()
    assert not summary.all_ok


def test_deid_original_ct_pixels_untouched(tmp_path, key_file, testdata) -> None:
    src = testdata("CT_small.dcm")
    summary, out = _run(tmp_path, key_file, [src])
    assert summary.rows[0]["pixel_decision"] == "not_checked"
    assert _only_output(out).PixelData == dcmread(src).PixelData
