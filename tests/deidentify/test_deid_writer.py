"""The fast serialiser writes exactly what pydicom writes; the structural check catches damage;
the batch journal resumes; process-pool chunks give the same outputs as in-process runs."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_charset_files
from pydicom.dataset import FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from hidim.deidentify import DeidOptions, PixelPolicy, deidentify
from hidim.deidentify.audit import JOURNAL_FILE, read_audit, read_reid_table
from hidim.deidentify.verify import EncodingError, check_encoded
from hidim.deidentify.writer import encode_file

HEADER_ONLY = DeidOptions(pixels=PixelPolicy(mode="none"))
FILES = [
    "CT_small.dcm",  # explicit VR LE, private tags
    "MR_small.dcm",
    "rtplan.dcm",  # implicit VR LE, deep sequences
    "explicit_VR-UN.dcm",  # public elements stored as UN
    "JPEG2000.dcm",  # encapsulated pixel data
    "emri_small_RLE.dcm",  # RLE, multi-frame
    "waveform_ecg.dcm",
    "chrH31.dcm",  # ISO 2022 character set
    "SC_rgb_jpeg.dcm",  # implicit-VR data set under an explicit transfer syntax
]


def _decode_all(ds) -> None:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _decode_all(item)


def _pydicom_bytes(ds) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    from hidim import __version__

    meta.ImplementationVersionName = f"HIDIM_{__version__}"[:16]
    ds.file_meta = meta
    ds.preamble = None
    sink = io.BytesIO()
    ds.save_as(sink, enforce_file_format=True)
    return sink.getvalue()


@pytest.mark.parametrize("decoded", [False, True], ids=["raw", "decoded"])
@pytest.mark.parametrize("name", FILES)
def test_deid_writer_matches_pydicom_byte_for_byte(testdata, name, decoded) -> None:
    path = get_charset_files(name)[0] if name.startswith("chr") else testdata(name)
    ours, ref = dcmread(path), dcmread(path)
    if decoded:
        _decode_all(ours)
        _decode_all(ref)
    data = encode_file(ours, ours.file_meta.TransferSyntaxUID)
    check_encoded(data)
    if name == "SC_rgb_jpeg.dcm" and not decoded:
        # pydicom itself cannot write this file without decoding it first; ours converts.
        back = dcmread(io.BytesIO(data))
        assert back.pixel_array.shape == dcmread(path).pixel_array.shape
        return
    assert data == _pydicom_bytes(ref)


@pytest.mark.parametrize("name", ["CT_small.dcm", "rtplan.dcm"])
def test_deid_writer_matches_pydicom_with_items_built_in_memory(testdata, name) -> None:
    """Items created by hidim (DeidentificationMethodCodeSequence) take the fast path too."""
    from hidim.deidentify.identity import mark_deidentified
    from hidim.deidentify.profile import ProfileOptions

    ours, ref = dcmread(testdata(name)), dcmread(testdata(name))
    for ds in (ours, ref):
        mark_deidentified(ds, ProfileOptions(retain_device_identity=True), pixels_cleaned=True)
    assert encode_file(ours, ours.file_meta.TransferSyntaxUID) == _pydicom_bytes(ref)


def test_deid_writer_zero_preamble_and_rebuilt_meta(testdata) -> None:
    ds = dcmread(testdata("CT_small.dcm"))
    ds.preamble = b"PHI-IN-PREAMBLE".ljust(128, b"!")
    ds.file_meta.SourceApplicationEntityTitle = "ZQXSOURCEAE"
    ds.file_meta.PrivateInformationCreatorUID = "1.2.3.4"
    ds.file_meta.PrivateInformation = b"ZQXPRIVATEINFO"
    data = encode_file(ds, ds.file_meta.TransferSyntaxUID)
    assert data[:128] == b"\x00" * 128 and data[128:132] == b"DICM"
    assert b"ZQX" not in data and b"PHI-IN" not in data
    meta = dcmread(io.BytesIO(data)).file_meta
    assert set(meta.keys()) == {0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010,
                                0x00020012, 0x00020013}  # fmt: skip


def test_deid_check_encoded_rejects_damage(testdata) -> None:
    ds = dcmread(testdata("rtplan.dcm"))
    data = encode_file(ds, ds.file_meta.TransferSyntaxUID)
    check_encoded(data)
    with pytest.raises(EncodingError, match="past"):
        check_encoded(data[:-7])
    with pytest.raises(EncodingError, match="preamble"):
        check_encoded(b"\x01" + data[1:])
    broken = bytearray(data)
    at = data.index(b"\xfe\xff\x00\xe0")  # first item header: make its length too large
    broken[at + 4 : at + 8] = (0x7FFFFFF0).to_bytes(4, "little")
    with pytest.raises(EncodingError):
        check_encoded(bytes(broken))


def test_deid_journal_resumes_an_interrupted_batch(tmp_path, key_file, testdata) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):
        shutil.copy(testdata(name), inp / name)
    out, reid = tmp_path / "out", tmp_path / "private" / "reid.csv"
    first = deidentify(
        [inp], out, key_file=key_file, reid_table=reid, options=HEADER_ONLY, show_progress=False
    )
    assert not (out / JOURNAL_FILE).exists()  # removed once the Parquet audit is written
    # Simulate a crash after two files: only the journal (with a torn last line) survives.
    audit = out / "deid_audit.parquet"
    rows = read_audit(audit)
    audit.unlink()
    done = [r for r in rows if r["sop_uid"] != rows[2]["sop_uid"]]
    (out / rows[2]["output"]).unlink()
    lines = [json.dumps(r) for r in done] + ['{"input_id": "torn']
    (out / JOURNAL_FILE).write_text("\n".join(lines))
    with reid.open("a") as fh:
        fh.write("uid,1.2.3,2.25.1")  # a torn row: no newline
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.dcm")}
    again = deidentify(
        [inp], out, key_file=key_file, reid_table=reid, options=HEADER_ONLY, show_progress=False
    )
    assert again.count("ok") == 3
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.dcm") if p in mtimes} == mtimes
    assert len(list(out.rglob("*.dcm"))) == 3  # the missing one was redone
    assert [r["sop_uid"] for r in again.rows] == [r["sop_uid"] for r in first.rows]
    table = read_reid_table(reid)
    assert ("uid", "1.2.3") not in table
    assert reid.read_text().splitlines()[0] == "kind,original,pseudonym"


def test_deid_worker_chunks_equal_in_process_run(tmp_path, key_file, testdata) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "waveform_ecg.dcm"):
        shutil.copy(testdata(name), inp / name)
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        summary = deidentify(
            [inp],
            out,
            key_file=key_file,
            reid_table=tmp_path / f"r{workers}.csv",
            options=HEADER_ONLY,
            workers=workers,
            show_progress=False,
        )
        assert summary.count("ok") == 4
        outputs.append({p.relative_to(out): p.read_bytes() for p in out.rglob("*.dcm")})
    assert outputs[0] == outputs[1]
    assert read_reid_table(tmp_path / "r1.csv") == read_reid_table(tmp_path / "r2.csv")


def test_deid_outputs_parse_identically_with_pydicom(tmp_path, key_file, testdata) -> None:
    """What hidim writes reads back as the same data set pydicom would have written."""
    src = testdata("rtplan.dcm")
    out = tmp_path / "out"
    deidentify(
        [src], out, key_file=key_file, reid_table=tmp_path / "r.csv", options=HEADER_ONLY,
        show_progress=False,
    )  # fmt: skip
    (path,) = list(out.rglob("*.dcm"))
    ds = dcmread(path)
    rewritten = dcmread(io.BytesIO(_pydicom_bytes(dcmread(path))))
    assert ds == rewritten
    assert Path(path).read_bytes() == _pydicom_bytes(dcmread(path))
