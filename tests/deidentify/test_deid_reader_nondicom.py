"""What the de-identifier does with files that are not (quite) DICOM: text and other formats
are skipped (reported, never copied); a DICOM data set that lost its SOP UIDs fails, so a
person looks at it."""

from __future__ import annotations

import pytest
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from hidim.deidentify.reader import RejectedInput, read_input


@pytest.mark.parametrize(
    "data", [b"not dicom at all\n", b"PAR1" + bytes(200), b'{"command": "pull"}']
)
def test_non_dicom_bytes_are_skipped(data: bytes) -> None:
    with pytest.raises(RejectedInput, match="not a DICOM file") as info:
        read_input(data)
    assert info.value.status == "skipped"


def test_a_dicom_data_set_without_sop_uids_fails(testdata) -> None:
    ds = dcmread(testdata("CT_small.dcm"))
    del ds.SOPClassUID, ds.SOPInstanceUID
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, ds)  # the bare data set: no preamble, no file meta
    raw = fp.getvalue()
    assert raw[128:132] != b"DICM"
    with pytest.raises(RejectedInput, match="without preamble, file meta or SOP UIDs") as info:
        read_input(raw)
    assert info.value.status == "failed"
