"""Pixel decoding on real files: transfer syntaxes, colour, LUTs, HU, MONOCHROME1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import ImplicitVRLittleEndian

from hidim.errors import IngestError
from hidim.ingest import read_file


@pytest.fixture(scope="module")
def echo_cine(testdata):
    """The SonoSite cine: 120 JPEG baseline YBR frames, decoded once for the module."""
    return read_file(testdata("color3d_jpeg_baseline.dcm"))


def test_echo_cine_is_rgb_channel_first_with_all_frames(echo_cine, testdata):
    arr, meta = echo_cine
    assert arr.dtype == np.float32
    assert arr.shape == (3, 120, 480, 640)
    assert meta.channels == 3 and meta.n_frames == 120
    assert meta.photometric_interpretation == "YBR_FULL_422"
    assert meta.fps_source == "FrameTime"
    assert meta.fps_original == pytest.approx(1000 / 33.333)
    assert meta.lossy_compressed is True
    # Oracle: pydicom's own RGB decode of the same frame, channel-last.
    ds = pydicom.dcmread(testdata("color3d_jpeg_baseline.dcm"))
    frame = pydicom.pixels.pixel_array(ds, index=7)
    np.testing.assert_array_equal(arr[:, 7], np.moveaxis(frame, -1, 0).astype(np.float32))


def test_examples_ybr_color_decodes_to_rgb(testdata):
    path = testdata("examples_ybr_color.dcm")
    arr, meta = read_file(path)
    assert arr.shape == (3, 30, 240, 320)
    ds = pydicom.dcmread(path)
    expected = np.moveaxis(pydicom.pixels.pixel_array(ds), -1, 1).astype(np.float32)
    np.testing.assert_array_equal(arr, np.moveaxis(expected, 0, 1))
    assert meta.pixel_transforms == "YBR to RGB"
    # A grey-ish echo image: RGB channels nearly equal after conversion (not YCbCr).
    assert float(np.abs(arr[0] - arr[1]).mean()) < 5.0


@pytest.mark.parametrize(
    "name",
    [
        "emri_small_big_endian.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_RLE.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
    ],
)
def test_enhanced_mr_transfer_syntaxes_decode_identically(testdata, name):
    reference, ref_meta = read_file(testdata("emri_small.dcm"))
    arr, meta = read_file(testdata(name))
    assert arr.shape == reference.shape == (1, 10, 64, 64)
    np.testing.assert_array_equal(arr, reference)
    assert meta.transfer_syntax_uid != ref_meta.transfer_syntax_uid


@pytest.mark.parametrize(
    "name", ["examples_palette.dcm", "gdcm-US-ALOKA-16.dcm", "OT-PAL-8-face.dcm"]
)
def test_palette_color_goes_through_lut_without_overflow(testdata, name):
    path = testdata(name)
    arr, meta = read_file(path)
    ds = pydicom.dcmread(path, force=True)  # OT-PAL-8-face has no preamble / file meta
    ds.file_meta.TransferSyntaxUID = ds.file_meta.get("TransferSyntaxUID", ImplicitVRLittleEndian)
    rgb = apply_color_lut(ds.pixel_array, ds).astype(np.float64)  # oracle: pydicom's LUT
    if ds.RedPaletteColorLookupTableDescriptor[2] == 16 and rgb.max() > 255:
        rgb *= 255.0 / 65535.0
    expected = np.moveaxis(rgb.reshape(-1, *rgb.shape[-3:]), -1, 0)  # [3, T, H, W]
    assert arr.shape == expected.shape
    np.testing.assert_allclose(arr, expected, atol=1e-3)
    assert 0.0 <= arr.min() and arr.max() <= 255.0
    assert meta.channels == 3 and meta.pixel_transforms == "palette LUT to RGB [0, 255]"


def test_lossless_transfer_syntaxes_of_us_rgb_agree(testdata):
    reference, _ = read_file(testdata("US1_UNCR.dcm"))
    arr, meta = read_file(testdata("US1_J2KR.dcm"))
    assert reference.shape == (3, 1, 480, 640) and meta.channels == 3
    np.testing.assert_array_equal(arr, reference)


def test_enhanced_ct_rescale_from_functional_groups(testdata):
    path = testdata("eCT_Supplemental.dcm")
    arr, meta = read_file(path)
    ds = pydicom.dcmread(path)
    assert "RescaleIntercept" not in ds  # only in the functional groups
    for t in range(arr.shape[1]):
        group = ds.PerFrameFunctionalGroupsSequence[t].get("PixelValueTransformationSequence")
        item = (group or ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence)[0]
        stored = pydicom.pixels.pixel_array(ds, index=t).astype(np.float64)
        expected = stored * float(item.RescaleSlope) + float(item.RescaleIntercept)
        np.testing.assert_array_equal(arr[0, t], expected.astype(np.float32))
    assert meta.intensity_unit == item.RescaleType  # as recorded ("US": unspecified)


def test_ct_values_are_hounsfield_units(testdata):
    path = testdata("CT_small.dcm")
    arr, meta = read_file(path)
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_array_equal(arr[0, 0], expected.astype(np.float32))
    assert float(ds.RescaleIntercept) != 0  # the rescale really did something
    assert meta.intensity_unit == "HU"


def test_monochrome1_is_inverted(testdata, tmp_path):
    ds = pydicom.dcmread(testdata("MR_small.dcm"))
    stored = ds.pixel_array.astype(np.float32)
    ds.PhotometricInterpretation = "MONOCHROME1"
    out = tmp_path / "mono1.dcm"
    ds.save_as(out)
    arr, meta = read_file(out)
    lo, hi = -(2 ** (ds.BitsStored - 1)), 2 ** (ds.BitsStored - 1) - 1  # signed 16-bit
    np.testing.assert_array_equal(arr[0, 0], np.float32(lo + hi) - stored)
    assert "MONOCHROME1 inverted" in meta.pixel_transforms


def test_one_frame_multiframe_keeps_t_axis(testdata, tmp_path):
    ds = pydicom.dcmread(testdata("examples_ybr_color.dcm"))
    one = pydicom.pixels.pixel_array(ds, index=0)
    ds.set_pixel_data(one, "RGB", 8)  # native, NumberOfFrames stays in the header
    ds.NumberOfFrames = 1
    out = tmp_path / "one.dcm"
    ds.save_as(out)
    arr, meta = read_file(out)
    assert arr.shape == (3, 1, 240, 320)
    assert meta.fps_original is None  # a still image has no frame rate


def test_truncated_file_raises_naming_file(testdata):
    path = testdata("MR_truncated.dcm")
    with pytest.raises(
        IngestError, match=r"MR_truncated\.dcm: truncated: pixel data has 8130 of 8192"
    ):
        read_file(path)


def test_jpeg2000_too_short_raises(testdata):
    with pytest.raises(IngestError, match=r"too_short\.dcm: truncated"):
        read_file(testdata("emri_small_jpeg_2k_lossless_too_short.dcm"))


def test_path_is_accepted_as_str(testdata):
    arr, _ = read_file(str(testdata("MR_small.dcm")))
    assert arr.shape == (1, 1, 64, 64)
    assert isinstance(Path(str(testdata("MR_small.dcm"))), Path)
