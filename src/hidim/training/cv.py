"""Patient-level cross-validation folds (Lightning has none built in).

Folds are drawn over *patients*, never series or studies, so no patient's clips are on both
sides of a fold. The store's ``test`` split is left out of every fold. Folds are stratified
(scikit-learn ``StratifiedKFold`` over patients) by the binarised target, the event flag for
survival, or quintiles of a continuous target, when every stratum has at least ``k``
patients; otherwise plain ``KFold``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold

from hidim.errors import TrainingError
from hidim.store import Store, labels_per_series
from hidim.training.config import ExperimentConfig

__all__ = ["patient_folds", "patient_folds_for_config"]


def patient_folds(
    patients: Sequence[str],
    k: int,
    *,
    seed: int = 0,
    strata: Sequence[object] | None = None,
) -> list[tuple[list[str], list[str]]]:
    """``k`` folds of ``(train_patients, val_patients)``; every patient validates once.

    Args:
        patients: Distinct patient keys.
        k: Number of folds (2 <= k <= number of patients).
        seed: Shuffling seed.
        strata: One stratum label per patient (optional).
    """
    keys = np.asarray(list(patients), dtype=object)
    if len(set(keys.tolist())) != keys.size:
        raise TrainingError("patient keys passed to patient_folds must be distinct")
    if not 2 <= k <= keys.size:
        raise TrainingError(f"need 2 <= folds <= {keys.size} patients, got folds={k}")
    order = np.argsort(keys.astype(str), kind="stable")
    keys = keys[order]
    splitter: KFold | StratifiedKFold = KFold(n_splits=k, shuffle=True, random_state=seed)
    y = None
    if strata is not None:
        y = np.asarray([str(s) for s in strata], dtype=object)[order]
        _, counts = np.unique(y, return_counts=True)
        if counts.size > 1 and counts.min() >= k:
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        else:
            y = None
    out = []
    for train_idx, val_idx in splitter.split(keys, y):
        out.append((sorted(keys[train_idx].tolist()), sorted(keys[val_idx].tolist())))
    return out


def patient_folds_for_config(
    config: ExperimentConfig, k: int, *, seed: int = 0
) -> list[tuple[list[str], list[str]]]:
    """Folds over the store's train+val patients that have the configured views/labels."""
    store = Store(config.data.store)
    m = store.manifest
    m = m[m["split"].isin(["train", "val"])]
    if config.data.views is not None:
        m = m[m["view"].isin(config.data.views)]
    if m.empty:
        raise TrainingError("no train/val series to cross-validate (check data.views)")
    per = labels_per_series(m, store.labels) if store.has_labels else pd.DataFrame(index=m.index)
    frame = pd.DataFrame({"patient_key": m["patient_key"].to_numpy()})
    d = config.data
    if d.target is not None:
        if d.target not in per:
            raise TrainingError(f"data.target {d.target!r} is not a labels column")
        y = pd.to_numeric(per[d.target], errors="coerce").to_numpy(float)
        frame["y"] = y
        frame = frame[np.isfinite(y)]
        if d.threshold is not None:
            frame["stratum"] = (frame["y"] < d.threshold) == d.positive_below
        elif frame["y"].nunique() > 10:
            frame["stratum"] = pd.qcut(frame["y"], 5, labels=False, duplicates="drop")
        else:
            frame["stratum"] = frame["y"]
    elif "event" in per:
        frame["stratum"] = per["event"].fillna(False).astype(bool).to_numpy()
    else:
        frame["stratum"] = 0
    patients = frame.groupby("patient_key", sort=True)["stratum"].first()
    return patient_folds(patients.index.tolist(), k, seed=seed, strata=patients.tolist())
