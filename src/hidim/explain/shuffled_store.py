"""A label-permuted view of a store, for the data-randomisation sanity check.

Adebayo et al. retrain the model on labels permuted at random: whatever it then learns is
noise, so its saliency maps must differ from the real model's. The permuted copy shares the
pixel arrays with the original (a symbolic link) and rewrites only ``labels.parquet``, with
the target columns (the configured target, or ``time``/``event`` together for survival)
permuted across patients; demographics stay with their patients.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from hidim.errors import ExplainError

__all__ = ["label_shuffled_store"]

_COPIED = ("store.json", "manifest.parquet", "ledger.parquet", "annotations.parquet")


def label_shuffled_store(
    store: str | os.PathLike[str], dst: str | os.PathLike[str], *, config: Any, seed: int
) -> Path:
    """Write a store at ``dst`` whose labels are ``store``'s with targets permuted.

    Args:
        store: The original store.
        dst: The new store folder (replaced if it exists).
        config: The run's training config (``data.target`` names the target column; without
            one the survival columns ``time``/``event`` are permuted together).
        seed: Permutation seed.

    Returns:
        ``dst``.
    """
    import pandas as pd

    src, out = Path(store), Path(dst)
    labels_path = src / "labels.parquet"
    if not labels_path.is_file():
        raise ExplainError(f"{src} has no labels.parquet; label randomisation needs labels")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in _COPIED:
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)
    (out / "arrays").symlink_to((src / "arrays").resolve(), target_is_directory=True)
    labels = pd.read_parquet(labels_path)
    target = getattr(config.data, "target", None)
    columns = [target] if target else [c for c in ("time", "event") if c in labels.columns]
    missing = [c for c in columns if c not in labels.columns]
    if not columns or missing:
        raise ExplainError(
            f"cannot permute labels: columns {missing or columns} not in {labels_path}"
        )
    perm = np.random.default_rng(seed).permutation(len(labels))
    shuffled = labels.copy()
    for c in columns:
        shuffled[c] = labels[c].to_numpy()[perm]
    shuffled.to_parquet(out / "labels.parquet", index=False)
    return out
