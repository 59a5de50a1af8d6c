"""Series: instances grouped by SeriesInstanceUID, ordered, with their slice spacing.

Ordering of single-frame instances (CT/MR slices, or frames of a cine stored one per file):

* when every instance has ImagePositionPatient and one shared ImageOrientationPatient, the
  position is projected on the slice normal (row cosines x column cosines) and instances
  are sorted by that distance (ascending along the normal). All distinct → ``layout
  "volume"`` with ``slice_spacing_mm`` = median gap; all at one position → ``"cine"``
  ordered by (TriggerTime, InstanceNumber); a mix (several slices x several phases) →
  ``"mixed"`` ordered by (distance, TriggerTime, InstanceNumber) and no single spacing;
* otherwise InstanceNumber (then file name) and ``layout "stack"``.

Multi-frame instances are never stacked with other instances: one multi-frame instance is
one readable unit (``layout "multiframe"``), its frames in stored order. Nor are
single-frame images of projection modalities without patient geometry (ultrasound stills,
radiographs): stacking unrelated stills would fake a clip. When a series holds several
such units (an echo study often puts every loop and still in one series) each becomes its
own :class:`SeriesInfo`; ``key_uid`` is then the SOPInstanceUID so that every unit has a
distinct, stable key.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "STACKABLE_MODALITIES",
    "InstanceHeader",
    "SeriesInfo",
    "group_series",
    "order_instances",
    "frame_spacing",
]

#: Modalities whose single-frame instances are slices (or phases) of one acquisition, so
#: they are stacked along T even without ImagePositionPatient (old ACR-NEMA exports).
STACKABLE_MODALITIES = frozenset({"CT", "MR", "PT", "NM", "ST", "OPT", "OCT"})

# Positions closer than this along the normal are "the same slice" (mm).
_SAME_POSITION_MM = 1e-3


@dataclass(frozen=True, slots=True)
class InstanceHeader:
    """What the header-only scan keeps of one image instance (no pixel data, no PHI beyond IDs)."""

    path: Path
    series_uid: str
    study_uid: str | None
    patient_id: str | None
    modality: str | None
    sop_class_uid: str
    sop_instance_uid: str | None
    instance_number: int | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    trigger_time_ms: float | None
    rows: int
    cols: int
    samples_per_pixel: int
    n_frames: int
    is_multiframe: bool
    frame_positions: tuple[tuple[float, float, float], ...] | None = None
    series_number: int | None = None
    series_description: str | None = None


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """One readable unit: the ordered files of a series (or one multi-frame instance).

    Attributes:
        series_uid: SeriesInstanceUID.
        study_uid: StudyInstanceUID (``None`` if absent).
        patient_id: PatientID as found in the header (pseudonymous after de-identification).
        modality: Modality (``"US"``, ``"CT"``, ``"MR"``...).
        sop_class_uid: SOPClassUID of the instances.
        files: paths in reading order (see the module docstring).
        n_instances: ``len(files)``.
        slice_spacing_mm: distance between consecutive slices along the normal (median), or
            ``None`` for cine loops, single images and unordered stacks.
        key_uid: stable key of this unit: ``series_uid``, or the SOPInstanceUID when the
            series was split into its multi-frame instances.
        layout: ``"volume"``, ``"cine"``, ``"mixed"``, ``"stack"``, ``"single"`` or
            ``"multiframe"``.
        n_frames: frames the unit will have along T once read.
        rows: Rows of the first instance.
        cols: Columns of the first instance.
        spacing_regular: ``False`` when slice gaps differ by more than 1 % (or 0.01 mm).
        consistent: ``False`` when instances differ in Rows/Columns/SamplesPerPixel;
            :func:`hidim.ingest.read_series` then raises with the details.
        sop_instance_uids: SOPInstanceUIDs in reading order.
        series_number: SeriesNumber.
        series_description: SeriesDescription.
    """

    series_uid: str
    study_uid: str | None
    patient_id: str | None
    modality: str | None
    sop_class_uid: str
    files: tuple[Path, ...]
    n_instances: int
    slice_spacing_mm: float | None
    key_uid: str = ""
    layout: str = "stack"
    n_frames: int = 0
    rows: int = 0
    cols: int = 0
    spacing_regular: bool = True
    consistent: bool = True
    sop_instance_uids: tuple[str | None, ...] = field(default=())
    series_number: int | None = None
    series_description: str | None = None

    def __post_init__(self) -> None:
        if not self.key_uid:
            object.__setattr__(self, "key_uid", self.series_uid)


def _normal(orientation: Sequence[float]) -> np.ndarray:
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:], dtype=float)
    return np.cross(row, col)


def _spacing(distances: Sequence[float]) -> tuple[float | None, bool]:
    """Median gap of sorted distances and whether the gaps are regular."""
    if len(distances) < 2:
        return None, True
    gaps = np.abs(np.diff(np.asarray(distances, dtype=float)))
    median = float(np.median(gaps))
    if median <= _SAME_POSITION_MM:
        return None, True
    regular = bool(np.all(np.abs(gaps - median) <= max(0.01, 0.01 * median)))
    return median, regular


def frame_spacing(
    positions: Sequence[Sequence[float]] | None, orientation: Sequence[float] | None
) -> tuple[float | None, bool]:
    """Slice spacing of frames kept in stored order (Enhanced CT/MR), if they form a stack.

    Returns ``(None, True)`` unless the projected positions are strictly monotonic.
    """
    if not positions or orientation is None or len(positions) < 2:
        return None, True
    normal = _normal(orientation)
    dist = [float(np.dot(np.asarray(p, dtype=float), normal)) for p in positions]
    diffs = np.diff(dist)
    if not (np.all(diffs > _SAME_POSITION_MM) or np.all(diffs < -_SAME_POSITION_MM)):
        return None, True
    return _spacing(dist)


def _instance_key(h: InstanceHeader) -> tuple[float, int, str]:
    return (
        h.instance_number if h.instance_number is not None else float("inf"),
        0,
        h.path.name,
    )


def order_instances(
    headers: Sequence[InstanceHeader],
) -> tuple[list[InstanceHeader], str, float | None, bool]:
    """Order single-frame instances of one series.

    Returns:
        ``(ordered, layout, slice_spacing_mm, spacing_regular)``; see the module docstring.
    """
    if len(headers) == 1:
        return list(headers), "single", None, True
    geometry = [h for h in headers if h.position is not None and h.orientation is not None]
    same_orientation = len(geometry) == len(headers) and all(
        np.allclose(h.orientation, headers[0].orientation, atol=1e-4)  # type: ignore[arg-type]
        for h in headers
    )
    if not same_orientation:
        return sorted(headers, key=_instance_key), "stack", None, True
    normal = _normal(headers[0].orientation)  # type: ignore[arg-type]
    dist = {id(h): float(np.dot(np.asarray(h.position), normal)) for h in headers}
    values = sorted(dist.values())
    n_unique = 1 + sum(
        1 for a, b in zip(values, values[1:], strict=False) if b - a > _SAME_POSITION_MM
    )

    def time_key(h: InstanceHeader) -> tuple[float, float, str]:
        trig = h.trigger_time_ms if h.trigger_time_ms is not None else float("inf")
        inst = h.instance_number if h.instance_number is not None else float("inf")
        return (trig, inst, h.path.name)

    if n_unique == 1:
        return sorted(headers, key=time_key), "cine", None, True
    if n_unique == len(headers):
        ordered = sorted(headers, key=lambda h: (dist[id(h)], h.path.name))
        spacing, regular = _spacing([dist[id(h)] for h in ordered])
        return ordered, "volume", spacing, regular
    ordered = sorted(headers, key=lambda h: (round(dist[id(h)] / _SAME_POSITION_MM), *time_key(h)))
    return ordered, "mixed", None, True


def _unit(headers: list[InstanceHeader], *, key_uid: str) -> SeriesInfo:
    first = headers[0]
    if first.is_multiframe:
        ordered, layout = headers, "multiframe"
        spacing, regular = frame_spacing(first.frame_positions, first.orientation)
    else:
        ordered, layout, spacing, regular = order_instances(headers)
    shapes = {(h.rows, h.cols, h.samples_per_pixel) for h in ordered}
    return SeriesInfo(
        series_uid=first.series_uid,
        study_uid=first.study_uid,
        patient_id=first.patient_id,
        modality=first.modality,
        sop_class_uid=first.sop_class_uid,
        files=tuple(h.path for h in ordered),
        n_instances=len(ordered),
        slice_spacing_mm=spacing,
        key_uid=key_uid,
        layout=layout,
        n_frames=sum(h.n_frames for h in ordered),
        rows=ordered[0].rows,
        cols=ordered[0].cols,
        spacing_regular=regular,
        consistent=len(shapes) == 1,
        sop_instance_uids=tuple(h.sop_instance_uid for h in ordered),
        series_number=first.series_number,
        series_description=first.series_description,
    )


def _stackable(h: InstanceHeader) -> bool:
    """Single-frame instances that form a volume or cine when put together."""
    has_geometry = h.position is not None and h.orientation is not None
    return has_geometry or (h.modality or "").upper() in STACKABLE_MODALITIES


def group_series(headers: Iterable[InstanceHeader]) -> list[SeriesInfo]:
    """Group instance headers into readable units, sorted by (study, series number, key).

    Stackable single-frame instances of a series (cross-sectional modalities, or any with
    patient geometry) form one unit. Each multi-frame instance, and each single-frame image
    of a projection modality without geometry (an ultrasound still, a radiograph), is its
    own unit when the series holds more than one unit; ``key_uid`` is then its
    SOPInstanceUID.
    """
    by_series: dict[str, list[InstanceHeader]] = defaultdict(list)
    for header in headers:
        by_series[header.series_uid].append(header)
    units: list[SeriesInfo] = []
    for series_uid, members in by_series.items():
        alone = [h for h in members if h.is_multiframe or not _stackable(h)]
        stack = [h for h in members if not (h.is_multiframe or not _stackable(h))]
        split = len(alone) + (1 if stack else 0) > 1
        for h in sorted(alone, key=_instance_key):
            key = (h.sop_instance_uid or str(h.path)) if split else series_uid
            units.append(_unit([h], key_uid=key))
        if stack:
            units.append(_unit(stack, key_uid=series_uid))
    units.sort(
        key=lambda s: (
            s.study_uid or "",
            s.series_number if s.series_number is not None else 1 << 31,
            s.series_uid,
            s.key_uid,
        )
    )
    return units
