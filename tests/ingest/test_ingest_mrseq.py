"""MR sequence classifier on small synthetic headers: each class, conflicts, and unknown."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from hidim.ingest.mrseq import MRSequence, class_from_name, classify_mr_sequence, mr_evidence


def _mr(**attrs: object) -> Dataset:
    ds = Dataset()
    ds.Modality = "MR"
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def _classify(ds: Dataset) -> MRSequence:
    return classify_mr_sequence(**mr_evidence(ds))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        # Spin-echo T1: short TR, short TE.
        ({"ScanningSequence": "SE", "RepetitionTime": 500, "EchoTime": 12}, "T1"),
        # Turbo spin-echo T2: long TR, long TE.
        ({"ScanningSequence": "SE", "RepetitionTime": 4000, "EchoTime": 100}, "T2"),
        # FLAIR: inversion recovery, long TI and TR.
        (
            {
                "ScanningSequence": ["SE", "IR"],
                "RepetitionTime": 9000,
                "EchoTime": 120,
                "InversionTime": 2500,
            },
            "FLAIR",
        ),
        # MPRAGE: gradient echo with a T1 inversion.
        (
            {
                "ScanningSequence": ["GR", "IR"],
                "RepetitionTime": 2300,
                "EchoTime": 3,
                "InversionTime": 900,
                "FlipAngle": 9,
            },
            "T1",
        ),
        # Spoiled gradient echo T1.
        ({"ScanningSequence": "GR", "RepetitionTime": 8, "EchoTime": 3, "FlipAngle": 15}, "T1"),
        # DWI: any b-value > 0, whatever else the header says.
        (
            {
                "ScanningSequence": "EP",
                "RepetitionTime": 5000,
                "EchoTime": 80,
                "DiffusionBValue": 1000,
            },
            "DWI",
        ),
        # STIR: short TI → other.
        (
            {
                "ScanningSequence": ["SE", "IR"],
                "RepetitionTime": 5000,
                "EchoTime": 60,
                "InversionTime": 150,
            },
            "other",
        ),
        # Proton density: long TR, short TE → other.
        ({"ScanningSequence": "SE", "RepetitionTime": 3000, "EchoTime": 20}, "other"),
        # Intermediate TR/TE: not decidable.
        ({"ScanningSequence": "SE", "RepetitionTime": 1500, "EchoTime": 50}, "unknown"),
        # Nothing at all.
        ({}, "unknown"),
        # Name only.
        ({"SeriesDescription": "AX T2 FLAIR"}, "FLAIR"),
        ({"SeriesDescription": "t1_mprage_sag_p2_iso"}, "T1"),
        ({"SeriesDescription": "T2W_TSE_TRA"}, "T2"),
        ({"SeriesDescription": "ep2d_diff_3scan_trace"}, "DWI"),
        ({"SeriesDescription": "t2_swi_tra"}, "other"),
        ({"SeriesDescription": "AX T2*"}, "other"),
        ({"SeriesDescription": "3-plane localizer"}, "other"),
        ({"SeriesDescription": "Sag T1 FLAIR"}, "T1"),  # T1-weighted inversion recovery
        ({"SeriesDescription": "research sequence 7"}, "unknown"),
        # Naming and physics agree / disagree.
        (
            {
                "SeriesDescription": "T2 TSE",
                "ScanningSequence": "SE",
                "RepetitionTime": 4000,
                "EchoTime": 100,
            },
            "T2",
        ),
        (
            {
                "SeriesDescription": "T1 SE",
                "ScanningSequence": "SE",
                "RepetitionTime": 4000,
                "EchoTime": 100,
            },
            "unknown",
        ),
        # Siemens DWI naming convention in SequenceName.
        ({"SequenceName": "*ep_b1000t", "ScanningSequence": "EP"}, "DWI"),
        # ProtocolName when SeriesDescription is empty.
        ({"ProtocolName": "FLAIR_AX"}, "FLAIR"),
    ],
)
def test_classes(attrs, expected):
    assert _classify(_mr(**attrs)) == expected


def test_enhanced_mr_functional_groups():
    timing = Dataset()
    timing.RepetitionTime = 9000
    timing.FlipAngle = 150
    echo = Dataset()
    echo.EffectiveEchoTime = 120
    modifier = Dataset()
    modifier.InversionRecovery = "YES"
    modifier.InversionTimes = [2500]
    shared = Dataset()
    shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    shared.MREchoSequence = Sequence([echo])
    shared.MRModifierSequence = Sequence([modifier])
    ds = _mr(EchoPulseSequence="SPIN", InversionRecovery="YES")
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    assert _classify(ds) == "FLAIR"


def test_enhanced_mr_per_frame_b_values():
    frames = []
    for b in (0, 0, 1000):
        diff = Dataset()
        diff.DiffusionBValue = b
        item = Dataset()
        item.MRDiffusionSequence = Sequence([diff])
        frames.append(item)
    ds = _mr(EchoPulseSequence="SPIN")
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    assert _classify(ds) == "DWI"


def test_b_values_from_other_instances_count():
    # A DWI series whose first instance is the b=0 image.
    assert classify_mr_sequence(b_values=(0.0, 1000.0)) == "DWI"
    assert classify_mr_sequence(b_values=(0.0,)) == "unknown"


def test_name_matching_uses_whole_tokens():
    assert class_from_name("dt1x") is None  # "t1" inside a word is not T1
    assert class_from_name("post-contrast T1W") == "T1"


def test_real_mr_small_is_t2(testdata):
    # MR_small: TR 4000 ms, TE 240 ms spin echo.
    ds = pydicom.dcmread(testdata("MR_small.dcm"), stop_before_pixels=True)
    assert _classify(ds) == "T2"
