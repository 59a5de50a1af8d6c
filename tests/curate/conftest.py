"""Fixtures for curation tests: corpora of real pydicom / pydicom-data files in tmp_path.

The files are copied (never into the repo). pydicom's test files are not flagged as
de-identified, so ``deid_copy`` writes copies with PatientIdentityRemoved=YES, as
``hidim deid`` would; the refusal test uses the originals.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest


def _deid_copy(src: Path, dst: Path) -> Path:
    """Copy a DICOM file, setting PatientIdentityRemoved=YES (pixel data untouched)."""
    ds = pydicom.dcmread(src)
    ds.PatientIdentityRemoved = "YES"
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst, enforce_file_format=False)
    return dst


@pytest.fixture(scope="session")
def deid_copy() -> Callable[[Path, Path], Path]:
    """``deid_copy(src, dst)``: copy a DICOM file with PatientIdentityRemoved=YES."""
    return _deid_copy


@pytest.fixture
def corpus(
    tmp_path: Path, testdata: Callable[[str], Path], testdata_dir: Callable[[str], Path]
) -> Path:
    """A small mixed corpus: CT volume (5 slices), CT slice, MR multi-frame, US cine, bad files.

    Good units: CT5N volume, CT_small, emri_small (10 frames), examples_ybr_color (US, 30
    frames at 30 fps). Bad: MR_truncated (failed), empty file (failed), text (skipped),
    RT plan (skipped).
    """
    root = tmp_path / "corpus"
    for name in (
        "CT_small.dcm",
        "emri_small.dcm",
        "examples_ybr_color.dcm",
        "MR_truncated.dcm",
        "JPEG2000-embedded-sequence-delimiter.dcm",
    ):
        _deid_copy(testdata(name), root / name)
    for f in sorted((testdata_dir("dicomdirtests") / "98892001" / "CT5N").iterdir()):
        _deid_copy(f, root / "ct5n" / f.name)
    shutil.copy(testdata("rtplan.dcm"), root / "plan.dcm")
    (root / "empty.dcm").write_bytes(b"")
    (root / "readme.txt").write_text("not dicom\n")
    return root


@pytest.fixture(scope="session")
def _curated_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import pydicom.data as pdata
    from pydicom.data import get_testdata_file

    from hidim.curate import curate

    root = tmp_path_factory.mktemp("curated")
    src = root / "in"
    for name in ("CT_small.dcm", "emri_small.dcm", "examples_ybr_color.dcm"):
        _deid_copy(Path(str(get_testdata_file(name, download=False))), src / name)
    ct5n = Path(pdata.__file__).parent / "test_files" / "dicomdirtests" / "98892001" / "CT5N"
    for f in sorted(ct5n.iterdir()):
        _deid_copy(f, src / "ct5n" / f.name)
    curate(src, root / "store", fps=15, show_progress=False)
    return root / "store"


@pytest.fixture
def curated_store(_curated_once: Path, tmp_path: Path) -> Path:
    """A fresh copy of a store curated from CT5N, CT_small, emri_small and a US cine (fps 15)."""
    dst = tmp_path / "store"
    shutil.copytree(_curated_once, dst)
    return dst
