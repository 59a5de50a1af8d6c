"""Scan metadata: frame-rate precedence, view labels, spacing, manifest row."""

from __future__ import annotations

import json

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from hidim.ingest import MANIFEST_COLUMNS, ScanMetadata, read_file, view_from_text
from hidim.ingest.metadata import frame_rate, pixel_spacing
from hidim.ingest.usregions import us_regions
from hidim.ingest.views import view_label


def _ds(**attrs: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("attrs", "fps", "source"),
    [
        ({"FrameTime": 20.0, "CineRate": 30, "RecommendedDisplayFrameRate": 25}, 50.0, "FrameTime"),
        ({"FrameTimeVector": [0, 40, 40, 40], "CineRate": 30}, 25.0, "FrameTimeVector"),
        ({"CineRate": 30, "RecommendedDisplayFrameRate": 25}, 30.0, "CineRate"),
        ({"RecommendedDisplayFrameRate": 25}, 25.0, "RecommendedDisplayFrameRate"),
        # The Frame Increment Pointer names the attribute that governs timing.
        (
            {
                "FrameTime": 20.0,
                "FrameTimeVector": [0, 40, 40, 40],
                "FrameIncrementPointer": Tag("FrameTimeVector"),
            },
            25.0,
            "FrameTimeVector",
        ),
        ({"FrameTime": 0.0, "CineRate": 30}, 30.0, "CineRate"),  # invalid values skipped
        ({}, None, None),
    ],
)
def test_frame_rate_precedence(attrs, fps, source):
    got_fps, got_source, _ = frame_rate(_ds(**attrs), n_frames=4)
    assert got_source == source
    assert got_fps == (pytest.approx(fps) if fps is not None else None)


def test_no_frame_rate_for_a_single_frame():
    assert frame_rate(_ds(FrameTime=20.0), n_frames=1) == (None, None, None)


def test_echo_cine_fps_from_frame_time(testdata):
    # examples_ybr_color.dcm is the same SonoSite cine at 30 frames (the 120-frame one
    # is checked in test_ingest_pixels).
    _, meta = read_file(testdata("examples_ybr_color.dcm"))
    assert meta.fps_source == "FrameTime" and meta.frame_time_ms == pytest.approx(33.333)
    assert meta.fps_original == pytest.approx(30.0, rel=1e-4)
    regions = json.loads(meta.us_regions)
    assert regions[0]["spatial_format"] == "2D" and regions[0]["data_type"] == "tissue"
    assert meta.spacing_source == "SequenceOfUltrasoundRegions"
    assert meta.spacing_row_mm == pytest.approx(regions[0]["delta_y"] * 10)


def test_pixel_spacing_precedence():
    region = _ds(
        RegionSpatialFormat=1,
        RegionDataType=1,
        PhysicalUnitsXDirection=3,
        PhysicalUnitsYDirection=3,
        PhysicalDeltaX=0.02,
        PhysicalDeltaY=0.03,
    )
    us = _ds(SequenceOfUltrasoundRegions=Sequence([region]))
    assert pixel_spacing(us, us_regions(us)) == (
        pytest.approx(0.3),
        pytest.approx(0.2),
        "SequenceOfUltrasoundRegions",
    )
    ct = _ds(PixelSpacing=[0.7, 0.6], ImagerPixelSpacing=[0.1, 0.1])
    assert pixel_spacing(ct) == (0.7, 0.6, "PixelSpacing")
    assert pixel_spacing(_ds()) == (None, None, None)


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Apical four chamber", "A4C"),
        ("A4C LV focus", "A4C"),
        ("AP2", "A2C"),
        ("apical long axis", "A3C"),
        ("Parasternal long axis", "PLAX"),
        ("PSAX mid papillary", "PSAX"),
        ("Subcostal four chamber", "SUBCOSTAL"),
        ("suprasternal notch", "SSN"),
        ("A5C", "A5C"),
        ("Adult Echo", None),
        (None, None),
    ],
)
def test_view_from_text(text, label):
    assert view_from_text(text) == label


def test_view_code_sequence_comes_first():
    code = _ds(
        CodeValue="399214001", CodingSchemeDesignator="SCT", CodeMeaning="Apical four chamber"
    )
    ds = _ds(Modality="US", SeriesDescription="PLAX", ViewCodeSequence=Sequence([code]))
    assert view_label(ds) == ("A4C", "ViewCodeSequence")
    ds = _ds(Modality="US", SeriesDescription="PLAX zoom")
    assert view_label(ds) == ("PLAX", "SeriesDescription")
    # Free text is not trusted outside ultrasound: a cardiac MR "SAX" stack is not PSAX.
    assert view_label(_ds(Modality="MR", SeriesDescription="cine SAX")) == (None, None)


def test_to_row_has_manifest_columns_in_order(testdata):
    _, meta = read_file(testdata("CT_small.dcm"))
    row = meta.to_row()
    assert tuple(row)[: len(MANIFEST_COLUMNS)] == MANIFEST_COLUMNS
    assert isinstance(meta, ScanMetadata)
    assert row["study_date"] == "2004-01-19"
    assert row["acquisition_datetime"].startswith("1997-04-30T11:29")
    assert row["deidentified"] is False
    assert row["spacing_row_mm"] == pytest.approx(0.661468)
    for value in row.values():  # Parquet-friendly scalars only
        assert value is None or isinstance(value, str | int | float | bool)


def test_deidentified_flag(testdata):
    ds = pydicom.dcmread(testdata("emri_small.dcm"), stop_before_pixels=True)
    assert ds.PatientIdentityRemoved == "YES"
    _, meta = read_file(testdata("emri_small.dcm"))
    assert meta.deidentified is True and meta.layout == "multiframe"
    assert meta.slice_spacing_mm is not None
