"""Canaries in the less obvious places identifiers hide (PS3.15 and real-world files).

Each test plants distinct ``ZQX…`` strings (and original UIDs, and a distinctive date) and
asserts that none survives anywhere in the released bytes, file names or folder names.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.datadict import dictionary_has_tag, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from hidim.deidentify import DeidOptions, PixelPolicy, ProfileOptions, deidentify
from hidim.deidentify.audit import read_reid_table
from hidim.deidentify.writer import encode_dataset

CANARY = "ZQX"
DATE = "19711207"  # a distinctive date: must never survive unshifted
HEADER_ONLY = DeidOptions(pixels=PixelPolicy(mode="none"))


def _item(**kw: object) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def _un_sequence(*items: Dataset) -> bytes:
    """A sequence value as implicit VR little endian bytes (what a UN-encoded SQ holds)."""
    out = b""
    for item in items:
        body = bytes(encode_dataset(item, implicit=True))
        out += b"\xfe\xff\x00\xe0" + struct.pack("<L", len(body)) + body
    return out


def _release_blob(folder: Path) -> bytes:
    return b"".join(
        p.read_bytes() + str(p.relative_to(folder)).encode()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    )


def _assert_clean(blob: bytes, *needles: str) -> None:
    for needle in (CANARY, DATE, *needles):
        for enc in ("ascii", "utf-16-le"):
            assert needle.encode(enc) not in blob, needle


def _run(tmp_path: Path, key_file: Path, files: list[Path], options: DeidOptions = HEADER_ONLY):
    out = tmp_path / "release"
    summary = deidentify(
        files,
        out,
        key_file=key_file,
        reid_table=tmp_path / "private" / "reid.csv",
        options=options,
        show_progress=False,
    )
    return summary, out


def _hidden_places(ds: Dataset) -> Dataset:
    """Plant canaries where table-driven de-identifiers usually miss them."""
    uid = ds.StudyInstanceUID
    ds.PatientName = [f"{CANARY}PN1^A", f"{CANARY}PN2^B"]  # multi-valued PN
    ds.PatientID = f"{CANARY}ID"
    ds.OtherPatientNames = [f"{CANARY}OPN1", f"{CANARY}OPN2"]
    ds.ReferringPhysicianName = [f"{CANARY}REF1", f"{CANARY}REF2"]
    ds.PatientBirthDate = DATE
    ds.AcquisitionDateTime = f"{DATE}233510.5+0100"  # DT with a timezone offset
    ds.ContentDate = DATE
    ds.OtherPatientIDsSequence = Sequence(
        [_item(PatientID=f"{CANARY}OPID", IssuerOfPatientID=f"{CANARY}ISS")]
    )
    ds.ReferencedPatientSequence = Sequence(
        [_item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.1.1", ReferencedSOPInstanceUID=uid)]
    )
    ds.SourcePatientGroupIdentificationSequence = Sequence(
        [_item(PatientID=f"{CANARY}SPG", IssuerOfPatientID=f"{CANARY}SPGISS")]
    )
    ds.TextValue = f"{CANARY}TOPTEXT"  # content-item text outside a Content Sequence
    ds.AcquisitionContextSequence = Sequence([_item(ValueType="TEXT", TextValue=f"{CANARY}ACQCTX")])
    ds.WaveformAnnotationSequence = Sequence(
        [_item(UnformattedTextValue=f"{CANARY}WAVEANN", ReferencedWaveformChannels=[1, 1])]
    )
    ds.EncryptedAttributesSequence = Sequence(
        [
            _item(
                EncryptedContentTransferSyntaxUID="1.2.840.10008.1.2.1",
                EncryptedContent=f"{CANARY}ENCRYPTED".encode(),
            )
        ]
    )
    ds.ManufacturerModelName = f"MODEL {uid}"  # a UID inside kept free text
    ds.StorageMediaFileSetID = f"{CANARY}FSID"
    ds.RecognitionCode = f"{CANARY}RETIRED"  # retired SH
    ds.ImagePresentationComments = f"{CANARY}RETLT"  # retired LT
    author = tag_for_keyword("DocumentAuthorTrial")  # retired PN
    assert author is not None
    ds.add_new(author, "PN", f"{CANARY}RETPN")
    unknown = 0x0010A0F2
    assert not dictionary_has_tag(unknown)
    ds.add_new(unknown, "LO", f"{CANARY}UNKNOWNLO")
    ds.add_new(0x00041500, "CS", ["ZQXDIR", "ZQXFILE"])  # ReferencedFileID: a file path
    ds.ReferencedImageSequence = Sequence(
        [_item(ReferencedSOPClassUID=ds.SOPClassUID, ReferencedSOPInstanceUID=uid)]
    )
    ds.ReferencedImageSequence[0].add_new(0x0010A0F2, "UT", f"{CANARY}NESTEDUNKNOWN")
    ds.add_new(0xFFFCFFFC, "OB", f"{CANARY}TRAILINGPADDING".encode())
    ds.preamble = f"{CANARY}PREAMBLE".encode().ljust(128, b"\x00")
    ds.file_meta.SourceApplicationEntityTitle = f"{CANARY}SRCAE"
    ds.file_meta.PrivateInformationCreatorUID = "1.2.3.4.5.6.7.8.9"
    ds.file_meta.PrivateInformation = f"{CANARY}PRIVINFO".encode()
    return ds


def _insert_body_element(path: Path, group: int, element: int, vr: bytes, value: bytes) -> None:
    """Put an element at the start of the data set body (right after the file meta)."""
    data = path.read_bytes()
    meta_len = struct.unpack_from("<L", data, 132 + 8)[0]
    at = 132 + 12 + meta_len
    elem = struct.pack("<HH2sH", group, element, vr, len(value)) + value
    path.write_bytes(data[:at] + elem + data[at:])


def test_deid_hidden_places_do_not_leak(tmp_path, key_file, testdata) -> None:
    src = dcmread(testdata("CT_small.dcm"))
    originals = {src.StudyInstanceUID, src.SOPInstanceUID, src.SeriesInstanceUID}
    path = tmp_path / "in" / "x.dcm"
    path.parent.mkdir()
    _hidden_places(src).save_as(path)
    _insert_body_element(path, 0x0002, 0x0016, b"AE", b"ZQXBODYMETA ")  # meta in the body
    summary, out = _run(tmp_path, key_file, [path])
    assert summary.count("ok") == 1, summary.rows
    blob = _release_blob(out)
    _assert_clean(blob, *originals)
    (result,) = list(out.rglob("*.dcm"))
    ds = dcmread(result)
    assert result.read_bytes()[:128] == b"\x00" * 128
    assert "ReferencedPatientSequence" not in ds
    assert "OtherPatientIDsSequence" not in ds
    assert ds.TextValue == "ANONYMIZED"
    assert ds.ManufacturerModelName.startswith("MODEL 2.25.")
    assert ds.AcquisitionDateTime.endswith("+0100")  # shifted, precision and offset kept
    assert 0x00041500 not in ds and 0xFFFCFFFC not in ds


def test_deid_public_elements_stored_as_un_are_handled(tmp_path, key_file, testdata) -> None:
    """Implicit → explicit transcoding leaves public elements as UN: they are decoded with
    their real VR (names pseudonymised, UIDs remapped, dates shifted, sequences walked)."""
    src = dcmread(testdata("CT_small.dcm"))
    uid = src.StudyInstanceUID
    un = {
        0x00100010: f"{CANARY}UNNAME^X".encode(),
        0x00080080: f"{CANARY}UNINST".encode(),
        0x00080090: f"{CANARY}UNREF ".encode(),
        0x00080020: DATE.encode(),
        0x0020000D: (uid + "\0" * (len(uid) % 2)).encode(),
        0x00081030: f"{CANARY}UNSTUDYDESC ".encode(),
    }
    for tag, value in un.items():  # raw: pydicom's DataElement would swap UN for the real VR
        src._dict[BaseTag(tag)] = RawDataElement(
            BaseTag(tag), "UN", len(value), value, 0, False, True
        )
    seq = _un_sequence(
        _item(ReferencedSOPClassUID="1.2.840.10008.5.1.4.1.1.2", ReferencedSOPInstanceUID=uid),
        _item(PatientName=f"{CANARY}UNSEQPN", InstitutionName=f"{CANARY}UNSEQINST"),
    )
    ref = BaseTag(0x00081140)  # ReferencedImageSequence
    src._dict[ref] = RawDataElement(ref, "UN", len(seq), seq, 0, False, True)
    path = tmp_path / "un.dcm"
    src.save_as(path)
    stored = dcmread(path)._dict
    assert stored[BaseTag(0x00100010)].VR == stored[ref].VR == "UN"  # really stored as UN
    summary, out = _run(tmp_path, key_file, [path])
    assert summary.count("ok") == 1, summary.rows
    _assert_clean(_release_blob(out), uid)
    (result,) = list(out.rglob("*.dcm"))
    raw = dcmread(result)
    for tag in (*un, 0x00081140):
        if tag in raw._dict:
            assert raw._dict[tag].VR != "UN", f"{tag:08X} still UN"
    assert str(raw.PatientName).startswith("ANON^")


def test_deid_safe_private_blocks_are_still_cleaned(tmp_path, key_file, testdata) -> None:
    src = dcmread(testdata("CT_small.dcm"))
    uid = src.SOPInstanceUID
    safe = src.private_block(0x0031, "HIDIM SAFE", create=True)
    safe.add_new(0x01, "LO", "kept technical value")
    safe.add_new(0x02, "UI", uid)
    safe.add_new(0x03, "PN", f"{CANARY}SAFEPN")
    safe.add_new(0x04, "DA", DATE)
    item = _item(PatientName=f"{CANARY}SAFESQPN", ReferencedSOPInstanceUID=uid)
    unsafe = item.private_block(0x0033, "SOMEONE ELSE", create=True)
    unsafe.add_new(0x01, "LO", f"{CANARY}UNSAFE")
    safe.add_new(0x05, "SQ", Sequence([item]))
    path = tmp_path / "safe.dcm"
    src.save_as(path)
    options = DeidOptions(
        profile=ProfileOptions(
            retain_safe_private=True, safe_private_creators=frozenset({"HIDIM SAFE"})
        ),
        pixels=PixelPolicy(mode="none"),
    )
    summary, out = _run(tmp_path, key_file, [path], options)
    assert summary.count("ok") == 1
    assert summary.rows[0]["private_kept"] >= 6
    _assert_clean(_release_blob(out), uid)
    (result,) = list(out.rglob("*.dcm"))
    ds = dcmread(result)
    block = ds.private_block(0x0031, "HIDIM SAFE")
    assert block[0x01].value == "kept technical value"
    assert block[0x02].value.startswith("2.25.")
    assert block[0x05].value[0].ReferencedSOPInstanceUID == block[0x02].value


def test_deid_dicomdir_folder(tmp_path, key_file, testdata_dir: Callable[[str], Path]) -> None:
    """A media folder: the DICOMDIR is skipped, every referenced file is released under new
    names, and nothing of the original paths or patients survives."""
    src = testdata_dir("dicomdirtests")
    inp = tmp_path / "media"
    inp.mkdir()
    shutil.copy(src / "DICOMDIR", inp / "DICOMDIR")
    shutil.copytree(src / "77654033", inp / "77654033")
    images = [p for p in inp.rglob("*") if p.is_file() and p.name != "DICOMDIR"]
    names = {str(dcmread(p).PatientName) for p in images}
    summary, out = _run(tmp_path, key_file, [inp])
    statuses = sorted(r["status"] for r in summary.rows)
    assert statuses == ["ok"] * len(images) + ["skipped"]
    blob = _release_blob(out)
    for name in names | {"77654033", "CR1", "CT2"}:
        for part in name.replace("^", " ").split():
            if len(part) >= 4:
                assert part.encode() not in blob, part
    table = read_reid_table(tmp_path / "private" / "reid.csv")
    assert any(kind == "patient_name" for kind, _ in table)


@pytest.mark.parametrize("vr", ["UT", "LT", "ST", "LO", "SH", "PN"])
def test_deid_text_in_unknown_and_nested_public_tags(tmp_path, key_file, testdata, vr) -> None:
    src = dcmread(testdata("MR_small.dcm"))
    for tag in (0x0019A0F2, 0x0010A0F3):  # odd (private, no creator) and unknown even
        src.add_new(tag, vr, f"{CANARY}{vr}")
    src.ReferencedStudySequence = Sequence([_item()])
    src.ReferencedStudySequence[0].add_new(0x0010A0F3, vr, f"{CANARY}NEST{vr}")
    path = tmp_path / "t.dcm"
    src.save_as(path)
    summary, out = _run(tmp_path, key_file, [path])
    assert summary.count("ok") == 1
    _assert_clean(_release_blob(out))


def test_deid_overlay_embedded_in_pixel_bits_is_cleared(tmp_path, key_file, testdata) -> None:
    """A retired overlay stored in the unused high bits of the pixel data (no OverlayData):
    removing the 60xx group alone would leave its text in the file."""
    import numpy as np

    src = dcmread(testdata("MR-SIEMENS-DICOM-WithOverlays.dcm"))
    assert (src.BitsAllocated, src.BitsStored, src.PixelRepresentation) == (16, 12, 0)
    del src[0x60003000]  # overlay no longer separate ...
    src[0x60000102].value = 13  # ... but in bit 13 of every pixel
    pixels = np.frombuffer(src.PixelData, "<u2").reshape(src.Rows, src.Columns).copy()
    stored = pixels & 0x0FFF
    pixels[10:30, 10:200] |= 1 << 13  # a burned-in "label" in the overlay plane
    src.PixelData = pixels.tobytes()
    src["PixelData"].VR = "OW"
    path = tmp_path / "ovl.dcm"
    src.save_as(path)
    summary, out = _run(tmp_path, key_file, [path])
    assert summary.rows[0]["overlay_bits_cleared"] == 20 * 190
    (result,) = list(out.rglob("*.dcm"))
    after = np.frombuffer(dcmread(result).PixelData, "<u2").reshape(stored.shape)
    assert not (after & 0xF000).any()
    assert np.array_equal(after, stored)  # the image itself is untouched


def test_deid_bytes_appended_after_the_data_set(tmp_path, key_file, testdata) -> None:
    """Text appended to a file is dropped (the file is repaired, not released with it);
    a file truncated inside its data is still refused."""
    inp = tmp_path / "in"
    inp.mkdir()
    data = testdata("CT_small.dcm").read_bytes()
    (inp / "junk.dcm").write_bytes(data + b"\x00" * 16 + f"{CANARY}APPENDED NAME".encode())
    (inp / "cut.dcm").write_bytes(data[:-500])
    summary, out = _run(tmp_path, key_file, [inp])
    by_status = sorted((r["status"], r.get("repaired", "")) for r in summary.rows)
    assert by_status[0][0] == "failed"
    assert by_status[1] == ("ok", "bytes after the pixel data that are not DICOM: dropped")
    _assert_clean(_release_blob(out))


def test_deid_header_pass_on_an_in_memory_data_set() -> None:
    """The header pass works on decoded (in-memory) elements as well as on raw ones."""
    from hidim.deidentify.header import HeaderContext, deidentify_header
    from hidim.deidentify.profile import cached_plan

    ds = _item(PatientName=f"{CANARY}^MEM", StudyInstanceUID="1.2.3.4.5.6.7", StudyDate=DATE)
    ds.ContentSequence = Sequence(
        [_item(ValueType="TEXT", TextValue=f"{CANARY}MEMTEXT", PersonName=f"{CANARY}MEMPN",
               CodeMeaning=f"{CANARY}MEMCODE")]
    )  # fmt: skip
    ctx = HeaderContext(key=b"k" * 32)
    deidentify_header(ds, cached_plan(ProfileOptions(retain_long_modified_dates=False)), ctx)
    item = ds.ContentSequence[0]
    assert item.TextValue == "ANONYMIZED" and item.PersonName == "ANONYMIZED^ANONYMIZED"
    assert CANARY not in str(ds) and DATE not in str(ds)
    assert ds.StudyInstanceUID.startswith("2.25.")
