"""Section 4 (Uncertainty): abstention, risk–coverage and out-of-distribution results.

Reads what ``hidim predict`` recorded about its abstain rule (``predictions.json``), the
per-study ``uncertainty``/``abstain`` columns of ``predictions.parquet`` and, when an OOD
check ran, ``uncertainty/summary.json`` (the layout of
:func:`hidim.evaluate.uncertainty.ood_abstention_summary`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hidim.report import curves
from hidim.report.collect_perf import Predictions, eval_split, find_column, survival_columns
from hidim.report.readers import as_estimate, finite, first, read_json
from hidim.report.sections import OODRow, UncertaintySection

__all__ = ["collect_uncertainty", "UNCERTAINTY_SOURCES"]

UNCERTAINTY_SOURCES = {
    "ensemble_sd": "spread (SD) of the ensemble members' predictions",
    "mc_dropout_sd": "spread (SD) over Monte-Carlo dropout passes",
    "head": "the head's own uncertainty (evidential / predicted variance / entropy)",
    "clip_sd": "spread (SD) of the predictions over the clips of a study",
    "ensemble_head_mean": "the ensemble members' own (evidential) uncertainty, averaged",
}
"""How ``hidim predict`` measured uncertainty (``uncertainty_source``), in words."""


def _ood_rows(summary: Mapping[str, Any]) -> list[OODRow]:
    node = first(summary, "ood", "ood_inputs", "out_of_distribution", default={})
    items: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(node, Mapping):
        node = first(node, "by_kind", "kinds", default=node)
        items = [(str(k), v) for k, v in node.items() if isinstance(v, Mapping)]
    elif isinstance(node, list):
        items = [
            (str(first(v, "kind", "name", default=f"input {i}")), v) for i, v in enumerate(node)
        ]
    rows = []
    if finite(first(summary, "id_abstention")) is not None:  # ood_abstention_summary layout
        items.append(
            (
                "ordinary test echoes",
                {
                    "n": summary.get("n_id", 0),
                    "rate": summary["id_abstention"],
                    "in_distribution": True,
                },
            )
        )
    for kind, v in items:
        n = int(first(v, "n", "count", default=0))
        abstained = first(v, "abstained", "n_abstained")
        rate = finite(first(v, "rate", "abstention", "abstention_rate", "abstain_rate"))
        if abstained is None and rate is not None:
            abstained = round(rate * n)
        if rate is None:
            rate = (int(abstained) / n) if n and abstained is not None else 0.0
        in_dist = bool(
            first(v, "in_distribution", default=kind.lower() in ("in_distribution", "test", "id"))
        )
        rows.append(
            OODRow(
                kind=kind,
                in_distribution=in_dist,
                n=n,
                abstained=int(abstained or 0),
                rate=float(rate),
                note=str(first(v, "note", default="")),
            )
        )
    return rows


def collect_uncertainty(run_dir: Path, preds: Predictions) -> UncertaintySection:
    """Section 4: abstention, risk–coverage and out-of-distribution results."""
    summary = read_json(run_dir / "uncertainty" / "summary.json")
    summary = dict(summary) if isinstance(summary, Mapping) else {}
    info = read_json(run_dir / "predictions.json")
    if isinstance(info, Mapping):  # what `hidim predict` recorded about its abstain rule
        method = info.get("uncertainty_source")
        if method is not None and info.get("ood_threshold") is not None:
            method = (
                f"{UNCERTAINTY_SOURCES.get(str(method), str(method))}; plus an image-density "
                "gate: inputs whose image embedding lies far outside the training data's "
                f"(distance > {float(info['ood_threshold']):.3g}, set on validation) are refused"
            )
        summary.setdefault("method", method)
        summary.setdefault("target_coverage", info.get("coverage"))
        summary.setdefault("threshold", info.get("abstain_threshold"))
    df = preds.study
    unc_col = find_column(df, "uncertainty", "uncertainty_score") if df is not None else None
    if not summary and unc_col is None:
        return UncertaintySection(
            status="not_run",
            note="No uncertainty estimates: train with an ensemble or evidential head and run `hidim predict`.",
        )
    split = None
    n_ood: int | None = None
    abst = finite(first(summary, "abstention_rate", "abstain_rate"))
    n_eval = first(summary, "n", "n_eval")
    points: tuple[Any, ...] = ()
    aurc = finite(first(summary, "aurc"))
    risk_name = None
    if df is not None and unc_col is not None:
        split = eval_split(df, [])
        ev = df[df["split"].astype(str) == split] if split and "split" in df.columns else df
        ev = ev[ev[unc_col].notna()]
        abst_col = find_column(ev, "abstain", "abstained")
        if abst is None and abst_col is not None:
            abst = float(ev[abst_col].astype(bool).mean())
        if "abstain_reason" in ev.columns:
            n_ood = int((ev["abstain_reason"].astype(str) == "out_of_distribution").sum())
        if n_eval is None:
            n_eval = len(ev)
        cols = survival_columns(ev)
        u = ev[unc_col].to_numpy(dtype=float)
        if cols is not None and ev[cols[2]].astype(bool).sum() >= 2:
            risk_c, time_c, event_c = cols
            points, derived = curves.risk_coverage(
                u,
                survival=(
                    ev[time_c].to_numpy(dtype=float),
                    ev[event_c].astype(bool).to_numpy(),
                    ev[risk_c].to_numpy(dtype=float),
                ),
            )
            risk_name = "1 − C-index"
        elif find_column(ev, "prob") and find_column(ev, "target"):
            err = (ev["prob"].to_numpy(dtype=float) >= 0.5) != ev["target"].astype(bool).to_numpy()
            points, derived = curves.risk_coverage(u, loss=err.astype(float))
            risk_name = "error rate"
        elif find_column(ev, "value", "pred") and find_column(ev, "target"):
            pred = ev[find_column(ev, "value", "pred")].to_numpy(dtype=float)  # type: ignore[index]
            points, derived = curves.risk_coverage(
                u, loss=np.abs(pred - ev["target"].to_numpy(dtype=float))
            )
            risk_name = "absolute error"
        else:
            derived = None
        if aurc is None and derived is not None and np.isfinite(derived):
            aurc = derived
    ood_auroc = first(summary, "ood_auroc")
    return UncertaintySection(
        status="ok",
        sources=tuple(
            str(p)
            for p in (run_dir / "uncertainty" / "summary.json", run_dir / "predictions.json")
            if p.is_file()
        )
        + preds.sources,
        method=UNCERTAINTY_SOURCES.get(str(m), str(m))
        if (m := first(summary, "method", "uncertainty_method"))
        else None,
        target_coverage=finite(first(summary, "target_coverage", "coverage")),
        threshold=finite(first(summary, "threshold", "abstain_threshold")),
        abstention_rate=abst,
        n_eval=int(n_eval) if n_eval is not None else None,
        ood_threshold=finite(info.get("ood_threshold")) if isinstance(info, Mapping) else None,
        n_abstained_ood=n_ood,
        risk_name=risk_name,
        risk_coverage=points,
        aurc=aurc,
        ood=tuple(_ood_rows(summary)),
        ood_auroc=as_estimate(ood_auroc) if ood_auroc is not None else None,
    )
