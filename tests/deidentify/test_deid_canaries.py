"""Canaries planted everywhere PS3.15 names must not survive anywhere in the outputs."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_charset_files

from hidim.deidentify import DeidOptions, PixelPolicy, deidentify
from hidim.deidentify.audit import read_reid_table

CANARY = "ZQXCANARY"  # the value conftest.plant_canaries uses


def _all_bytes(folder: Path) -> bytes:
    return b"".join(
        p.read_bytes() + str(p).encode() for p in sorted(folder.rglob("*")) if p.is_file()
    )


def _needles(text: str) -> list[bytes]:
    return [text.encode(enc) for enc in ("ascii", "utf-16-le", "utf-16-be")]


@pytest.fixture
def run(tmp_path, canary_files, key_file, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "release"
    reid = tmp_path / "private" / "reid.csv"
    summary = deidentify(
        [canary_files["a"].parent],
        out,
        key_file=key_file,
        reid_table=reid,
        options=DeidOptions(pixels=PixelPolicy(mode="none")),
    )
    captured = capsys.readouterr()
    return summary, out, reid, captured.out + captured.err + caplog.text


def test_deid_no_canary_survives_anywhere(run, canary_files) -> None:
    summary, out, reid, logs = run
    assert summary.count("ok") == len(canary_files)
    blob = _all_bytes(out)
    for needle in _needles(CANARY):
        assert needle not in blob
        assert needle.decode("latin-1") not in logs
    originals = {dcmread(p).SOPInstanceUID for p in canary_files.values()}
    originals |= {dcmread(p).StudyInstanceUID for p in canary_files.values()}
    for uid in originals:
        assert uid.encode() not in blob
    # The re-identification table (outside OUT) has the mappings.
    table = read_reid_table(reid)
    assert any(k == "patient_id" and CANARY in o for k, o in table)


def test_deid_outputs_are_marked_and_consistent(run, canary_files) -> None:
    summary, out, _reid, _logs = run
    by_input = {}
    for path in out.rglob("*.dcm"):
        ds = dcmread(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert path.name == f"{ds.SOPInstanceUID}.dcm"
        assert path.parent.name == ds.SeriesInstanceUID
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
        assert {"113100", "113107"} <= codes
        assert not any(elem.tag.is_private for elem in ds.iterall())
        assert not any(elem.tag.group & 0xFF00 in (0x5000, 0x6000) for elem in ds.iterall())
        by_input[ds.SOPInstanceUID] = ds
    a = dcmread(canary_files["a"])
    b = next(d for d in by_input.values() if "ReferencedImageSequence" in d)
    new_a = next(
        d for d in by_input.values() if d.SOPInstanceUID != b.SOPInstanceUID and d.StudyTime
    )
    ref = b.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert ref in by_input, "a referenced UID maps to the referenced object's new UID"
    # Same patient: same pseudonym, same date shift → the interval between studies is kept.
    assert b.PatientID == by_input[ref].PatientID

    def when(ds):
        return datetime.strptime(ds.StudyDate + ds.StudyTime[:6], "%Y%m%d%H%M%S")

    orig_b = dcmread(canary_files["b"])
    assert when(b) - when(by_input[ref]) == when(orig_b) - when(a)
    assert new_a is not None


def test_deid_charset_files_lose_their_names(tmp_path, key_file) -> None:
    names = [
        "chrH31.dcm",
        "chrRuss.dcm",
        "chrX1.dcm",
        "chrGreek.dcm",
        "chrArab.dcm",
        "chrJapMulti.dcm",
    ]
    files = [p for p in get_charset_files("chr*.dcm") if Path(p).name in names]
    assert len(files) == len(names)
    out = tmp_path / "out"
    summary = deidentify(
        files, out, key_file=key_file, reid_table=tmp_path / "reid.csv", show_progress=False
    )
    assert summary.count("ok") == len(files)
    blob = _all_bytes(out)
    for path in files:
        ds = dcmread(path)
        for part in str(ds.PatientName).replace("=", "^").split("^"):
            if len(part) >= 3:
                assert part.encode("utf-8") not in blob
                assert ds.PatientName.original_string not in blob
