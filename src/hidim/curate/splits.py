"""Patient-level train/val/test splits: deterministic, stratifiable, stable, leak-checked.

* **Patient level**: every series of a patient lands in the same split (no patient's images
  in both training and test — the leakage that inflates so many published results).
* **Deterministic**: patients are ordered by a keyed hash of ``(seed, patient_key)`` and cut
  at the split fractions, so the result depends only on the seed and the set of patients —
  not on file order, worker count or platform.
* **Stratifiable**: with ``strata`` (e.g. the outcome) the cut is made within each stratum,
  so each split gets the same outcome mix.
* **Stable**: patients that already have a split keep it; only new patients are assigned
  (adding data never moves a test patient into training).
* :func:`check_no_leakage` raises if a patient (or a study) sits in two splits.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from hidim.errors import CurationError
from hidim.store.layout import SPLITS

__all__ = ["DEFAULT_FRACTIONS", "assign_splits", "check_no_leakage", "split_manifest"]

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise CurationError(
            f"expected three split fractions (train, val, test) >= 0 summing to 1, got {tuple(fractions)}; "
            "e.g. (0.7, 0.15, 0.15)"
        )
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


def _rank_key(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()


def _allocate(target: np.ndarray, n: int) -> np.ndarray:
    """Integer counts summing to ``n`` closest to ``target`` (largest remainder)."""
    raw = np.clip(target, 0.0, None)
    raw = raw * (n / raw.sum()) if raw.sum() > 0 else np.full(len(raw), n / len(raw))
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts


def _cut(keys: list[str], counts: np.ndarray, seed: int) -> dict[str, str]:
    order = sorted(keys, key=lambda k: _rank_key(seed, k))
    out: dict[str, str] = {}
    pos = 0
    for split, count in zip(SPLITS, counts, strict=True):
        for k in order[pos : pos + count]:
            out[k] = split
        pos += int(count)
    return out


def assign_splits(
    patient_keys: Sequence[str],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    strata: Mapping[str, object] | None = None,
    existing: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Assign each patient to ``"train"``, ``"val"`` or ``"test"``.

    Args:
        patient_keys: patients (duplicates are fine).
        fractions: (train, val, test) fractions summing to 1.
        seed: changes the assignment; the same seed always gives the same one.
        strata: optional ``{patient_key: stratum}`` (e.g. outcome class); patients without
            a stratum form their own group.
        existing: ``{patient_key: split}`` kept as is (stable re-runs).

    Returns:
        ``{patient_key: split}`` for every patient.
    """
    fr = _check_fractions(fractions)
    keep = {k: v for k, v in (existing or {}).items() if v in SPLITS}
    new = sorted({str(k) for k in patient_keys} - set(keep))
    groups: dict[str, list[str]] = {}
    for k in new:
        stratum = "" if strata is None else str(strata.get(k, "\x00missing"))
        groups.setdefault(stratum, []).append(k)
    out = {k: keep[k] for k in {str(k) for k in patient_keys} if k in keep}
    # strata in a fixed order; each stratum's counts carry the rounding of the previous ones
    # so that the totals follow the fractions as closely as the per-stratum cuts do
    done = np.zeros(3, dtype=int)
    for _stratum, keys in sorted(groups.items()):
        target = np.array(fr) * (done.sum() + len(keys)) - done
        counts = _allocate(target, len(keys))
        out.update(_cut(keys, counts, seed))
        done += counts
    return out


def check_no_leakage(manifest: pd.DataFrame) -> None:
    """Raise if any patient or study has series in more than one split.

    Raises:
        CurationError: naming how many patients/studies leak (never their identifiers'
            originals — keys are pseudonymous but still not printed in bulk).
    """
    for column in ("patient_key", "study_uid"):
        if column not in manifest.columns or "split" not in manifest.columns:
            continue
        rows = manifest[manifest[column].notna() & manifest["split"].notna()]
        n_splits = rows.groupby(column)["split"].nunique()
        leaking = n_splits[n_splits > 1]
        if len(leaking):
            raise CurationError(
                f"expected every {column} in exactly one split, got {len(leaking)} in several "
                f"(first: {list(leaking.index[:3])}); re-split with hidim.curate.splits.split_manifest "
                "or `hidim labels split STORE`"
            )


def split_manifest(
    manifest: pd.DataFrame,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    strata: Mapping[str, object] | None = None,
    keep_existing: bool = True,
) -> pd.DataFrame:
    """A copy of ``manifest`` with its ``split`` column set at patient level (leak-checked)."""
    out = manifest.copy()
    existing: dict[str, str] = {}
    if keep_existing and "split" in out.columns:
        have = out[out["split"].isin(SPLITS)]
        first = have.groupby("patient_key")["split"].first()
        existing = {str(k): str(v) for k, v in first.items()}
    assignment = assign_splits(
        out["patient_key"].astype(str).tolist(),
        fractions=fractions,
        seed=seed,
        strata=strata,
        existing=existing,
    )
    out["split"] = out["patient_key"].astype(str).map(assignment)
    check_no_leakage(out)
    return out


def resplit_store(
    store_dir: str | os.PathLike[str],
    *,
    stratify: str | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    keep_existing: bool = False,
) -> pd.DataFrame:
    """Re-assign a store's patient-level splits (optionally stratified by a label column).

    Args:
        store_dir: a curated store.
        stratify: a column of ``labels.parquet`` (patient-level rows) to stratify by, e.g.
            the outcome; patients without a value form their own stratum.
        fractions: (train, val, test).
        seed: split seed.
        keep_existing: keep patients' current splits and assign only unassigned ones.

    Returns:
        Split counts: a DataFrame with ``split``, ``patients``, ``series``.
    """
    from hidim.store.store import Store
    from hidim.store.writer import write_manifest

    store = Store(store_dir)
    strata = None
    if stratify is not None:
        labels = store.labels
        if stratify not in labels.columns:
            raise CurationError(
                f"expected stratify column {stratify!r} in labels.parquet, available: "
                f"{sorted(c for c in labels.columns if c not in ('patient_key', 'study_uid'))}"
            )
        per_patient = labels.dropna(subset=[stratify]).drop_duplicates("patient_key")
        strata = dict(
            zip(per_patient["patient_key"].astype(str), per_patient[stratify], strict=True)
        )
    manifest = split_manifest(
        store.manifest, fractions=fractions, seed=seed, strata=strata, keep_existing=keep_existing
    )
    write_manifest(store.path, manifest)
    return (
        manifest.groupby("split")
        .agg(patients=("patient_key", "nunique"), series=("series_key", "size"))
        .reset_index()
    )
