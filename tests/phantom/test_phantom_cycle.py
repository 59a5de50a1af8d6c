"""Cardiac cycle truth: phase labels agree with the volume curve; ED/ES frames are extrema."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hidim.errors import PhantomError
from hidim.phantom import cardiac_phase, cycle_position, relative_volume
from hidim.phantom.cycle import ed_es_frames, systolic_fraction


@settings(max_examples=60, deadline=None)
@given(
    hr=st.floats(45, 130),
    offset=st.floats(0, 0.999),
    ef=st.floats(15, 75),
)
def test_systole_is_exactly_where_the_volume_falls(hr: float, offset: float, ef: float) -> None:
    t = np.linspace(0.0, 3.0, 3001)
    phase = cardiac_phase(t, hr, offset)
    vol = relative_volume(cycle_position(t, hr, offset), ef, systolic_fraction(hr))
    dv = np.diff(vol)
    both_sys = (phase[:-1] == "systole") & (phase[1:] == "systole")
    both_dia = (phase[:-1] == "diastole") & (phase[1:] == "diastole")
    assert (dv[both_sys] <= 1e-12).all()
    assert (dv[both_dia] >= -1e-12).all()
    assert vol.max() <= 1.0 + 1e-12 and vol.min() >= 1.0 - ef / 100.0 - 1e-12


def test_volume_is_one_at_end_diastole_and_one_minus_ef_at_end_systole() -> None:
    fs = systolic_fraction(70.0)
    assert relative_volume(np.array([0.0]), 60.0, fs)[0] == pytest.approx(1.0)
    assert relative_volume(np.array([fs]), 60.0, fs)[0] == pytest.approx(0.4)


@settings(max_examples=40, deadline=None)
@given(
    fps=st.sampled_from([30, 40, 50, 60, 70, 80]),
    hr=st.floats(50, 120),
    offset=st.floats(0, 0.999),
)
def test_ed_and_es_frames_are_the_volume_extrema(fps: int, hr: float, offset: float) -> None:
    n = int(round(1.75 * 60 / hr * fps))
    fs = systolic_fraction(hr)
    u = cycle_position(np.arange(n) / fps, hr, offset)
    vol = relative_volume(u, 50.0, fs)
    ed, es = ed_es_frames(n, fps, hr, offset, fs)
    assert ed or es
    step = 1.0 / fps * hr / 60.0  # cycle advance per frame
    for f in ed:  # the frame nearest the ED instant: within half a frame of the cycle start
        assert min(u[f], 1.0 - u[f]) <= step / 2 + 1e-9
    for f in es:
        assert abs(u[f] - fs) <= step / 2 + 1e-9
        assert vol[f] <= vol[max(0, f - 1)] + 1e-9 or vol[f] <= vol[min(n - 1, f + 1)] + 1e-9


def test_phase_after_resampling_matches_the_original_timeline() -> None:
    hr, offset = 72.0, 0.3
    native = cardiac_phase(np.arange(60) / 60.0, hr, offset)
    resampled = cardiac_phase(np.arange(30) / 30.0, hr, offset)  # 30 fps, same clock
    assert (resampled == native[::2]).all()


def test_heart_rate_out_of_range_is_rejected() -> None:
    with pytest.raises(PhantomError, match="heart rate in 20..250 bpm, got 0"):
        cardiac_phase(np.zeros(3), 0.0, 0.0)
