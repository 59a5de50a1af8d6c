"""Fixtures for the federated tests: the training tests' tiny echo store, split into sites.

``make_store`` is the shared tiny store (:mod:`tiny_echo`). Its labels carry ``site`` in
{north, south, east} (patient ``p`` at ``p % 3``), so ``--split-by site`` gives three sites
with train/val/test patients each.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tiny_echo import make_store, tiny_training_config


@pytest.fixture(scope="session")
def fed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 patients, A4C, 12 frames of 32 x 32; train/val/test 12/6/6; three sites."""
    return make_store(tmp_path_factory.mktemp("fed") / "store", n_patients=24)


@pytest.fixture(scope="session")
def fed_config(fed_store: Path) -> Callable[..., dict[str, Any]]:
    """A tiny raw config for ``fed_store`` (small3d widths [4, 8, 8, 8], 8-frame clips)."""

    def make(**sections: dict[str, Any]) -> dict[str, Any]:
        trainer = {"bootstrap_samples": 50, **sections.pop("trainer", {})}
        return tiny_training_config(fed_store, trainer=trainer, **sections)

    return make
