"""Fixtures for the training tests: a tiny echo-like store (:mod:`tiny_echo`, shared with the
federated and pretraining tests) and a minimal config for it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tiny_echo import make_store, tiny_training_config


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-patient single-view (A4C) store."""
    return make_store(tmp_path_factory.mktemp("store") / "store")


@pytest.fixture(scope="session")
def two_view_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-patient A4C + PLAX store (every third study lacks PLAX)."""
    return make_store(
        tmp_path_factory.mktemp("store2") / "store", n_patients=16, views=("A4C", "PLAX")
    )


@pytest.fixture
def base_config(tiny_store: Path) -> Callable[..., dict]:
    """A minimal raw config dict for ``tiny_store`` (override with keyword sections)."""

    def make(**sections: dict) -> dict:
        return tiny_training_config(tiny_store, **sections)

    return make
