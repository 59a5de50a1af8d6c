"""Overlay videos, key-frame panels and per-frame importance curves."""

from __future__ import annotations

import importlib.util

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from hidim.errors import ExplainError
from hidim.explain.render import (
    frame_importance,
    normalise_map,
    overlay_frames,
    plot_frame_importance,
    write_overlay_gif,
    write_overlay_mp4,
    write_overlay_panel,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _pair(t: int = 5, h: int = 10, w: int = 14):
    clip = torch.rand(1, t, h, w)
    attr = torch.zeros(t, h, w)
    attr[2, 3:6, 4:8] = 1.0
    return clip, attr


def test_overlay_keeps_unattributed_pixels_and_colours_attributed_ones() -> None:
    clip, attr = _pair()
    frames = overlay_frames(clip, attr)
    assert frames.shape == (5, 10, 14, 3) and frames.dtype == np.uint8
    grey = frames[0]
    assert (grey[..., 0] == grey[..., 1]).all()  # no attribution in frame 0: plain grey
    hot = frames[2, 3:6, 4:8].astype(int)
    assert (np.abs(hot[..., 0] - hot[..., 2]) > 0).any()  # coloured where attributed


def test_normalise_and_frame_importance() -> None:
    _, attr = _pair()
    n = normalise_map(attr)
    assert n.min() == 0 and n.max() == 1
    assert normalise_map(torch.zeros(3, 3)).max() == 0
    imp = frame_importance(-attr)  # sign does not matter
    np.testing.assert_allclose(imp, [0, 0, 1, 0, 0])
    assert frame_importance(torch.zeros(4, 2, 2)).sum() == 0


def test_gif_round_trips_with_every_frame(tmp_path) -> None:
    clip, attr = _pair()
    path = write_overlay_gif(tmp_path / "case.gif", clip, attr, fps=12.5, min_side=40)
    frames = iio.imread(path, index=None)
    assert frames.shape[0] == 5
    assert min(frames.shape[1:3]) >= 40
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temporary left behind


def test_mp4_needs_an_encoder(tmp_path) -> None:
    clip, attr = _pair()
    if any(importlib.util.find_spec(m) for m in ("imageio_ffmpeg", "av")):
        assert write_overlay_mp4(tmp_path / "a.mp4", clip, attr).stat().st_size > 0
    else:
        with pytest.raises(ExplainError, match="pip install imageio-ffmpeg"):
            write_overlay_mp4(tmp_path / "a.mp4", clip, attr)


def test_panel_and_curve_are_pngs(tmp_path) -> None:
    clip, attr = _pair()
    panel = write_overlay_panel(tmp_path / "p.png", clip, attr, n_frames=3, title="p=0.9, y=1",
                                frame_labels=["systole"] * 5)  # fmt: skip
    assert panel.read_bytes()[:8] == PNG
    phases = ["systole", "systole", "diastole", "diastole", "diastole"]
    curve = plot_frame_importance(tmp_path / "c.png", frame_importance(attr), phases=phases, fps=25)
    assert curve.read_bytes()[:8] == PNG


def test_render_errors() -> None:
    clip, attr = _pair()
    with pytest.raises(ExplainError, match="matching the clip"):
        overlay_frames(clip, attr[:, :5])
    with pytest.raises(ExplainError, match="alpha"):
        overlay_frames(clip, attr, alpha=2.0)
    with pytest.raises(ExplainError, match="one phase per frame"):
        plot_frame_importance("/nonexistent/x.png", [0.5, 0.5], phases=["systole"])
    with pytest.raises(ExplainError, match="frames must be indices"):
        write_overlay_panel("/nonexistent/x.png", clip, attr, frames=[9])
