"""The tiny echo-like store and training config that the training, federated and pretraining
tests share (a plain module: test folders are not packages, and ``tests/`` is on the path
through the root conftest).

Each synthetic patient has one study with an A4C (and optionally a PLAX) cine loop of a
bright cavity whose area shrinks by the patient's ejection fraction over the cycle, so EF is
learnable from motion; labels carry EF, survival and demographics (with missing values).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hidim.store.writer import init_store, write_labels, write_manifest, write_series_array

__all__ = ["make_store", "tiny_training_config"]

_NORM = json.dumps({"method": "scale", "scale": 1 / 255, "offset": 0.0, "clip": None})


def _loop(ef: float, *, frames: int, size: int, phase: float, rng: np.random.Generator, view: str):
    t = np.arange(frames)
    # cavity area follows the cardiac cycle: A(t) = A_ed * (1 - ef * (1 - cos) / 2)
    area = 1.0 - ef * (1.0 - np.cos(2 * np.pi * (t / frames + phase))) / 2.0
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r_ed = size * 0.35
    out = np.empty((1, frames, size, size), dtype=np.uint8)
    for i, a in enumerate(area):
        r = r_ed * np.sqrt(a)
        dist = np.hypot(yy, xx * (1.6 if view == "PLAX" else 1.0))
        img = np.where(dist < r, 40.0, 160.0) + rng.normal(0, 12, (size, size))
        out[0, i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def make_store(
    root: Path,
    *,
    n_patients: int = 24,
    frames: int = 12,
    size: int = 32,
    views: tuple[str, ...] = ("A4C",),
    seed: int = 0,
    missing_plax_every: int = 3,
) -> Path:
    """Write a store with ``n_patients`` patients (train/val/test = 50/25/25 %)."""
    rng = np.random.default_rng(seed)
    init_store(root)
    rows, labels = [], []
    for p in range(n_patients):
        patient = f"P{p:03d}"
        study = f"1.2.3.{p}"
        ef = float(rng.uniform(0.2, 0.7))
        split = "train" if p % 4 in (0, 1) else ("val" if p % 4 == 2 else "test")
        for view in views:
            if view == "PLAX" and p % missing_plax_every == 0:
                continue  # some studies lack the PLAX view
            key = f"{p:04d}{view.lower():0<4}".ljust(16, "0")[:16]
            array = _loop(ef, frames=frames, size=size, phase=rng.random(), rng=rng, view=view)
            info = write_series_array(root, key, array)
            rows.append(
                {
                    "series_key": key,
                    "series_uid": f"{study}.{view}",
                    "study_uid": study,
                    "patient_key": patient,
                    "modality": "US",
                    "view": view,
                    "channels": 1,
                    "n_frames": frames,
                    "rows": size,
                    "cols": size,
                    "fps": 30.0,
                    "intensity_norm": _NORM,
                    "split": split,
                    "array_path": info["array_path"],
                    "deidentified": True,
                }
            )
        time = float(rng.exponential(400 * ef / 0.45)) + 1.0
        labels.append(
            {
                "patient_key": patient,
                "ef": 100 * ef,
                "time": time,
                "event": bool(rng.random() < 0.6),
                "age": float(rng.normal(60, 10)) if p % 5 else np.nan,
                "sex": ["F", "M"][p % 2] if p % 7 else None,
                "site": ["north", "south", "east"][p % 3],
            }
        )
    write_manifest(root, rows)
    write_labels(root, pd.DataFrame(labels))
    return root


def tiny_training_config(store: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A minimal raw training config for a :func:`make_store` store: EF regression with a
    tiny small3d on 8-frame clips, one epoch; each keyword section updates its defaults."""
    raw: dict[str, Any] = {
        "data": {
            "store": str(store),
            "views": ["A4C"],
            "target": "ef",
            "clip_frames": 8,
            "batch_size": 4,
        },
        "model": {"backbone": "small3d", "backbone_kwargs": {"widths": [4, 8, 8, 8]}},
        "task": {"head": "regression"},
        "optim": {"lr": 3e-3},
        "trainer": {
            "max_epochs": 1,
            "loggers": ["csv"],
            "progress_bar": False,
            "early_stopping_patience": 0,
            "bootstrap_samples": 200,
        },
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return raw
