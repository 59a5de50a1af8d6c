"""Scanning real folders: grouping, ordering, DICOMDIR, and a ledger entry for every file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import generate_uid

from hidim.errors import IngestError, UnsupportedSOPClassError
from hidim.ingest import LedgerEntry, ScanResult, SeriesInfo, read_file, read_series, scan


def _link(src: Path, dst: Path) -> Path:
    os.symlink(src, dst)
    return dst


def _ct5n_expected(folder: Path) -> tuple[list[str], float]:
    """Independent oracle: sort by IPP projected on the IOP normal."""
    dist = {}
    for f in folder.iterdir():
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        iop = np.array(ds.ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        dist[f.name] = float(np.dot(np.array(ds.ImagePositionPatient, dtype=float), normal))
    names = sorted(dist, key=dist.get)
    gaps = np.diff([dist[n] for n in names])
    return names, float(np.median(gaps))


def test_ct5n_series_ordered_by_position_with_spacing(testdata_dir):
    folder = testdata_dir("dicomdirtests") / "98892001" / "CT5N"
    result = scan(folder)
    assert isinstance(result, ScanResult)
    assert len(result.series) == 1
    series = result.series[0]
    names, spacing = _ct5n_expected(folder)
    assert [p.name for p in series.files] == names
    assert series.layout == "volume" and series.n_instances == 5
    assert series.slice_spacing_mm == pytest.approx(spacing) == pytest.approx(2.5)
    assert all(e.status == "ok" and e.series_uid == series.series_uid for e in result.ledger)

    arr, meta = read_series(series)
    assert arr.shape == (1, 5, 16, 16)
    stacked = np.concatenate([read_file(p)[0] for p in series.files], axis=1)
    np.testing.assert_array_equal(arr, stacked)
    assert meta.slice_spacing_mm == pytest.approx(2.5)
    assert meta.fps_original is None and meta.fps_source is None
    row = meta.to_row()
    assert row["n_frames"] == 5 and row["modality"] == "CT" and row["slice_thickness_mm"] == 2.5


def test_dicomdir_resolves_referenced_files(testdata_dir):
    dicomdir = testdata_dir("dicomdirtests") / "DICOMDIR"
    result = scan(dicomdir)
    skipped = [e for e in result.ledger if e.path == str(dicomdir)]
    assert skipped == [
        LedgerEntry(
            str(dicomdir),
            "skipped",
            "DICOMDIR (media storage directory): an index of 31 file(s), not an image",
        )
    ]
    ok = [e for e in result.ledger if e.status == "ok"]
    assert len(ok) == 31  # every referenced image, found relative to the DICOMDIR
    ct5n = [s for s in result.series if s.files[0].parent.name == "CT5N"]
    assert len(ct5n) == 1 and ct5n[0].slice_spacing_mm == pytest.approx(2.5)
    assert sum(s.n_instances for s in result.series) == 31


def test_dicomdir_missing_reference_is_failed(testdata_dir, tmp_path):
    src = testdata_dir("dicomdirtests")
    _link(src / "DICOMDIR", tmp_path / "DICOMDIR")
    result = scan(tmp_path)
    failed = [e for e in result.ledger if e.status == "failed"]
    assert len(failed) == 31
    assert failed[0].reason == "referenced by DICOMDIR DICOMDIR but not found"
    assert result.series == []


def test_every_bad_file_lands_in_the_ledger_with_a_specific_reason(testdata, tmp_path):
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image\n" * 20)
    (tmp_path / "garbage.dcm").write_bytes(b"\x00" * 128 + b"DICM" + os.urandom(300))
    _link(testdata("MR_truncated.dcm"), tmp_path / "truncated.dcm")
    _link(testdata("reportsi.dcm"), tmp_path / "sr.dcm")
    _link(testdata("waveform_ecg.dcm"), tmp_path / "ecg.dcm")
    _link(testdata("rtstruct.dcm"), tmp_path / "rtstruct.dcm")
    _link(testdata("emri_small_jpeg_2k_lossless_too_short.dcm"), tmp_path / "short.dcm")
    _link(testdata("CT_small.dcm"), tmp_path / "ct.dcm")
    result = scan([tmp_path, tmp_path / "does-not-exist"])
    by_name = {Path(e.path).name: e for e in result.ledger}
    assert set(by_name) == {p.name for p in tmp_path.iterdir()} | {"does-not-exist"}

    def check(name: str, status: str, reason: str) -> None:
        entry = by_name[name]
        assert entry.status == status, entry
        assert entry.reason.startswith(reason), entry

    check("empty.dcm", "failed", "empty file (0 bytes)")
    check("notes.txt", "skipped", "not DICOM")
    check("garbage.dcm", "failed", "corrupt: 'DICM' marker present")
    check("truncated.dcm", "failed", "truncated: pixel data has 8130 of 8192 bytes")
    check(
        "sr.dcm",
        "skipped",
        "unsupported SOP class Basic Text SR (1.2.840.10008.5.1.4.1.1.88.11): not an image",
    )
    check("ecg.dcm", "skipped", "unsupported SOP class 12-lead ECG Waveform")
    check("rtstruct.dcm", "skipped", "unsupported SOP class RT Structure Set")
    check("short.dcm", "failed", "truncated: End of file reached before delimiter")
    check("does-not-exist", "failed", "path does not exist")
    check("ct.dcm", "ok", "")
    assert [s.files[0].name for s in result.series] == ["ct.dcm"]
    assert result.n_failed == 5


def test_no_preamble_file_is_read_with_force_and_validated(testdata, tmp_path):
    ds = pydicom.dcmread(testdata("CT_small.dcm"))
    # Dataset only: no preamble, no 'DICM', no file meta (ACR-NEMA style).
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    raw = tmp_path / "raw.dcm"
    raw.write_bytes(fp.getvalue())
    assert raw.read_bytes()[128:132] != b"DICM"
    result = scan(raw)
    (entry,) = result.ledger
    assert entry.status == "ok" and "without DICOM preamble" in entry.reason
    arr, _ = read_series(result.series[0])
    np.testing.assert_array_equal(arr, read_file(testdata("CT_small.dcm"))[0])


def test_undecodable_transfer_syntax_fails_at_scan(testdata, tmp_path):
    ds = pydicom.dcmread(testdata("examples_ybr_color.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264
    out = tmp_path / "h264.dcm"
    ds.save_as(out)
    (entry,) = scan(out).ledger
    assert entry.status == "failed"
    assert "MPEG-4 AVC/H.264" in entry.reason and "no pixel decoder" in entry.reason


def test_undecodable_pixel_data_raises_at_read(testdata):
    # pydicom's JPEG-lossy.dcm has a corrupt stream that only GDCM tolerates.
    with pytest.raises(IngestError, match=r"JPEG-lossy\.dcm: pixel data .* could not be decoded"):
        read_file(testdata("JPEG-lossy.dcm"))


def test_sr_read_raises_unsupported(testdata):
    with pytest.raises(UnsupportedSOPClassError, match=r"test-SR\.dcm: unsupported SOP class"):
        read_file(testdata("test-SR.dcm"))


def _write_copy(src: Path, dst: Path, **changes: object) -> Path:
    ds = pydicom.dcmread(src)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    ds.SOPInstanceUID = changes.get("SOPInstanceUID", generate_uid())
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(dst)
    return dst


def test_series_with_several_multiframe_instances_is_split(testdata, tmp_path):
    src = testdata("emri_small.dcm")
    _write_copy(src, tmp_path / "a.dcm")
    _write_copy(src, tmp_path / "b.dcm")
    result = scan(tmp_path)
    assert len(result.series) == 2
    assert len({s.series_uid for s in result.series}) == 1
    keys = {s.key_uid for s in result.series}
    assert len(keys) == 2 and all(k != result.series[0].series_uid for k in keys)
    assert {e.key_uid for e in result.ledger} == keys  # ledger rows map to their unit
    for series in result.series:
        arr, meta = read_series(series)
        assert arr.shape == (1, 10, 64, 64) and meta.key_uid == series.key_uid


def test_duplicate_instance_is_skipped(testdata, tmp_path):
    _link(testdata("MR_small.dcm"), tmp_path / "a.dcm")
    _link(testdata("MR_small_RLE.dcm"), tmp_path / "b.dcm")  # same SOPInstanceUID, RLE
    result = scan(tmp_path)
    assert len(result.series) == 1 and result.series[0].n_instances == 1
    dup = [e for e in result.ledger if e.status == "skipped"]
    assert len(dup) == 1 and dup[0].reason.startswith("duplicate instance: same SOPInstanceUID")


def test_inconsistent_series_raises_clear_error(testdata, tmp_path):
    uid = generate_uid()
    _write_copy(testdata("CT_small.dcm"), tmp_path / "ct.dcm", SeriesInstanceUID=uid)
    _write_copy(testdata("MR_small.dcm"), tmp_path / "mr.dcm", SeriesInstanceUID=uid)
    (series,) = scan(tmp_path).series
    assert not series.consistent
    with pytest.raises(IngestError, match="mixes images of different Rows/Columns"):
        read_series(series)


def test_single_frame_cine_uses_trigger_time(testdata, tmp_path):
    uid = generate_uid()
    for i, trigger in enumerate((80.0, 0.0, 40.0)):
        _write_copy(
            testdata("MR_small.dcm"),
            tmp_path / f"{i}.dcm",
            SeriesInstanceUID=uid,
            TriggerTime=trigger,
            InstanceNumber=i + 1,
        )
    (series,) = scan(tmp_path).series
    assert series.layout == "cine" and series.slice_spacing_mm is None
    assert [p.name for p in series.files] == ["1.dcm", "2.dcm", "0.dcm"]
    arr, meta = read_series(series)
    assert arr.shape == (1, 3, 64, 64)
    assert meta.fps_source == "TriggerTime" and meta.fps_original == pytest.approx(25.0)


def test_seriesinfo_is_frozen(testdata):
    (series,) = scan(testdata("CT_small.dcm")).series
    assert isinstance(series, SeriesInfo)
    with pytest.raises(AttributeError):
        series.n_instances = 3  # type: ignore[misc]


def test_scan_of_every_pydicom_test_file_accounts_for_each_file(testdata_dir, testdata):
    """Robustness: ~250 real files, many deliberately broken; no exception, one entry each."""
    roots = [testdata_dir("dicomdirtests").parent, testdata("emri_small.dcm").parent]
    result = scan(roots)
    files = {str(p) for root in roots for p in root.rglob("*") if p.is_file()}
    assert {e.path for e in result.ledger} == files
    assert len(result.ledger) == len(files)
    ok_paths = {e.path for e in result.ledger if e.status == "ok"}
    assert ok_paths == {str(p) for s in result.series for p in s.files}
    assert all(e.reason for e in result.ledger if e.status != "ok")
