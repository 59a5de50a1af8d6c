"""The full data path on the phantom, through the command line as a user runs it:

hidim phantom → hidim deid → hidim curate → hidim labels import → hidim inspect.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pydicom
import pytest
from typer.testing import CliRunner

from hidim.cli.main import app


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_phantom_deid_curate_labels_inspect(tmp_path: Path, need_tesseract: None) -> None:
    phantom = tmp_path / "phantom"
    deid = tmp_path / "release"
    secure = tmp_path / "secure"
    store = tmp_path / "store"
    secure.mkdir()

    _run(["phantom", str(phantom), "--patients", "6", "--seed", "3"])
    labels_csv = phantom / "labels.csv"
    originals = pd.read_csv(labels_csv)
    names = [
        str(pydicom.dcmread(p, stop_before_pixels=True).PatientName)
        for p in sorted((phantom / "dicom").rglob("*.dcm"))
    ]

    _run([
        "deid", str(phantom / "dicom"), str(deid),
        "--key", str(secure / "key.bin"), "--create-key",
        "--reid-table", str(secure / "reid.csv"),
        "--quarantine", str(secure / "quarantine"),
    ])
    released = sorted(deid.rglob("*.dcm"))
    assert len(released) == len(names) > 0
    blob = b"".join(p.read_bytes() for p in released)
    for pid in originals["patient_id"].astype(str):
        assert pid.encode() not in blob
    for name in names:
        for part in name.split("^"):
            if len(part) > 3:
                assert part.encode() not in blob
    for p in released:
        assert not any(pid in str(p) for pid in originals["patient_id"].astype(str))
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        assert ds.PatientIdentityRemoved == "YES"

    # The burned-in name is readable in the phantom's pixels and gone from the release.
    import pytesseract

    def ocr_first_frame(path: Path) -> str:
        from PIL import Image

        frame = Image.fromarray(pydicom.dcmread(path).pixel_array[0].astype("uint8"))
        big = frame.resize((frame.width * 4, frame.height * 4), Image.Resampling.LANCZOS)
        return pytesseract.image_to_string(big).upper()

    source = sorted((phantom / "dicom").rglob("*.dcm"))[0]
    surname = str(pydicom.dcmread(source, stop_before_pixels=True).PatientName).split("^")[0]
    assert surname.upper() in ocr_first_frame(source)
    assert all(surname.upper() not in ocr_first_frame(p) for p in released)

    _run(["curate", str(deid), str(store), "--fps", "30"])
    manifest = pd.read_parquet(store / "manifest.parquet")
    assert len(manifest) == len(released)
    assert set(manifest["view"].dropna()) == {"A4C", "PLAX"}
    assert (manifest["fps"] == 30).all()
    assert manifest["deidentified"].all()
    per_patient = manifest.groupby("patient_key")["split"].nunique()
    assert (per_patient == 1).all()

    _run(["labels", "import", str(store), str(labels_csv), "--id-map", str(secure / "reid.csv")])
    labels = pd.read_parquet(store / "labels.parquet")
    assert len(labels) == len(originals)
    assert set(labels["patient_key"]) == set(manifest["patient_key"])
    assert not set(labels["patient_key"]) & set(originals["patient_id"].astype(str))

    out = _run(["inspect", str(store)])
    assert "A4C" in out and "PLAX" in out
