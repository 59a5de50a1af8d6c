"""Out-of-distribution inputs for testing abstention ("I don't know").

Four kinds, each available as an array (:func:`ood_arrays`) and written as DICOM to
``OUT/ood/`` by :func:`write_ood`:

- ``ct_volume``: a CT-like chest volume in Hounsfield units (body, lungs, spine, table),
  written as CT Image Storage slices — a wrong-modality series in the echo folder;
- ``natural_clip``: a natural-image-like clip (1/f texture, panning objects) labelled as an
  A4C echo — a mislabelled screen recording;
- ``noise``: pure speckle-free noise labelled as A4C;
- ``blank``: an all-black clip labelled as A4C (probe disconnected).

Arrays are float32 ``[C, T, H, W]`` in the values the DICOM stores (grey levels 0..255 for
the clips, HU for CT), the layout :mod:`hidim.ingest` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
)

from hidim.phantom.cohort import PatientRecord
from hidim.phantom.config import PhantomConfig
from hidim.phantom.dicom import SeriesHeader, dataset_bytes, dicom_date, us_multiframe_dataset
from hidim.phantom.geometry import Layout, make_layout
from hidim.phantom.identity import derive_int, derive_uid, person_name
from hidim.phantom.text import header_rows
from hidim.provenance import atomic_write_bytes

__all__ = ["OOD_KINDS", "OodItem", "ood_arrays", "ood_items", "ct_slice_dataset", "write_ood"]

OOD_KINDS: tuple[str, ...] = ("ct_volume", "natural_clip", "noise", "blank")


@dataclass(frozen=True)
class OodItem:
    """One OOD input: its kind and pixels (uint8 clip ``[T,H,W]``/``[T,H,W,3]`` or int16 CT)."""

    kind: str
    pixels: np.ndarray


def _rng(seed: int, kind: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 2, OOD_KINDS.index(kind)]))


def _ct_volume(rng: np.random.Generator, slices: int, size: int) -> np.ndarray:
    """int16 HU ``[slices, size, size]``: chest-like ellipses with noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    y, x = (yy - size / 2) / (size / 2), (xx - size / 2) / (size / 2)
    z = np.linspace(-1.0, 1.0, slices, dtype=np.float32)[:, None, None]
    hu = np.full((slices, size, size), -1000.0, dtype=np.float32)
    body = (x / 0.85) ** 2 + ((y - 0.05) / 0.6) ** 2 <= 1.0
    hu[:, body] = 40.0
    lung_l = ((x + 0.38) / 0.3) ** 2 + ((y + 0.02) / (0.42 - 0.1 * z**2)) ** 2 <= 1.0
    lung_r = ((x - 0.38) / 0.3) ** 2 + ((y + 0.02) / (0.42 - 0.1 * z**2)) ** 2 <= 1.0
    hu[lung_l | lung_r] = -820.0
    spine = (x / 0.09) ** 2 + ((y - 0.45) / 0.09) ** 2 <= 1.0
    hu[:, spine] = 700.0
    table = (np.abs(y - 0.8) < 0.02) & (np.abs(x) < 0.9)
    hu[:, table] = 200.0
    hu += rng.normal(0.0, 15.0, hu.shape).astype(np.float32)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)


def _natural_clip(rng: np.random.Generator, frames: int, rows: int, cols: int) -> np.ndarray:
    """uint8 ``[T, rows, cols]``: 1/f texture panning, with moving bright and dark discs."""
    big = 2 * max(rows, cols)
    fy = np.fft.fftfreq(big)[:, None]
    fx = np.fft.fftfreq(big)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / big)
    phase = np.exp(2j * np.pi * rng.random((big, big)))
    field = np.real(np.fft.ifft2(amp * phase))
    field = (field - field.min()) / (np.ptp(field) + 1e-9)
    out = np.empty((frames, rows, cols), dtype=np.float32)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    for t in range(frames):
        oy, ox = int(t * 0.7) % (big - rows), int(t * 1.3) % (big - cols)
        img = field[oy : oy + rows, ox : ox + cols].astype(np.float32)
        cy, cx = rows * (0.3 + 0.4 * t / frames), cols * (0.7 - 0.4 * t / frames)
        img = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < (rows / 7) ** 2, 0.95, img)
        img = np.where(
            (yy - rows / 2) ** 2 + (xx - cols * t / frames) ** 2 < (rows / 9) ** 2, 0.05, img
        )
        out[t] = img
    return np.rint(out * 255.0).astype(np.uint8)


def ood_arrays(
    config: PhantomConfig | None = None,
    *,
    seed: int | None = None,
    rows: int | None = None,
    cols: int | None = None,
    frames: int = 48,
    rgb: bool | None = None,
) -> dict[str, np.ndarray]:
    """The four OOD inputs as float32 ``[C, T, H, W]`` arrays.

    Args:
        config: Take seed, frame size and colour from this phantom config (default config
            when ``None``); the keyword arguments override it.
        seed: Random seed.
        rows, cols: Clip size (the CT volume is ``frames // 2`` slices of ``cols x cols``).
        frames: Clip length.
        rgb: Three-channel clips (the CT stays one channel).

    Returns:
        ``{kind: array}`` for every kind in :data:`OOD_KINDS`.
    """
    cfg = config or PhantomConfig()
    layout = make_layout(cfg.size, header_rows(cfg.text_px))
    items = ood_items(
        cfg.seed if seed is None else seed,
        layout.rows if rows is None else rows,
        layout.cols if cols is None else cols,
        frames,
        cfg.color == "rgb" if rgb is None else rgb,
    )
    return {item.kind: _as_cthw(item.pixels) for item in items}


def ood_items(seed: int, rows: int, cols: int, frames: int, rgb: bool) -> list[OodItem]:
    """The OOD inputs as stored pixels (see :class:`OodItem`)."""
    ct = _ct_volume(_rng(seed, "ct_volume"), max(8, frames // 2), cols)
    natural = _natural_clip(_rng(seed, "natural_clip"), frames, rows, cols)
    noise = _rng(seed, "noise").integers(0, 256, (frames, rows, cols), dtype=np.uint8)
    blank = np.zeros((frames, rows, cols), dtype=np.uint8)
    clips = {"natural_clip": natural, "noise": noise, "blank": blank}
    if rgb:
        clips = {k: np.repeat(v[..., None], 3, axis=-1) for k, v in clips.items()}
    return [OodItem("ct_volume", ct)] + [OodItem(k, v) for k, v in clips.items()]


def _as_cthw(pixels: np.ndarray) -> np.ndarray:
    arr = pixels.astype(np.float32)
    if arr.ndim == 4:  # [T,H,W,3]
        return np.ascontiguousarray(np.moveaxis(arr, -1, 0))
    return arr[None]


def ct_slice_dataset(
    hu: np.ndarray,
    *,
    index: int,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    frame_of_reference_uid: str,
    patient: dict[str, Any],
    study_day: date,
    spacing_mm: float = 1.5,
) -> Dataset:
    """One CT Image Storage slice (int16 HU stored directly, intercept 0)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = dicom_date(study_day)
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = patient["accession"]
    ds.Modality = "CT"
    ds.Manufacturer = "Aurora Medical Systems"
    ds.InstitutionName = patient["institution"]
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = "CHEST AXIAL"
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.PatientName = patient["name"]
    ds.PatientID = patient["patient_id"]
    ds.PatientBirthDate = patient["birth_date"]
    ds.PatientSex = patient["sex"]
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = patient["accession"][-6:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = index + 1
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = [
        -hu.shape[1] * spacing_mm / 2,
        -hu.shape[0] * spacing_mm / 2,
        index * spacing_mm,
    ]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = spacing_mm
    ds.SliceLocation = index * spacing_mm
    ds.PixelSpacing = [spacing_mm, spacing_mm]
    ds.KVP = 120
    ds.AcquisitionNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(hu.shape[0]), int(hu.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = np.ascontiguousarray(hu.astype("<i2")).tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def _ood_patient(config: PhantomConfig, k: int, kind: str) -> PatientRecord:
    seed = config.seed
    site = config.sites[k % len(config.sites)]
    family, given = person_name(seed, "ood", k, "F" if k % 2 else "M")
    day = config.cohort.enrolment_start
    return PatientRecord(
        index=-1 - k,
        patient_id=f"OOD{derive_int(seed, 'ood-id', k, 10**6):06d}",
        family_name=family,
        given_name=given,
        sex="F" if k % 2 else "M",
        age=50,
        birth_date=day.replace(year=day.year - 50),
        ethnicity=config.cohort.ethnicity_groups[0],
        income=config.cohort.income_brackets[0],
        site=site.name,
        study_date=day,
        study_time="120000",
        accession=f"X{derive_int(seed, 'ood-accession', k, 10**9):09d}",
        hr_bpm=70.0,
        ef_true=float("nan"),
        ef_recorded=float("nan"),
        label_true=0,
        label_recorded=0,
        true_risk=float("nan"),
        event_time_true=float("nan"),
        time=float("nan"),
        event_true=0,
        event_recorded=0,
        label_missed=False,
        event_missed=False,
        shortcut=False,
    )


def write_ood(out_dir: Path, config: PhantomConfig, layout: Layout) -> list[dict[str, Any]]:
    """Write the OOD inputs under ``out_dir`` (one folder per kind); return truth entries.

    Clips carry the same echo header as the cohort (Ultrasound Multi-frame, view A4C); the CT
    volume is a CT Image Storage series. Every OOD input is its own patient and study.
    """
    seed = config.seed
    frames = max(16, int(round(config.cycles * 60.0 / 70.0 * 50)))
    items = ood_items(seed, layout.rows, layout.cols, frames, config.color == "rgb")
    entries: list[dict[str, Any]] = []
    for k, item in enumerate(items):
        patient = _ood_patient(config, k, item.kind)
        site = config.site(patient.site)
        study_uid = derive_uid(seed, f"ood-study-{item.kind}", k)
        series_uid = derive_uid(seed, f"ood-series-{item.kind}", k)
        folder = out_dir / item.kind
        files: list[Path] = []
        if item.kind == "ct_volume":
            ident = {
                "name": patient.dicom_name,
                "patient_id": patient.patient_id,
                "birth_date": dicom_date(patient.birth_date),
                "sex": patient.sex,
                "accession": patient.accession,
                "institution": site.institution_name,
            }
            for i in range(item.pixels.shape[0]):
                ds = ct_slice_dataset(
                    item.pixels[i],
                    index=i,
                    study_uid=study_uid,
                    series_uid=series_uid,
                    sop_uid=derive_uid(seed, "ood-ct-sop", i),
                    frame_of_reference_uid=derive_uid(seed, "ood-ct-for", 0),
                    patient=ident,
                    study_day=patient.study_date,
                )
                files.append(folder / f"CT{i + 1:04d}.dcm")
                atomic_write_bytes(files[-1], dataset_bytes(ds))
        else:
            header = SeriesHeader(
                view="A4C",
                study_uid=study_uid,
                series_uid=series_uid,
                sop_uid=derive_uid(seed, f"ood-sop-{item.kind}", k),
                series_number=1,
                series_time="120500",
                fps=50,
                operator="ARCHER^ADA",
                referring="BRANDT^BEN",
                performing="HOLT^MAX",
            )
            ds = us_multiframe_dataset(
                item.pixels,
                patient=patient,
                site=site,
                header=header,
                layout=layout,
                include_us_region=config.include_us_regions,
                private_tags=config.private_tags,
            )
            files.append(folder / "01_A4C.dcm")
            atomic_write_bytes(files[-1], dataset_bytes(ds, rle=config.transfer_syntax == "rle"))
        entries.append(
            {
                "kind": item.kind,
                "patient_id": patient.patient_id,
                "study_uid": study_uid,
                "series_uid": series_uid,
                "modality": "CT" if item.kind == "ct_volume" else "US",
                "shape": list(item.pixels.shape),
                "files": [f.relative_to(out_dir.parent).as_posix() for f in files],
            }
        )
    return entries
