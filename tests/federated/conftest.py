"""Fixtures for the federated tests: the training tests' tiny echo store, split into sites.

``make_store`` is loaded from ``tests/training/conftest.py`` by path (test folders are not
packages). Its labels carry ``site`` in {north, south, east} (patient ``p`` at ``p % 3``),
so ``--split-by site`` gives three sites with train/val/test patients each.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_make_store() -> Callable[..., Path]:
    """``make_store`` of the training tests."""
    spec = importlib.util.spec_from_file_location(
        "hidim_federated_store_fixture", ROOT / "tests" / "training" / "conftest.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.make_store


@pytest.fixture(scope="session")
def fed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 patients, A4C, 12 frames of 32 x 32; train/val/test 12/6/6; three sites."""
    return load_make_store()(tmp_path_factory.mktemp("fed") / "store", n_patients=24)


@pytest.fixture(scope="session")
def fed_config(fed_store: Path) -> Callable[..., dict[str, Any]]:
    """A tiny raw config for ``fed_store`` (small3d widths [4, 8, 8, 8], 8-frame clips)."""

    def make(**sections: dict[str, Any]) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "data": {
                "store": str(fed_store),
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
                "bootstrap_samples": 50,
            },
        }
        for name, values in sections.items():
            raw[name] = {**raw.get(name, {}), **values}
        return raw

    return make
