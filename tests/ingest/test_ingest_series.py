"""Slice ordering and spacing: properties over synthetic geometry (hypothesis)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hidim.ingest.series import InstanceHeader, group_series


def _rotation(angles: tuple[float, float, float]) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _header(i: int, position: np.ndarray, orientation: np.ndarray, **kw: object) -> InstanceHeader:
    fields = {
        "path": Path(f"/x/{i:03d}.dcm"),
        "series_uid": "1.2.3",
        "study_uid": "1.2",
        "patient_id": "p",
        "modality": "CT",
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "sop_instance_uid": f"1.2.3.{i}",
        "instance_number": kw.pop("instance_number", i + 1),
        "position": tuple(float(v) for v in position),
        "orientation": tuple(float(v) for v in orientation),
        "trigger_time_ms": None,
        "rows": 4,
        "cols": 4,
        "samples_per_pixel": 1,
        "n_frames": 1,
        "is_multiframe": False,
    }
    fields.update(kw)
    return InstanceHeader(**fields)  # type: ignore[arg-type]


angles = st.tuples(*[st.floats(-np.pi, np.pi, allow_nan=False)] * 3)


@settings(max_examples=60, deadline=None)
@given(
    angles=angles,
    n=st.integers(2, 12),
    spacing=st.floats(0.3, 10.0),
    origin=st.tuples(*[st.floats(-300, 300)] * 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_order_and_spacing_for_any_orientation_and_file_order(angles, n, spacing, origin, seed):
    rot = _rotation(angles)
    row, col, normal = rot[:, 0], rot[:, 1], rot[:, 2]
    orientation = np.concatenate([row, col])
    # Instance numbers deliberately reversed: position must win over InstanceNumber.
    headers = [
        _header(k, np.asarray(origin) + k * spacing * normal, orientation, instance_number=n - k)
        for k in range(n)
    ]
    shuffled = [headers[i] for i in np.random.default_rng(seed).permutation(n)]
    (unit,) = group_series(shuffled)
    assert [p.name for p in unit.files] == [h.path.name for h in headers]
    assert unit.layout == "volume"
    assert unit.slice_spacing_mm == pytest.approx(spacing, rel=1e-6, abs=1e-6)
    assert unit.spacing_regular


def test_missing_geometry_falls_back_to_instance_number():
    orientation = np.array([1, 0, 0, 0, 1, 0])
    headers = [
        _header(i, np.zeros(3), orientation, instance_number=number)
        for i, number in enumerate((3, 1, 2))
    ]
    headers = [replace(h, position=None) for h in headers]
    (unit,) = group_series(headers)
    assert [p.name for p in unit.files] == ["001.dcm", "002.dcm", "000.dcm"]
    assert unit.layout == "stack" and unit.slice_spacing_mm is None


def test_irregular_gaps_are_flagged():
    orientation = np.array([1, 0, 0, 0, 1, 0])
    zs = [0.0, 1.0, 2.0, 4.0, 5.0]  # one missing slice
    headers = [_header(i, np.array([0, 0, z]), orientation) for i, z in enumerate(zs)]
    (unit,) = group_series(headers)
    assert unit.slice_spacing_mm == pytest.approx(1.0)
    assert unit.spacing_regular is False


def test_slices_times_phases_is_mixed_and_grouped_by_position():
    orientation = np.array([1, 0, 0, 0, 1, 0])
    headers = []
    for i, (z, t) in enumerate([(z, t) for t in (0.0, 50.0) for z in (0.0, 5.0)]):
        headers.append(_header(i, np.array([0, 0, z]), orientation, trigger_time_ms=t))
    (unit,) = group_series(headers)
    assert unit.layout == "mixed" and unit.slice_spacing_mm is None
    assert [p.name for p in unit.files] == ["000.dcm", "002.dcm", "001.dcm", "003.dcm"]


def test_ultrasound_stills_are_not_stacked_into_a_fake_clip():
    orientation = np.array([1, 0, 0, 0, 1, 0])
    stills = [
        replace(
            _header(i, np.zeros(3), orientation, modality="US"), position=None, orientation=None
        )
        for i in range(3)
    ]
    loop = replace(
        stills[0], path=Path("/x/loop.dcm"), sop_instance_uid="9.9", is_multiframe=True, n_frames=40
    )
    units = group_series([*stills, loop])
    assert len(units) == 4 and all(u.n_instances == 1 for u in units)
    assert len({u.key_uid for u in units}) == 4  # SOPInstanceUIDs: distinct, stable keys
    assert {u.series_uid for u in units} == {"1.2.3"}


def test_ct_slices_without_geometry_still_stack():
    orientation = np.array([1, 0, 0, 0, 1, 0])
    slices = [replace(_header(i, np.zeros(3), orientation), position=None) for i in range(3)]
    (unit,) = group_series(slices)
    assert unit.n_instances == 3 and unit.key_uid == "1.2.3"
