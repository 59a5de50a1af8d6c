"""Frame-rate resampling by time (properties), aspect-keeping resize, intensity records."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hidim.curate.normalise import (
    intensity_parameters,
    output_frames,
    parse_intensity,
    resample_fps,
    resize_keep_aspect,
)
from hidim.errors import CurationError
from hidim.store import apply_intensity_norm

fps = st.floats(min_value=5.0, max_value=120.0, allow_nan=False)
frames = st.integers(min_value=1, max_value=40)


@settings(max_examples=40, deadline=None)
@given(t=frames, fps_in=fps, fps_out=fps, value=st.floats(-2000, 2000, allow_nan=False, width=32))
def test_constant_clip_stays_constant(t: int, fps_in: float, fps_out: float, value: float) -> None:
    clip = np.full((2, t, 3, 2), value, dtype=np.float32)
    out = resample_fps(clip, fps_in, fps_out)
    assert out.shape == (2, output_frames(t, fps_in, fps_out), 3, 2)
    assert np.all(out == np.float32(value))


@settings(max_examples=30, deadline=None)
@given(t=frames, rate=fps, seed=st.integers(0, 2**16))
def test_same_rate_is_identity(t: int, rate: float, seed: int) -> None:
    clip = np.random.default_rng(seed).normal(size=(1, t, 2, 2)).astype(np.float32)
    np.testing.assert_array_equal(resample_fps(clip, rate, rate), clip)


@settings(max_examples=60, deadline=None)
@given(t=frames, fps_in=fps, fps_out=fps)
def test_duration_is_preserved(t: int, fps_in: float, fps_out: float) -> None:
    n = output_frames(t, fps_in, fps_out)
    # within half an output frame (rounding), except that at least one frame is kept
    assert abs(n / fps_out - t / fps_in) <= 0.5 / fps_out + 1e-9 or n == 1


@settings(max_examples=30, deadline=None)
@given(t=st.integers(2, 30), fps_in=fps, fps_out=fps, slope=st.floats(-5, 5, allow_nan=False))
def test_linear_motion_is_sampled_at_the_right_times(
    t: int, fps_in: float, fps_out: float, slope: float
) -> None:
    # frame i shows value slope * time(i); resampling must give slope * time(j) at the new rate
    times = (np.arange(t) + 0.5) / fps_in
    clip = (slope * times).astype(np.float32).reshape(1, t, 1, 1)
    out = resample_fps(clip, fps_in, fps_out)[0, :, 0, 0]
    new_times = np.clip((np.arange(out.size) + 0.5) / fps_out, times[0], times[-1])
    np.testing.assert_allclose(out, slope * new_times, atol=1e-3 * (1 + abs(slope) * t / fps_in))


def test_resampling_interpolates_not_strides() -> None:
    clip = np.array([0.0, 10.0, 20.0, 30.0], np.float32).reshape(1, 4, 1, 1)
    # input frame centres at 0.5, 1.5, ... s; output centres at 0.25, 0.75, 1.25, ... s
    up = resample_fps(clip, 1.0, 2.0)[0, :, 0, 0]
    np.testing.assert_allclose(up, [0.0, 2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 30.0], atol=1e-6)
    down = resample_fps(clip, 2.0, 1.0)[0, :, 0, 0]  # centres between frames → averages
    np.testing.assert_allclose(down, [5.0, 25.0])
    # header rounding (FrameTime 33.333 ms) is not a different rate
    same = np.arange(120, dtype=np.float32).reshape(1, 120, 1, 1)
    np.testing.assert_array_equal(resample_fps(same, 30.0003, 30.0), same)
    with pytest.raises(CurationError, match="positive frame rates"):
        resample_fps(clip, 0.0, 30.0)


def test_resize_keeps_aspect_and_pads_with_background() -> None:
    clip = np.full((3, 2, 20, 40), 7.0, np.float32)
    clip[:, :, :, :2] = 0.0  # background at the left edge
    out, record = resize_keep_aspect(clip, (16, 16))
    assert out.shape == (3, 2, 16, 16)
    assert record["scale"] == pytest.approx(0.4) and record["pad"] == [4, 4, 0, 0]
    assert np.all(out[:, :, :4] == 0.0) and np.all(out[:, :, 12:] == 0.0)
    assert np.allclose(out[:, :, 4:12, 4:], 7.0, atol=1e-4)
    same, rec = resize_keep_aspect(clip, (20, 40))
    np.testing.assert_array_equal(same, clip)
    with pytest.raises(CurationError, match="--size H W"):
        resize_keep_aspect(clip, (0, 10))


def test_intensity_records_are_modality_aware_and_invertible() -> None:
    rng = np.random.default_rng(0)
    us = rng.integers(0, 256, (3, 4, 8, 8)).astype(np.float32)
    rec = intensity_parameters(us, modality="US")
    z = apply_intensity_norm(us, rec)
    assert rec["method"] == "zscore" and abs(z.mean()) < 1e-4 and abs(z.std() - 1) < 1e-4
    np.testing.assert_allclose((z - rec["offset"]) / rec["scale"], us, atol=1e-3)  # invertible

    hu = np.array([-1000.0, 0.0, 1000.0, 3000.0], np.float32).reshape(1, 4, 1, 1)
    assert apply_intensity_norm(hu, intensity_parameters(hu, modality="CT")).ravel().tolist() == [
        0,
        0.5,
        1,
        2,
    ]
    win = apply_intensity_norm(hu, intensity_parameters(hu, modality="CT", spec="window:40,400"))
    assert win.ravel().tolist() == [0.0, pytest.approx(0.4), 1.0, 1.0]
    pct = apply_intensity_norm(us, intensity_parameters(us, modality="MR", spec="percentile:1,99"))
    assert np.mean((pct >= 0) & (pct <= 1)) > 0.97
    assert intensity_parameters(us, modality="US", spec="none")["scale"] == 1.0
    flat = intensity_parameters(np.ones((1, 2, 2, 2), np.float32), modality="MR")
    assert flat["scale"] == 1.0  # constant series: no division by zero


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gamma", "expected --intensity one of"),
        ("window:40", "WIDTH > 0"),
        ("percentile:99,1", "LO < HI"),
        ("zscore:3", "no parameters"),
        ("window:a,b", "expected numbers"),
    ],
)
def test_bad_intensity_options_are_explained(spec: str, message: str) -> None:
    with pytest.raises(CurationError, match=message):
        parse_intensity(spec)
