"""Shared test fixtures.

Real DICOM comes from the ``pydicom`` and ``pydicom-data`` packages (installed as test
dependencies, never copied into the repo). Nothing is downloaded: lookups use
``download=False``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

# Two cores: keep torch from oversubscribing when pytest-xdist runs two workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


def _torch_threads() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    # One thread: small models train much faster single-threaded on a loaded 2-core machine,
    # and two pytest-xdist workers use both cores.
    torch.set_num_threads(1)


_torch_threads()


@pytest.fixture(scope="session")
def testdata() -> Callable[[str], Path]:
    """Path of a named real DICOM test file from pydicom / pydicom-data (no download)."""
    from pydicom.data import get_testdata_file

    def get(name: str) -> Path:
        found = get_testdata_file(name, download=False)
        if found is None:
            raise FileNotFoundError(
                f"pydicom test file {name!r} not found locally; install the dev extras "
                "(pip install -e '.[dev]', which brings pydicom-data)"
            )
        return Path(str(found))

    return get


@pytest.fixture(scope="session")
def testdata_dir() -> Callable[[str], Path]:
    """Path of a named folder inside pydicom's bundled test files (e.g. ``dicomdirtests``)."""
    import pydicom.data

    base = Path(pydicom.data.__file__).parent / "test_files"

    def get(name: str) -> Path:
        path = base / name
        if not path.exists():
            raise FileNotFoundError(f"{path} not found in pydicom's test files")
        return path

    return get


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} not installed (make test installs it with apt-get when it can)")


@pytest.fixture
def need_tesseract() -> None:
    _need("tesseract")


@pytest.fixture
def need_dciodvfy() -> None:
    _need("dciodvfy")


@pytest.fixture
def need_chromium() -> None:
    _need("chromium")
