"""Fixtures for store tests: small stores written through the real writer (no DICOM needed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hidim.store.layout import series_key
from hidim.store.writer import (
    init_store,
    write_labels,
    write_ledger,
    write_manifest,
    write_series_array,
)


def _series(
    uid: str,
    patient: str,
    study: str,
    *,
    frames: int,
    view: str | None,
    split: str,
    channels: int = 1,
    hw: tuple[int, int] = (8, 6),
    seed: int = 0,
) -> tuple[dict[str, Any], np.ndarray]:
    rng = np.random.default_rng(seed)
    # value of frame t is t everywhere plus small integer noise: clip starts are readable
    array = np.broadcast_to(
        np.arange(frames, dtype=np.float32)[None, :, None, None], (channels, frames, *hw)
    ).copy()
    array += rng.integers(0, 3, size=array.shape).astype(np.float32) * 1000
    row = {
        "series_key": series_key(uid),
        "key_uid": uid,
        "series_uid": uid,
        "study_uid": study,
        "patient_key": patient,
        "modality": "US",
        "view": view,
        "layout": "multiframe",
        "fps_original": 50.0,
        "fps": 50.0,
        "split": split,
        "content_hash": f"h{uid}",
        "intensity_norm": json.dumps({"method": "none", "scale": 1.0, "offset": 0.0, "clip": None}),
    }
    return row, array


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., tuple[Path, dict[str, np.ndarray]]]:
    """Build a store with the given series specs; returns (path, {series_key: raw array})."""

    def build(
        specs: list[dict[str, Any]], labels: pd.DataFrame | None = None
    ) -> tuple[Path, dict[str, np.ndarray]]:
        root = init_store(tmp_path / "store")
        rows, arrays = [], {}
        for i, spec in enumerate(specs):
            row, array = _series(seed=i, **spec)
            info = write_series_array(root, row["series_key"], array, row=row)
            row.update(
                array_path=info["array_path"],
                stored_dtype=info["dtype"],
                channels=array.shape[0],
                n_frames=array.shape[1],
                rows=array.shape[2],
                cols=array.shape[3],
            )
            rows.append(row)
            arrays[row["series_key"]] = array
        write_manifest(root, rows)
        write_ledger(
            root,
            [{"input_id": "x", "status": "ok", "reason": "", "series_key": rows[0]["series_key"]}],
        )
        if labels is not None:
            write_labels(root, labels)
        return root, arrays

    return build
