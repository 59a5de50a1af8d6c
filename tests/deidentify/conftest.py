"""Fixtures for the de-identification tests: a key, and DICOM with canaries planted everywhere
PS3.15 names (built from pydicom's real test files)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from hidim.deidentify.keys import create_key

CANARY = "ZQXCANARY"  # never appears in real data


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return create_key(tmp_path / "secret" / "project.key")


def _item(**kw: object) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def plant_canaries(ds: Dataset, tag: str) -> Dataset:
    """Put a distinct canary (``CANARY + tag + where``) in every place the profile names."""
    c = f"{CANARY}{tag}"
    ds.PatientName = f"{c}PN^Alice"
    ds.PatientID = f"{c}ID"
    ds.OtherPatientIDs = f"{c}OID"
    ds.PatientAddress = f"{c}ADDR"
    ds.PatientBirthDate = "19700101"
    ds.AccessionNumber = f"{c}ACC"[:16]
    ds.InstitutionName = f"{c}INST"
    ds.InstitutionAddress = f"{c}IADDR"
    ds.ReferringPhysicianName = f"{c}REF"
    ds.PerformingPhysicianName = f"{c}PERF"
    ds.OperatorsName = f"{c}OPS"
    ds.StationName = f"{c}ST"[:16]
    ds.StudyDescription = f"{c}STUDYDESC"
    ds.SeriesDescription = f"{c}SERDESC"
    ds.ImageComments = f"{c}IMGCOMMENT"
    ds.AdditionalPatientHistory = f"{c}HIST"
    ds.DeviceSerialNumber = f"{c}SER"
    ds.StudyID = f"{c}SID"[:16]
    ds.RequestAttributesSequence = Sequence(
        [_item(RequestedProcedureID=f"{c}RPID"[:16], ScheduledProcedureStepID=f"{c}SPS"[:16])]
    )
    # Three levels deep: content sequence → content sequence → person name + text
    deep = _item(
        ValueType="PNAME",
        PersonName=f"{c}DEEPPN",
        ContentSequence=Sequence(
            [_item(ValueType="TEXT", TextValue=f"{c}DEEPTEXT", PersonName=f"{c}DEEPER")]
        ),
    )
    ds.ContentSequence = Sequence([_item(ValueType="CONTAINER", ContentSequence=Sequence([deep]))])
    ds.ReferringPhysicianIdentificationSequence = Sequence(
        [
            _item(
                PersonIdentificationCodeSequence=Sequence(
                    [_item(CodeValue="1", CodingSchemeDesignator="L", CodeMeaning=f"{c}CODE")]
                ),
                InstitutionName=f"{c}NESTINST",
            )
        ]
    )
    # Private block at top level and nested inside a standard sequence, plus a private SQ.
    block = ds.private_block(0x0029, "HIDIM TEST", create=True)
    block.add_new(0x01, "LO", f"{c}PRIV")
    block.add_new(0x02, "SQ", Sequence([_item(PatientName=f"{c}PRIVSQPN")]))
    nested = ds.RequestAttributesSequence[0]
    nb = nested.private_block(0x0011, "HIDIM NESTED", create=True)
    nb.add_new(0x01, "LO", f"{c}NESTPRIV")
    # Overlay and curve groups.
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", (f"{c}OVL").encode().ljust(8, b"\0")[:8])
    ds.add_new(0x60004000, "LT", f"{c}OVLCOMMENT")
    ds.add_new(0x50003000, "OB", (f"{c}CURVE").encode() + b"\0")
    # Dates/times and a referenced UID.
    ds.StudyDate, ds.StudyTime = "20200315", "233000"
    ds.SeriesDate, ds.SeriesTime = "20200315", "233500"
    ds.AcquisitionDateTime = "20200315233510.5"
    ds.InstanceCreationDate = "20200316"
    return ds


@pytest.fixture
def canary_files(tmp_path: Path, testdata: Callable[[str], Path]) -> dict[str, Path]:
    """Real files with canaries planted; file names and folders carry canaries too."""
    folder = tmp_path / "in" / f"{CANARY}PATHDIR"
    folder.mkdir(parents=True)
    out: dict[str, Path] = {}
    a = plant_canaries(dcmread(testdata("CT_small.dcm")), "A")
    a.save_as(folder / f"{CANARY}PATHNAME_a.dcm")
    out["a"] = folder / f"{CANARY}PATHNAME_a.dcm"
    b = plant_canaries(dcmread(testdata("CT_small.dcm")), "B")
    b.PatientID, b.PatientName = a.PatientID, a.PatientName  # same patient, later study
    b.SOPInstanceUID = a.SOPInstanceUID + ".2"
    b.StudyInstanceUID = a.StudyInstanceUID + ".2"
    b.StudyDate, b.StudyTime = "20200410", "101500"
    b.ReferencedImageSequence = Sequence(
        [_item(ReferencedSOPClassUID=a.SOPClassUID, ReferencedSOPInstanceUID=a.SOPInstanceUID)]
    )
    b.save_as(folder / "b.dcm")
    out["b"] = folder / "b.dcm"
    for name in ("priv_SQ.dcm", "nested_priv_SQ.dcm"):
        ds = dcmread(testdata(name))
        base = dcmread(testdata("CT_small.dcm"))
        for elem in ds:
            base.add(elem)
        base.SOPInstanceUID = f"{base.SOPInstanceUID}.{len(out) + 10}"
        base.SeriesInstanceUID = f"{base.SeriesInstanceUID}.{len(out) + 10}"
        plant_canaries(base, name[:4].upper()).save_as(folder / name)
        out[name] = folder / name
    return out
