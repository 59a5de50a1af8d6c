"""Section 3 (Performance) from a run's metrics and predictions.

Numbers the run computed (``metrics.json``, ``uncertainty/summary.json``) are shown as
written, CIs included. Figures the run does not store are derived from the per-study
predictions (``predictions.parquet``) and survival curves (``survival_curves.parquet``):
Kaplan–Meier by predicted-risk group, the reliability diagram and the risk–coverage curve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hidim.report import curves
from hidim.report.metric_names import METRICS
from hidim.report.readers import as_estimate, finite, first, read_json, read_parquet, walk_estimates
from hidim.report.sections import (
    BaselineComparison,
    Calibration,
    Estimate,
    MetricRow,
    PerformanceSection,
)

__all__ = [
    "Predictions",
    "load_predictions",
    "metric_rows",
    "collect_performance",
    "METRIC_INFO",
    "eval_split",
    "find_column",
    "survival_columns",
]

METRIC_INFO: dict[str, tuple[str, bool, float | None]] = {
    k: (m.name, m.higher_is_better, m.chance) for k, m in METRICS.items() if m.kind == "performance"
}
"""Performance metric keys the report recognises in ``metrics.json`` (others with a CI are
shown as they are)."""


_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_PRIMARY = ("c_index", "cindex", "harrell_c", "auroc", "auc", "mae", "r2")


@dataclass(frozen=True)
class Predictions:
    """The prediction tables of a run (any may be missing)."""

    study: pd.DataFrame | None
    curves: pd.DataFrame | None
    sources: tuple[str, ...]


def load_predictions(run_dir: Path) -> Predictions:
    """Read ``predictions.parquet`` and ``survival_curves.parquet`` when present."""
    files = {
        "study": run_dir / "predictions.parquet",
        "curves": run_dir / "survival_curves.parquet",
    }
    tables = {k: read_parquet(p) for k, p in files.items()}
    return Predictions(
        study=tables["study"],
        curves=tables["curves"],
        sources=tuple(str(p) for k, p in files.items() if tables[k] is not None),
    )


def find_column(df: pd.DataFrame, *names: str) -> str | None:
    """The first of ``names`` that is a column of ``df``."""
    return next((n for n in names if n in df.columns), None)


def _norm(key: str) -> str:
    return key.lower().replace("-", "_").replace(" ", "_")


def _row(name: str, split: str, est: Estimate, n: Any) -> MetricRow:
    display, higher, chance = METRIC_INFO.get(_norm(name), (name, True, None))
    return MetricRow(
        name=display,
        split=split,
        estimate=est,
        n=int(n) if finite(n) is not None else None,
        higher_is_better=higher,
        chance=chance,
    )


def _split_rows(metrics: Mapping[str, Any]) -> list[MetricRow]:
    """``metrics.json`` as ``hidim train`` writes it: per split ``n``, ``metrics``, ``ci``
    (``{estimate, low, high}``) and ``answered`` (metrics on the cases not abstained)."""
    rows: list[MetricRow] = []
    for key, block in metrics.items():
        split = _SPLITS.get(_norm(str(key)))
        if split is None or not isinstance(block, Mapping):
            continue
        point = block.get("metrics") or {}
        cis = block.get("ci") or {}
        for name, value in point.items():
            ci = cis.get(name)
            est = as_estimate(ci) if isinstance(ci, Mapping) else as_estimate(value)
            if est.value is None:
                continue
            rows.append(_row(str(name), split, est, block.get("n")))
        answered = block.get("answered")
        if isinstance(answered, Mapping):
            cov = finite(answered.get("coverage"))
            for name, value in (answered.get("metrics") or {}).items():
                est = as_estimate(value)
                if est.value is None:
                    continue
                row = _row(str(name), split, est, None)
                suffix = (
                    f" (answered cases, {100 * cov:.0f} % coverage)"
                    if cov is not None
                    else " (answered cases)"
                )
                rows.append(row.model_copy(update={"name": row.name + suffix, "chance": None}))
    return rows


def metric_rows(metrics: Mapping[str, Any]) -> list[MetricRow]:
    """Every recognised metric in a ``metrics.json`` object, with split and CI.

    Reads the layout ``hidim train`` writes (per split ``metrics`` + ``ci``) and, for other
    producers, any nested estimates whose key is a known metric (:data:`METRIC_INFO`).
    """
    if any(isinstance(v, Mapping) and "metrics" in v for v in metrics.values()):
        order = {"test": 0, "val": 1, "train": 2}
        return sorted(_split_rows(metrics), key=lambda r: order.get(r.split, 3))
    rows: list[MetricRow] = []
    seen: set[tuple[str, str]] = set()
    for path, est in walk_estimates(metrics):
        split = next((_SPLITS[_norm(p)] for p in path if _norm(p) in _SPLITS), "test")
        rest = [
            p for p in path if _norm(p) not in _SPLITS and _norm(p) not in ("metrics", "overall")
        ]
        if not rest or est.value is None:
            continue
        key = _norm(rest[-1])
        info = METRIC_INFO.get(key)
        if info is None and not est.has_ci:
            continue
        name, higher, chance = info if info else (" ".join(rest), True, None)
        if len(rest) > 1 and rest[0] not in ("survival", "classification", "regression"):
            name = f"{name} ({' '.join(rest[:-1])})"
        if (name, split) in seen:
            continue
        seen.add((name, split))
        node: Any = metrics
        for p in path:
            node = node[p]
        n = finite(first(node, "n", "n_samples")) if isinstance(node, Mapping) else None
        rows.append(
            MetricRow(
                name=name,
                split=split,
                estimate=est,
                n=int(n) if n is not None else None,
                higher_is_better=higher,
                chance=chance,
            )
        )
    order = {"test": 0, "val": 1, "train": 2}
    return sorted(rows, key=lambda r: order.get(r.split, 3))


def eval_split(df: pd.DataFrame | None, rows: list[MetricRow]) -> str | None:
    """The split results are shown on: test when present, else validation."""
    present = set()
    if df is not None and "split" in df.columns:
        present |= set(df["split"].astype(str))
    present |= {r.split for r in rows}
    return next((s for s in ("test", "val") if s in present), None)


def survival_columns(df: pd.DataFrame) -> tuple[str, str, str] | None:
    """``(risk, time, event)`` column names of a prediction table, or ``None``."""
    risk = find_column(df, "risk", "risk_score", "log_hazard", "score")
    time, event = find_column(df, "time"), find_column(df, "event")
    if risk is None or time is None or event is None:
        return None
    return risk, time, event


def _event_prob_at(
    curves_df: pd.DataFrame, keys: pd.Series, key_col: str, horizon: float
) -> np.ndarray | None:
    """P(T <= horizon) per row of ``keys`` from a long or wide survival-curve table."""
    if key_col not in curves_df.columns:
        return None
    if {"time", "survival"} <= set(curves_df.columns):
        wide = curves_df.pivot_table(index=key_col, columns="time", values="survival")
    else:
        value_cols = [
            c
            for c in curves_df.columns
            if c != key_col and finite(str(c).removeprefix("t=")) is not None
        ]
        wide = curves_df.set_index(key_col)[value_cols]
        wide.columns = [float(str(c).removeprefix("t=")) for c in value_cols]
    grid = np.asarray(wide.columns, dtype=float)
    j = np.searchsorted(grid, horizon, side="right") - 1
    if j < 0:
        return None
    s = wide.reindex(keys.astype(str).to_numpy() if wide.index.dtype == object else keys.to_numpy())
    vals = s.iloc[:, j].to_numpy(dtype=float)
    return None if np.isnan(vals).any() else 1.0 - vals


def _key_column(df: pd.DataFrame) -> str | None:
    return find_column(df, "study_uid", "patient_key", "series_key", "study_key")


def _baseline(run_dir: Path, rows: list[MetricRow], split: str | None) -> BaselineComparison | None:
    metrics = read_json(run_dir / "metrics.json")
    if not isinstance(metrics, Mapping):
        return None
    base_rows = metric_rows(metrics)
    for key in _PRIMARY:
        name = METRIC_INFO[key][0]
        mine = next((r for r in rows if r.name == name and r.split == split), None)
        theirs = next((r for r in base_rows if r.name == name and r.split == split), None)
        if (
            mine
            and theirs
            and mine.estimate.value is not None
            and theirs.estimate.value is not None
        ):
            gain = mine.estimate.value - theirs.estimate.value
            better = gain > 0 if mine.higher_is_better else gain < 0
            return BaselineComparison(
                metric=name,
                split=split or "test",
                video=mine.estimate,
                baseline=theirs.estimate,
                baseline_name=f"2-D per-frame baseline ({run_dir.name})",
                higher_is_better=mine.higher_is_better,
                video_better=bool(better),
            )
    return None


def collect_performance(
    run_dir: Path, preds: Predictions, *, baseline_run: Path | None = None
) -> PerformanceSection:
    """Section 3: metrics with CIs, KM by risk group, calibration, baseline comparison."""
    metrics = read_json(run_dir / "metrics.json")
    df = preds.study
    if metrics is None and df is None:
        return PerformanceSection(
            status="not_run",
            note="No metrics.json or predictions.parquet: run `hidim predict RUN STORE`.",
        )
    rows = metric_rows(metrics) if isinstance(metrics, Mapping) else []
    split = eval_split(df, rows)
    km: tuple[Any, ...] = ()
    risk_times: np.ndarray = np.array([])
    logrank = None
    calibration: Calibration | None = None
    task = None
    notes = []
    if df is not None and len(df):
        ev = df[df["split"].astype(str) == split] if split and "split" in df.columns else df
        other = (
            df[df["split"].astype(str) != split] if split and "split" in df.columns else df.iloc[:0]
        )
        cols = survival_columns(ev)
        prob_col = find_column(ev, "prob", "probability", "prob_1")
        target_col = find_column(ev, "target", "label")
        if cols is not None and ev[cols[2]].astype(bool).any():
            task = "survival"
            risk_c, time_c, event_c = cols
            ok = ev[[risk_c, time_c, event_c]].notna().all(axis=1)
            ev = ev[ok]
            ref = other[risk_c].dropna().to_numpy(dtype=float) if len(other) >= 9 else None
            cut = curves.risk_group_cutpoints(ref) if ref is not None else None
            t = ev[time_c].to_numpy(dtype=float)
            e = ev[event_c].astype(bool).to_numpy()
            risk_times = curves.at_risk_times(t)
            km, logrank = curves.km_by_risk_group(
                t, e, ev[risk_c].to_numpy(dtype=float), cutpoints=cut, at_risk_at=risk_times
            )
            if cut is not None:
                notes.append(
                    "Risk groups use tertile cut-points of the training/validation predictions."
                )
            key = _key_column(ev)
            if preds.curves is not None and key is not None and e.any():
                horizon = float(np.median(t[e]))
                p_event = _event_prob_at(preds.curves, ev[key], key, horizon)
                if p_event is not None:
                    calibration = curves.survival_calibration(t, e, p_event, horizon)
        elif prob_col is not None and target_col is not None:
            task = "binary"
            ok = ev[[prob_col, target_col]].notna().all(axis=1)
            calibration = curves.binary_calibration(
                ev.loc[ok, target_col].to_numpy(dtype=float),
                ev.loc[ok, prob_col].to_numpy(dtype=float),
            )
        elif target_col is not None:
            task = "regression"
    baseline = _baseline(baseline_run, rows, split) if baseline_run is not None else None
    return PerformanceSection(
        status="ok" if rows else "partial",
        note=" ".join(notes)
        if rows
        else "No metrics.json: only prediction-derived figures are shown.",
        sources=tuple(s for s in (str(run_dir / "metrics.json"),) if metrics is not None)
        + preds.sources,
        task=task,
        eval_split=split,
        metrics=tuple(rows),
        km_curves=km,
        km_at_risk_times=tuple(float(x) for x in risk_times),
        km_logrank_p=logrank,
        calibration=calibration,
        baseline=baseline,
    )
