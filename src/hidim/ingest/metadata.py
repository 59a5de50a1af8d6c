"""Scan-level metadata for the manifest: :class:`ScanMetadata` and how each field is found.

Frame rate precedence (first usable value wins; ``fps_source`` names it):

1. the attribute named by FrameIncrementPointer, when it is FrameTime or FrameTimeVector;
2. ``FrameTime`` (ms per frame) → ``1000 / FrameTime``;
3. ``FrameTimeVector`` (ms between frames; the first entry is 0) → ``1000 / mean(gaps)``;
4. ``CineRate`` (frames/s, as recorded by the modality);
5. ``RecommendedDisplayFrameRate`` (frames/s, a display hint);
6. ``TriggerTime`` gaps between single-frame instances at one position (cine MR);

and ``None`` for volumes and single images (``T == 1``).

Pixel spacing: PixelSpacing (top level or PixelMeasuresSequence), else ImagerPixelSpacing,
else the first 2-D tissue region of SequenceOfUltrasoundRegions with cm units (x 10 → mm).
``spacing_row_mm`` is the distance between rows (vertical), ``spacing_col_mm`` between
columns. View labels come from :mod:`hidim.ingest.views`, MR classes from
:mod:`hidim.ingest.mrseq`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from pydicom.dataset import Dataset
from pydicom.valuerep import DA, DT, TM

from hidim.ingest.dsutil import (
    find_in_groups,
    functional_group_item,
    get_float,
    get_floats,
    get_int,
    get_str,
    transfer_syntax,
)
from hidim.ingest.mrseq import classify_mr_sequence, mr_evidence
from hidim.ingest.pixels import PixelInfo
from hidim.ingest.series import SeriesInfo
from hidim.ingest.usregions import us_regions
from hidim.ingest.views import view_label

__all__ = ["ScanMetadata", "MANIFEST_COLUMNS", "build_metadata", "frame_rate", "pixel_spacing"]

MANIFEST_COLUMNS = (
    "series_uid",
    "study_uid",
    "patient_key",
    "modality",
    "view",
    "channels",
    "n_frames",
    "rows",
    "cols",
    "fps_original",
    "fps_source",
    "spacing_row_mm",
    "spacing_col_mm",
    "slice_thickness_mm",
    "slice_spacing_mm",
    "mr_sequence",
    "manufacturer",
    "model",
    "institution",
    "study_date",
    "acquisition_datetime",
    "photometric_interpretation",
    "transfer_syntax_uid",
    "sop_class_uid",
    "us_regions",
    "deidentified",
)


@dataclass(slots=True)
class ScanMetadata:
    """Metadata of one read unit (series or multi-frame instance).

    The first block are the manifest columns of ``docs/architecture.md``; the rest are
    extra columns (``to_row`` returns them too). Lengths in mm, rates in frames/s.
    """

    series_uid: str
    study_uid: str | None
    patient_key: str | None
    modality: str | None
    view: str | None
    channels: int
    n_frames: int
    rows: int
    cols: int
    fps_original: float | None
    fps_source: str | None
    spacing_row_mm: float | None
    spacing_col_mm: float | None
    slice_thickness_mm: float | None
    slice_spacing_mm: float | None
    mr_sequence: str | None
    manufacturer: str | None
    model: str | None
    institution: str | None
    study_date: str | None
    acquisition_datetime: str | None
    photometric_interpretation: str | None
    transfer_syntax_uid: str | None
    sop_class_uid: str | None
    us_regions: str | None
    deidentified: bool
    # Extra columns.
    key_uid: str = ""
    layout: str | None = None
    n_instances: int = 1
    view_source: str | None = None
    spacing_source: str | None = None
    frame_time_ms: float | None = None
    intensity_unit: str | None = None
    pixel_transforms: str | None = None
    window_center: float | None = None
    window_width: float | None = None
    bits_stored: int | None = None
    lossy_compressed: bool = False
    series_number: int | None = None
    series_description: str | None = None
    body_part: str | None = None
    heart_rate_bpm: float | None = None

    def to_row(self) -> dict[str, Any]:
        """Manifest row: the architecture's columns first, then the extra ones."""
        row = asdict(self)
        return {name.name: row[name.name] for name in fields(self)}


def _iso_date(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return DA(value).isoformat()
    except (ValueError, TypeError, AttributeError):
        return None


def _iso_datetime(ds: Dataset) -> str | None:
    text = get_str(ds, "AcquisitionDateTime") or get_str(
        functional_group_item(ds, "FrameContentSequence"), "FrameAcquisitionDateTime"
    )
    if text:
        try:
            return DT(text).replace(tzinfo=None).isoformat()
        except (ValueError, TypeError, AttributeError):
            pass
    for date_kw, time_kw in (
        ("AcquisitionDate", "AcquisitionTime"),
        ("ContentDate", "ContentTime"),
        ("SeriesDate", "SeriesTime"),
        ("StudyDate", "StudyTime"),
    ):
        date = _iso_date(get_str(ds, date_kw))
        if date is None:
            continue
        time_text = get_str(ds, time_kw)
        try:
            time = TM(time_text).isoformat() if time_text else None
        except (ValueError, TypeError, AttributeError):
            time = None
        return f"{date}T{time}" if time else date
    return None


def frame_rate(
    ds: Dataset, n_frames: int, trigger_times_ms: Sequence[float] = ()
) -> tuple[float | None, str | None, float | None]:
    """Original frame rate, the attribute it came from, and the frame time in ms.

    Args:
        ds: the (first) dataset of the unit.
        n_frames: frames along T; ``<= 1`` gives no rate.
        trigger_times_ms: TriggerTime of each single-frame instance, in reading order.

    Returns:
        ``(fps, source, frame_time_ms)``, all ``None`` when the header does not say.
    """
    if n_frames <= 1:
        return None, None, None
    candidates: dict[str, float] = {}
    frame_time = get_float(ds, "FrameTime")
    if frame_time and frame_time > 0:
        candidates["FrameTime"] = frame_time
    vector = get_floats(ds, "FrameTimeVector")
    if vector and len(vector) > 1:
        gaps = [v for v in vector[1:] if v > 0]
        if gaps:
            candidates["FrameTimeVector"] = sum(gaps) / len(gaps)
    pointer = ds.get("FrameIncrementPointer")
    pointers = (
        list(pointer)
        if isinstance(pointer, list | tuple) or hasattr(pointer, "__iter__")
        else [pointer]
    )
    names = {0x00181063: "FrameTime", 0x00181065: "FrameTimeVector"}
    for tag in pointers:
        name = names.get(int(tag)) if tag is not None else None
        if name in candidates:
            return 1000.0 / candidates[name], name, candidates[name]
    for name in ("FrameTime", "FrameTimeVector"):
        if name in candidates:
            return 1000.0 / candidates[name], name, candidates[name]
    for name in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = get_float(ds, name)
        if rate and rate > 0:
            return rate, name, 1000.0 / rate
    if len(trigger_times_ms) == n_frames and n_frames > 1:
        gaps = [b - a for a, b in zip(trigger_times_ms, trigger_times_ms[1:], strict=False)]
        if all(g > 0 for g in gaps):
            mean = sum(gaps) / len(gaps)
            return 1000.0 / mean, "TriggerTime", mean
    return None, None, None


def pixel_spacing(
    ds: Dataset, regions: Sequence[dict[str, Any]] = ()
) -> tuple[float | None, float | None, str | None]:
    """``(row_mm, col_mm, source)`` from the first attribute that gives it."""
    for keyword, groups in (
        ("PixelSpacing", ("PixelMeasuresSequence",)),
        ("ImagerPixelSpacing", ()),
    ):
        values = get_floats(ds, keyword)
        if values is None:
            for group in groups:
                values = get_floats(functional_group_item(ds, group), keyword)
                if values:
                    break
        if values and len(values) == 2 and all(v > 0 for v in values):
            return values[0], values[1], keyword
    for region in regions:
        if (
            region["spatial_format"] == "2D"
            and region["units_x"] == "cm"
            and region["units_y"] == "cm"
        ):
            dx, dy = region["delta_x"], region["delta_y"]
            if dx and dy and dx > 0 and dy > 0:
                return dy * 10.0, dx * 10.0, "SequenceOfUltrasoundRegions"
    return None, None, None


def build_metadata(
    ds: Dataset,
    *,
    series: SeriesInfo,
    shape: tuple[int, int, int, int],
    pixel_info: PixelInfo,
    b_values: Sequence[float] = (),
    trigger_times_ms: Sequence[float] = (),
) -> ScanMetadata:
    """Assemble :class:`ScanMetadata` from the unit's first dataset and what reading found.

    Args:
        ds: first dataset of the unit in reading order.
        series: the unit.
        shape: the decoded array shape ``[C, T, H, W]``.
        pixel_info: what :func:`hidim.ingest.pixels.decode_pixels` applied.
        b_values: diffusion b-values seen across the unit's instances.
        trigger_times_ms: TriggerTime per instance (single-frame cine).
    """
    channels, n_frames, rows, cols = shape
    regions = us_regions(ds)
    row_mm, col_mm, spacing_source = pixel_spacing(ds, regions)
    fps, fps_source, frame_ms = (
        (None, None, None)
        if series.layout in ("volume", "mixed")
        else frame_rate(ds, n_frames, trigger_times_ms)
    )
    modality = get_str(ds, "Modality")
    mr_class = None
    if modality == "MR":
        evidence = mr_evidence(ds)
        evidence["b_values"] = tuple(evidence["b_values"]) + tuple(b_values)  # type: ignore[arg-type]
        mr_class = str(classify_mr_sequence(**evidence))  # type: ignore[arg-type]
    view, view_source = view_label(ds)
    slice_spacing = series.slice_spacing_mm
    if slice_spacing is None and series.layout == "multiframe" and n_frames > 1 and fps is None:
        slice_spacing = find_in_groups(ds, "SpacingBetweenSlices", ("PixelMeasuresSequence",))
    ts = transfer_syntax(ds)
    lossy = get_str(ds, "LossyImageCompression") == "01" or ts in _LOSSY_SYNTAXES
    intensity_unit = pixel_info.rescale_type if pixel_info.channels == 1 else None
    return ScanMetadata(
        series_uid=series.series_uid,
        study_uid=series.study_uid,
        patient_key=get_str(ds, "PatientID"),
        modality=modality,
        view=view,
        channels=channels,
        n_frames=n_frames,
        rows=rows,
        cols=cols,
        fps_original=fps,
        fps_source=fps_source,
        spacing_row_mm=row_mm,
        spacing_col_mm=col_mm,
        slice_thickness_mm=find_in_groups(ds, "SliceThickness", ("PixelMeasuresSequence",)),
        slice_spacing_mm=slice_spacing,
        mr_sequence=mr_class,
        manufacturer=get_str(ds, "Manufacturer"),
        model=get_str(ds, "ManufacturerModelName"),
        institution=get_str(ds, "InstitutionName"),
        study_date=_iso_date(get_str(ds, "StudyDate")),
        acquisition_datetime=_iso_datetime(ds),
        photometric_interpretation=pixel_info.photometric_in,
        transfer_syntax_uid=str(ts),
        sop_class_uid=get_str(ds, "SOPClassUID"),
        us_regions=json.dumps(regions, sort_keys=True) if regions else None,
        deidentified=(get_str(ds, "PatientIdentityRemoved") or "").upper() == "YES",
        key_uid=series.key_uid,
        layout=series.layout,
        n_instances=series.n_instances,
        view_source=view_source,
        spacing_source=spacing_source,
        frame_time_ms=frame_ms,
        intensity_unit=intensity_unit,
        pixel_transforms="; ".join(pixel_info.transforms) or None,
        window_center=find_in_groups(ds, "WindowCenter", ("FrameVOILUTSequence",)),
        window_width=find_in_groups(ds, "WindowWidth", ("FrameVOILUTSequence",)),
        bits_stored=get_int(ds, "BitsStored"),
        lossy_compressed=bool(lossy),
        series_number=get_int(ds, "SeriesNumber"),
        series_description=get_str(ds, "SeriesDescription"),
        body_part=get_str(ds, "BodyPartExamined"),
        heart_rate_bpm=get_float(ds, "HeartRate") or None,
    )


_LOSSY_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",  # JPEG baseline
        "1.2.840.10008.1.2.4.51",  # JPEG extended
        "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2
        "1.2.840.10008.1.2.4.100",  # MPEG2
        "1.2.840.10008.1.2.4.101",
        "1.2.840.10008.1.2.4.102",  # H.264
        "1.2.840.10008.1.2.4.103",
        "1.2.840.10008.1.2.4.104",
        "1.2.840.10008.1.2.4.105",
        "1.2.840.10008.1.2.4.106",
        "1.2.840.10008.1.2.4.107",  # HEVC
        "1.2.840.10008.1.2.4.108",
        "1.2.840.10008.1.2.4.203",  # HTJ2K (may be lossy)
    }
)
