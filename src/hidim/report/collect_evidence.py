"""Sections 5 (Explanations) and 6 (Bias) from ``explain/summary.json`` and ``audit/summary.json``.

The explain and audit commands compute every number (sanity-check similarities, occlusion
drops with paired-bootstrap CIs and p-values, subgroup metrics with bootstrap CIs); this
module only maps their summaries onto the report's section models, accepting the key
spellings those summaries use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hidim.report.metric_names import display_name, metric_info
from hidim.report.readers import as_estimate, finite, first, read_json
from hidim.report.sections import (
    BiasSection,
    CountRow,
    Estimate,
    ExplanationSection,
    FrameImportance,
    OcclusionRow,
    PhaseRow,
    SaliencyCase,
    SanityCheck,
    ShapleyRow,
    SubgroupRow,
    TradeoffPoint,
)
from hidim.report.thresholds import FlagThresholds

__all__ = ["collect_explanations", "collect_bias"]


def _records(node: Any, name_key: str) -> list[Mapping[str, Any]]:
    """A list of records from a list of mappings or a ``{name: record}`` mapping."""
    if isinstance(node, Mapping):
        return [{name_key: k, **v} for k, v in node.items() if isinstance(v, Mapping)]
    if isinstance(node, Sequence) and not isinstance(node, str):
        return [r for r in node if isinstance(r, Mapping)]
    return []


def _opt_bool(x: Any) -> bool | None:
    return None if x is None else bool(x)


def _sanity(summary: Mapping[str, Any]) -> list[SanityCheck]:
    out = []
    for r in _records(first(summary, "sanity_checks", "sanity", default=[]), "method"):
        out.append(
            SanityCheck(
                method=str(first(r, "method", default="?")),
                test=str(first(r, "test", "kind", default="model_randomisation")),
                similarity=finite(first(r, "similarity", "score")),
                threshold=finite(first(r, "threshold")),
                passed=_opt_bool(first(r, "passed", "pass")),
            )
        )
    return out


def _drop(r: Mapping[str, Any]) -> Any:
    drop = first(r, "drop", "delta", "performance_drop")
    if isinstance(drop, Mapping) or drop is None:
        return drop or {}
    return {
        "value": drop,
        "lower": first(r, "drop_lower", "ci_low", "lower"),
        "upper": first(r, "drop_upper", "ci_high", "upper"),
    }


def _occlusion(summary: Mapping[str, Any]) -> list[OcclusionRow]:
    out = []
    for r in _records(first(summary, "occlusion", "occlusion_tests", default=[]), "region"):
        out.append(
            OcclusionRow(
                region=str(first(r, "region", "name", default="?")),
                anatomical=_opt_bool(first(r, "anatomical")),
                metric=display_name(str(first(r, "metric", default="metric"))),
                original=finite(first(r, "original", "baseline", "metric_original")),
                occluded=finite(first(r, "occluded", "metric_occluded")),
                drop=as_estimate(_drop(r)),
                p_value=finite(first(r, "p_value", "p")),
                subset=first(r, "subset", "site", "where"),
            )
        )
    return out


def _phases(summary: Mapping[str, Any]) -> list[PhaseRow]:
    out = []
    for r in _records(
        first(summary, "phases", "temporal", "phase_importance", default=[]), "phase"
    ):
        out.append(
            PhaseRow(
                phase=str(first(r, "phase", "window", "name", default="?")),
                metric=display_name(str(first(r, "metric", default="metric"))),
                drop=as_estimate(_drop(r)),
                p_value=finite(first(r, "p_value", "p")),
            )
        )
    return out


def _frames(summary: Mapping[str, Any]) -> FrameImportance | None:
    node = first(summary, "frame_importance", "per_frame_importance")
    if not isinstance(node, Mapping):
        return None
    imp = [float(x) for x in first(node, "importance", "values", default=[])]
    if not imp:
        return None
    frames = [int(x) for x in first(node, "frames", default=range(len(imp)))]
    phase = [str(x) for x in first(node, "phase", "phases", default=[])]
    return FrameImportance(
        frames=tuple(frames),
        importance=tuple(imp),
        phase=tuple(phase) if len(phase) == len(imp) else (),
    )


def _cases(summary: Mapping[str, Any], explain_dir: Path, run_dir: Path) -> list[SaliencyCase]:
    out = []
    for i, r in enumerate(_records(first(summary, "cases", "examples", default=[]), "case_id")):
        image = first(r, "image", "image_path", "overlay", "path")
        if image is None:
            continue
        path = Path(str(image))
        if not path.is_absolute():
            path = explain_dir / path if (explain_dir / path).exists() else run_dir / path
        try:
            rel = str(path.resolve().relative_to(run_dir.resolve()))
        except ValueError:
            continue  # images outside the run directory are not embedded
        out.append(
            SaliencyCase(
                case_id=str(first(r, "case_id", "id", "series_key", default=f"case {i + 1}")),
                correct=_opt_bool(first(r, "correct")),
                caption=str(first(r, "caption", "description", default="")),
                image_path=rel,
            )
        )
    return out


def _shapley(summary: Mapping[str, Any]) -> list[ShapleyRow]:
    node = first(summary, "shapley", "input_importance", "stream_importance", default={})
    if isinstance(node, Mapping):
        node = first(node, "mean_abs", "values", default=node)
    rows = [
        ShapleyRow(input=str(r.get("input")), value=float(v))
        for r in _records(node, "input")
        if (v := finite(first(r, "value", "mean_abs"))) is not None
    ]
    if isinstance(node, Mapping):
        rows += [
            ShapleyRow(input=str(k), value=float(v))
            for k, v in node.items()
            if finite(v) is not None
        ]
    return sorted(rows, key=lambda r: -abs(r.value))


def collect_explanations(run_dir: Path) -> ExplanationSection:
    """Section 5 from ``RUN/explain/summary.json``."""
    explain_dir = run_dir / "explain"
    summary = read_json(explain_dir / "summary.json")
    if not isinstance(summary, Mapping):
        return ExplanationSection(
            status="not_run", note="No explain/summary.json: run `hidim explain RUN --store STORE`."
        )
    methods = first(summary, "methods", default=[])
    notes = first(summary, "notes", default=[])
    return ExplanationSection(
        status="ok",
        note="; ".join(map(str, notes)) if isinstance(notes, list) else str(notes),
        sources=(str(explain_dir / "summary.json"),),
        methods=tuple(map(str, methods if isinstance(methods, list) else [methods])),
        sanity_checks=tuple(_sanity(summary)),
        occlusion=tuple(_occlusion(summary)),
        phases=tuple(_phases(summary)),
        frame_importance=_frames(summary),
        cases=tuple(_cases(summary, explain_dir, run_dir)),
        shapley=tuple(_shapley(summary)),
    )


def _subgroups(summary: Mapping[str, Any], min_n: int) -> list[SubgroupRow]:
    out = []
    reference = str(first(summary, "reference", default="overall"))
    for r in _records(first(summary, "rows", "groups", "subgroups", default=[]), "group"):
        n = int(first(r, "n", "count", default=0))
        diff = first(r, "difference", "diff", "gap")
        key = str(first(r, "metric", default="metric"))
        info = metric_info(key)
        out.append(
            SubgroupRow(
                attribute=str(first(r, "attribute", "by", default="group")),
                group=str(first(r, "group", "value", "level", default="?")),
                metric=info.name if info else key,
                kind=info.kind if info else "performance",
                higher_is_better=info.higher_is_better if info else True,
                n=n,
                events=(
                    int(e) if (e := finite(first(r, "events", "n_events"))) is not None else None
                ),
                estimate=as_estimate(first(r, "estimate", "value", "metric_value", default={})),
                difference=as_estimate(diff) if diff is not None else None,
                reference=str(first(r, "reference", default=reference)),
                small_n=bool(first(r, "small_n", "warning_small_n", default=n < min_n)),
            )
        )
    return out


def _tradeoff(summary: Mapping[str, Any]) -> tuple[list[TradeoffPoint], str | None, str | None]:
    node = first(summary, "tradeoff", "fairness_sweep", "sweep")
    perf = disp = None
    if isinstance(node, Mapping):
        perf, disp = first(node, "performance_metric"), first(node, "disparity_metric")
        node = first(node, "points", "rows", default=[])
    pts = []
    for r in _records(node, "weight"):
        w = finite(first(r, "weight", "lambda", "lam"))
        p = finite(first(r, "performance", "metric"))
        d = finite(first(r, "disparity", "gap"))
        if w is not None and p is not None and d is not None:
            pts.append(TradeoffPoint(weight=w, performance=p, disparity=d))
    return pts, perf, disp


def _audited_splits(run_dir: Path, summary: Mapping[str, Any]) -> tuple[CountRow, ...]:
    """Studies per split the audit covered: its ``settings.split`` (and ``n``), else every
    split of the predictions file it read."""
    settings = first(summary, "settings", default={})
    if isinstance(settings, Mapping) and settings.get("split") is not None:
        n = finite(settings.get("n"))
        return (CountRow(label=str(settings["split"]), count=int(n or 0)),)
    name = first(summary, "predictions", default="predictions.parquet")
    path = run_dir / str(name)
    if not path.is_file():
        return ()
    import pandas as pd
    import pyarrow.parquet as pq

    try:
        if "split" not in pq.read_schema(path).names:
            return ()
        split = pd.read_parquet(path, columns=["split"])["split"]
    except (OSError, ValueError):  # unreadable predictions: the performance section says so
        return ()
    order = {"train": 0, "val": 1, "test": 2}
    vc = split.astype(str).value_counts()
    return tuple(
        CountRow(label=str(k), count=int(v))
        for k, v in sorted(vc.items(), key=lambda kv: (order.get(kv[0], 3), kv[0]))
    )


def collect_bias(run_dir: Path, thresholds: FlagThresholds | None = None) -> BiasSection:
    """Section 6 from ``RUN/audit/summary.json``."""
    summary = read_json(run_dir / "audit" / "summary.json")
    if not isinstance(summary, Mapping):
        return BiasSection(
            status="not_run",
            note="No audit/summary.json: run `hidim audit RUN --by sex,ethnicity,site`.",
        )
    t = thresholds or FlagThresholds()
    rows = _subgroups(summary, t.min_group_n)
    pts, perf, disp = _tradeoff(summary)
    attrs = first(summary, "attributes", "by", default=sorted({r.attribute for r in rows}))
    overall: dict[str, Estimate] = {}
    for r in _records(first(summary, "table", default=[]), "metric"):
        if str(r.get("group")) == "overall":
            key = str(r.get("metric"))
            est = as_estimate({k: r.get(k) for k in ("estimate", "lower", "upper")})
            if est.value is not None:
                overall[display_name(key)] = est
    settings = first(summary, "settings", default={})
    n_audited = finite(first(settings, "n")) if isinstance(settings, Mapping) else None
    return BiasSection(
        status="ok",
        sources=(str(run_dir / "audit" / "summary.json"),),
        attributes=tuple(map(str, attrs)),
        metrics=tuple(dict.fromkeys(r.metric for r in rows)),
        overall=overall,
        n_audited=int(n_audited) if n_audited is not None else None,
        audited_splits=_audited_splits(run_dir, summary),
        rows=tuple(rows),
        tradeoff=tuple(pts),
        tradeoff_performance=perf,
        tradeoff_disparity=disp,
    )
