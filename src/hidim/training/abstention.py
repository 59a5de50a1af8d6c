"""The abstain rule of ``hidim predict``: "I don't know" when a study is uncertain or unlike
the training data, with both thresholds fitted on the validation split.

:func:`fit_rule` fits the image-density gate's threshold on ``ood_distance`` (the
split-conformal ``ood_quantile`` of the validation distances) and the uncertainty
threshold on the validation studies inside the gate, so the two rules together answer
``coverage`` of validation studies; :func:`abstain_rule` fits them on the training store
(and saves ``abstention.json`` in the run) or reads them back for another store;
:func:`apply_rule` adds ``abstain``, ``abstain_reason`` and ``abstain_score``.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hidim.provenance import atomic_write_text
from hidim.store import Store

if TYPE_CHECKING:
    from hidim.training.bundle import RunBundle

__all__ = [
    "ABSTENTION_FILE",
    "abstention_threshold",
    "fit_rule",
    "abstain_rule",
    "apply_rule",
]


def abstention_threshold(val_uncertainty: np.ndarray, coverage: float) -> float | None:
    """Uncertainty threshold answering ``coverage`` of the validation studies.

    :func:`hidim.evaluate.uncertainty.fit_abstention_threshold` on the finite validation
    uncertainties; ``None`` when there are none (nothing is then abstained).
    """
    from hidim.evaluate.uncertainty import fit_abstention_threshold

    u = np.asarray(val_uncertainty, dtype=float)
    u = u[np.isfinite(u)]
    if u.size == 0:
        return None
    return fit_abstention_threshold(u, coverage)


ABSTENTION_FILE = "abstention.json"


def fit_rule(
    val_uncertainty: np.ndarray,
    val_distance: np.ndarray | None,
    coverage: float,
    ood_quantile: float,
) -> tuple[float | None, float | None]:
    """Thresholds on ``uncertainty`` and ``ood_distance`` answering ``coverage`` of val.

    The OOD gate's threshold is the split-conformal ``ood_quantile`` of the validation
    distances (the largest validation distance when there are too few studies for that
    quantile), and never below 1 (the 99th percentile of the training distances); the uncertainty threshold is then fitted on the validation studies inside
    the gate for ``coverage / (share inside)``, so the two rules together answer about
    ``coverage`` of validation studies.
    """
    ood_thr = None
    u = np.asarray(val_uncertainty, dtype=float)
    if val_distance is not None:
        d = np.asarray(val_distance, dtype=float)
        finite = np.isfinite(d)
        if finite.any():
            from hidim.evaluate.uncertainty import fit_abstention_threshold

            ood_thr = fit_abstention_threshold(d[finite], ood_quantile)
            if not math.isfinite(ood_thr):
                ood_thr = float(d[finite].max())
            # never inside the training cloud: 1 is its 99th percentile (small validation
            # sets otherwise put the gate where ordinary studies cross it)
            ood_thr = max(ood_thr, 1.0)
            inside = ~(d > ood_thr)
            coverage = min(1.0, coverage / max(float(inside.mean()), 1e-12))
            u = u[inside]
    if coverage >= 1:
        return None, ood_thr
    return abstention_threshold(u, coverage), ood_thr


def abstain_rule(
    bundle: RunBundle, store: Store, studies: pd.DataFrame, coverage: float, source: str
) -> dict[str, Any]:
    """The abstention thresholds and where they came from.

    Fitted on the validation studies of the *training* store and saved in the run
    (``abstention.json``), so predictions on another hospital's store use the thresholds
    the model was validated with, not ones refitted on unseen data.
    """
    q = bundle.config.uncertainty.ood_quantile
    has_gate = "ood_distance" in studies
    saved_file = bundle.run_dir / ABSTENTION_FILE
    training_store = store.path.resolve() == bundle.store_path.resolve()
    if training_store:
        val = studies["split"] == "val"
        threshold, ood_threshold = fit_rule(
            studies.loc[val, "uncertainty"].to_numpy(),
            studies.loc[val, "ood_distance"].to_numpy() if has_gate else None,
            coverage,
            q,
        )
        record = {
            "coverage": coverage,
            "uncertainty_source": source,
            "threshold": threshold,
            "ood_threshold": ood_threshold,
            "ood_quantile": q if has_gate else None,
        }
        atomic_write_text(saved_file, json.dumps(record, indent=2))
        return {**record, "from": "validation split of the training store"}
    if saved_file.is_file():
        saved = json.loads(saved_file.read_text(encoding="utf-8"))
        if saved.get("coverage") == coverage and saved.get("uncertainty_source") == source:
            return {
                **saved,
                "ood_threshold": saved.get("ood_threshold") if has_gate else None,
                "from": f"{ABSTENTION_FILE} of the run (training validation)",
            }
    return {
        "threshold": None,
        "ood_threshold": None,
        "from": (
            f"none: no {ABSTENTION_FILE} for coverage {coverage} and {source}; run "
            "`hidim predict RUN` on the training store first"
        ),
    }


def apply_rule(
    studies: pd.DataFrame, threshold: float | None, ood_threshold: float | None
) -> pd.DataFrame:
    """Add ``abstain``, ``abstain_reason`` and ``abstain_score`` (> 1: abstained)."""
    u = studies["uncertainty"].to_numpy(float)
    n = len(studies)
    uncertain = np.zeros(n, bool) if threshold is None else ~(u <= threshold)
    far = np.zeros(n, bool)
    score = np.zeros(n)
    if threshold is not None and math.isfinite(threshold):
        score = np.maximum(score, _ratio(u, threshold))
    if ood_threshold is not None:
        d = studies["ood_distance"].to_numpy(float)
        far = ~(d <= ood_threshold)
        score = np.maximum(score, _ratio(d, ood_threshold))
    score = np.where(uncertain | far, np.maximum(score, np.nextafter(1.0, 2.0)), score)
    reason = np.where(far, "out_of_distribution", np.where(uncertain, "uncertain", ""))
    return studies.assign(abstain=uncertain | far, abstain_reason=reason, abstain_score=score)


def _ratio(x: np.ndarray, threshold: float) -> np.ndarray:
    """``x / threshold``; NaN where undefined (NaN input, or above a threshold <= 0).

    NaN abstains and ranks as the most uncertain everywhere in :mod:`hidim.evaluate`.
    """
    if threshold > 0:
        return x / threshold
    return np.where(x <= threshold, 1.0, np.nan)
