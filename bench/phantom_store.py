"""The benchmarks' shared set-up: a phantom cohort curated into a labelled store.

Imported by the scripts beside it (``python bench/<script>.py`` puts ``bench/`` on the path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def prepare_store(work: Path, config: Any, *, fps: float, size: int, workers: int = 2) -> Path:
    """``config`` (a :class:`hidim.phantom.config.PhantomConfig`) → ``WORK/phantom`` →
    curated ``WORK/store`` (fps and size normalised, patient-level splits seeded like the
    phantom) with its labels imported; skipped when the store already has labels."""
    from hidim.curate.labels import import_labels
    from hidim.curate.pipeline import curate
    from hidim.phantom.generate import generate

    phantom, store = work / "phantom", work / "store"
    if (store / "labels.parquet").is_file():
        return store
    generate(phantom, config, workers=workers)
    result = curate(
        phantom / "dicom",
        store,
        fps=fps,
        size=size,
        allow_identified=True,
        workers=workers,
        show_progress=False,
        seed=config.seed,
    )
    if not result.ok:
        raise SystemExit(f"curation failed: {result}")
    import_labels(store, phantom / "labels.csv")
    return store
