"""Write the phantom's cine loops as Ultrasound Multi-frame Image Storage files.

Headers look like a hospital's: patient demographics, institution, station, operator,
referring and performing physicians, study/series/acquisition dates and times, accession
number, manufacturer per site, ``FrameTime``/``CineRate``/``FrameIncrementPointer``,
``SequenceOfUltrasoundRegions`` (optional), ``ViewCodeSequence`` (SNOMED CT) and
``BurnedInAnnotation = YES``; plus a vendor private block that copies PHI (and a private
sequence nesting more), as real scanners do. Explicit VR Little Endian or RLE Lossless.
Outputs are checked with ``dciodvfy`` in the tests.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    RLELossless,
    UltrasoundMultiFrameImageStorage,
)

from hidim.errors import PhantomError
from hidim.phantom.cohort import PatientRecord
from hidim.phantom.config import SiteConfig
from hidim.phantom.geometry import Layout

__all__ = [
    "VIEW_CODES",
    "PRIVATE_CREATOR",
    "SeriesHeader",
    "us_multiframe_dataset",
    "dataset_bytes",
    "code_item",
    "dicom_date",
]

# SNOMED CT codes of CID 12226 "Echocardiography Image View".
VIEW_CODES: dict[str, tuple[str, str]] = {
    "A4C": ("399214001", "Apical four chamber"),
    "PLAX": ("399139001", "Parasternal long axis"),
}
PRIVATE_CREATOR = "HIDIM PHANTOM US 1.0"
IMPLEMENTATION_VERSION = "HIDIM_PHANTOM_1"


def dicom_date(day: date) -> str:
    """``YYYYMMDD``."""
    return day.strftime("%Y%m%d")


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    """A code sequence item (CodeValue, CodingSchemeDesignator, CodeMeaning)."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


@dataclass(frozen=True)
class SeriesHeader:
    """Everything about one series' header that is not the patient or the pixels.

    Attributes:
        view: ``A4C`` or ``PLAX``.
        study_uid, series_uid, sop_uid: UIDs (deterministic from the seed).
        series_number: 1-based number within the study.
        series_time: ``HHMMSS``.
        fps: Frame rate (Hz).
        operator, referring, performing: ``FAMILY^GIVEN`` staff names.
    """

    view: str
    study_uid: str
    series_uid: str
    sop_uid: str
    series_number: int
    series_time: str
    fps: int
    operator: str
    referring: str
    performing: str


def _us_region(layout: Layout) -> Dataset:
    x0, y0, x1, y1 = layout.region_box()
    region = Dataset()
    region.RegionSpatialFormat = 1  # 2D
    region.RegionDataType = 1  # tissue
    region.RegionFlags = 0
    region.RegionLocationMinX0 = x0
    region.RegionLocationMinY0 = y0
    region.RegionLocationMaxX1 = x1
    region.RegionLocationMaxY1 = y1
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = layout.cm_per_px
    region.PhysicalDeltaY = layout.cm_per_px
    region.ReferencePixelX0 = int(round(layout.apex_col))
    region.ReferencePixelY0 = int(round(layout.apex_row))
    region.ReferencePixelPhysicalValueX = 0.0
    region.ReferencePixelPhysicalValueY = 0.0
    return region


def _private_block(
    ds: Dataset, patient: PatientRecord, site: SiteConfig, hdr: SeriesHeader
) -> None:
    block = ds.private_block(0x0009, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", patient.dicom_name)
    block.add_new(0x02, "LO", patient.patient_id)
    block.add_new(0x03, "DA", dicom_date(patient.birth_date))
    block.add_new(0x04, "LO", hdr.operator)
    block.add_new(0x05, "LO", f"{site.station_name} {site.institution_name}")
    nested = Dataset()
    inner = nested.private_block(0x0009, PRIVATE_CREATOR, create=True)
    inner.add_new(0x11, "LO", patient.accession)
    inner.add_new(0x12, "LO", hdr.referring)
    inner.add_new(0x13, "LT", f"Exam of {patient.dicom_name} at {site.institution_address}")
    block.add_new(0x10, "SQ", Sequence([nested]))


def us_multiframe_dataset(
    pixels: np.ndarray,
    *,
    patient: PatientRecord,
    site: SiteConfig,
    header: SeriesHeader,
    layout: Layout,
    include_us_region: bool,
    private_tags: bool,
) -> Dataset:
    """Build an Ultrasound Multi-frame Image dataset (uncompressed) around ``pixels``.

    Args:
        pixels: uint8 ``[T, H, W]`` (MONOCHROME2) or ``[T, H, W, 3]`` (RGB).
        patient: Demographics and identifiers.
        site: Acquiring site (institution, manufacturer, station).
        header: Series identity and timing.
        layout: Frame layout (for the ultrasound region).
        include_us_region: Write ``SequenceOfUltrasoundRegions``.
        private_tags: Write the vendor private block carrying PHI.
    """
    if pixels.dtype != np.uint8 or pixels.ndim not in (3, 4):
        raise PhantomError(
            f"expected uint8 frames [T,H,W] or [T,H,W,3], got {pixels.dtype} {pixels.shape}"
        )
    rgb = pixels.ndim == 4
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = UID(header.sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = header.sop_uid
    study_date = dicom_date(patient.study_date)
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.AcquisitionDateTime = study_date + header.series_time
    ds.ContentDate = study_date
    ds.StudyTime = patient.study_time
    ds.SeriesTime = header.series_time
    ds.ContentTime = header.series_time
    ds.AccessionNumber = patient.accession
    ds.Modality = "US"
    ds.Manufacturer = site.manufacturer
    ds.InstitutionName = site.institution_name
    ds.InstitutionAddress = site.institution_address
    ds.ReferringPhysicianName = header.referring
    ds.StationName = site.station_name
    ds.StudyDescription = "Echocardiogram transthoracic"
    ds.SeriesDescription = header.view
    ds.InstitutionalDepartmentName = "Cardiology"
    ds.PerformingPhysicianName = header.performing
    ds.OperatorsName = header.operator
    ds.ManufacturerModelName = site.model_name
    ds.PatientName = patient.dicom_name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = site.institution_display
    ds.PatientBirthDate = dicom_date(patient.birth_date)
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{patient.age:03d}Y"
    ds.EthnicGroup = patient.ethnicity
    ds.BodyPartExamined = "HEART"
    ds.DeviceSerialNumber = site.device_serial
    ds.SoftwareVersions = site.software_version
    ds.FrameTime = f"{1000.0 / header.fps:.4f}"
    ds.CineRate = header.fps
    ds.RecommendedDisplayFrameRate = header.fps
    ds.HeartRate = int(round(patient.hr_bpm))
    ds.PreferredPlaybackSequencing = 0
    ds.StudyInstanceUID = header.study_uid
    ds.SeriesInstanceUID = header.series_uid
    ds.StudyID = patient.accession[-6:]
    ds.SeriesNumber = header.series_number
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES"
    ds.LossyImageCompression = "00"
    ds.AnatomicRegionSequence = Sequence([code_item("80891009", "SCT", "Heart")])
    value, meaning = VIEW_CODES[header.view]
    ds.ViewCodeSequence = Sequence([code_item(value, "SCT", meaning)])
    if include_us_region:
        ds.SequenceOfUltrasoundRegions = Sequence([_us_region(layout)])
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else "MONOCHROME2"
    if rgb:
        ds.PlanarConfiguration = 0
    ds.NumberOfFrames = int(pixels.shape[0])
    ds.FrameIncrementPointer = 0x00181063  # FrameTime
    ds.Rows = int(pixels.shape[1])
    ds.Columns = int(pixels.shape[2])
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    data = np.ascontiguousarray(pixels).tobytes()
    ds.PixelData = data + b"\x00" if len(data) % 2 else data
    ds["PixelData"].VR = "OB"
    if private_tags:
        _private_block(ds, patient, site, header)
    return ds


def dataset_bytes(ds: Dataset, *, rle: bool = False) -> bytes:
    """Serialise ``ds`` as a DICOM Part 10 file (Explicit VR Little Endian or RLE Lossless)."""
    if rle:
        ds.compress(RLELossless, encoding_plugin="pylibjpeg" if _has_pylibjpeg_rle() else "pydicom")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _has_pylibjpeg_rle() -> bool:
    try:
        import rle  # noqa: F401  (pylibjpeg-rle)
    except ImportError:
        return False
    return True
