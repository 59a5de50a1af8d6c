"""Regions from imported annotations, mapped like the pixels were (resize + pad)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from hidim.curate.normalise import resize_keep_aspect
from hidim.errors import ExplainError
from hidim.explain.regions import annotation_region


def _tables():
    record = resize_keep_aspect(np.zeros((1, 1, 20, 40), np.float32), (32, 32))[1]
    manifest = pd.DataFrame(
        {"series_key": ["a", "b"], "rows": [32, 20], "cols": [32, 40],
         "resize": [json.dumps(record), None]}
    )  # fmt: skip
    annotations = pd.DataFrame(
        [
            {"series_key": "a", "label_name": "LV", "geometry": "box", "x": 10.0, "y": 4.0,
             "width": 8.0, "height": 6.0, "data": None},
            {"series_key": "b", "label_name": "LV", "geometry": "polygon", "x": None, "y": None,
             "width": None, "height": None,
             "data": json.dumps({"vertices": [[0, 0], [10, 0], [10, 10], [0, 10]]})},
            {"series_key": "b", "label_name": "valve", "geometry": "box", "x": 1.0, "y": 1.0,
             "width": 2.0, "height": 2.0, "data": None},
        ]
    )  # fmt: skip
    return manifest, annotations, record


def test_annotation_masks_follow_the_stored_geometry() -> None:
    manifest, annotations, record = _tables()
    region = annotation_region("LV", annotations, manifest)
    assert region.anatomical is True
    # Series "a" was resized 20x40 -> 16x32 and padded by 8 rows on top: the box moves.
    mask_a = region.mask_fn({"series_key": "a", "clip": torch.zeros(1, 2, 32, 32)})
    scale, top = record["scale"], record["pad"][0]
    rows = np.flatnonzero(mask_a.any(1))
    cols = np.flatnonzero(mask_a.any(0))
    assert rows.min() == pytest.approx(4 * scale + top, abs=1)
    assert cols.min() == pytest.approx(10 * scale, abs=1)
    assert mask_a.sum() == pytest.approx(8 * 6 * scale**2, rel=0.35)
    # Series "b" is native: the polygon's pixels exactly (vertices are pixel centres,
    # boundary included, as scikit-image draws them).
    mask_b = region.mask_fn({"series_key": "b", "clip": torch.zeros(1, 2, 20, 40)})
    assert mask_b[:11, :11].all() and mask_b.sum() == 121
    assert region.mask_fn({"series_key": "zzz", "clip": torch.zeros(1, 2, 20, 40)}) is None


def test_unknown_label_lists_the_labels() -> None:
    manifest, annotations, _ = _tables()
    with pytest.raises(ExplainError, match=r"labels present: \['LV', 'valve'\]"):
        annotation_region("RV", annotations, manifest)
