"""The sections of :func:`hidim.explain.run.explain_run`, one function each.

Each takes the run's scorer factory (item → ``nn.Module`` ``[B,C,T,H,W] → [B]``), the test
items and the options, and returns ``{"rows": [...], "details": {...}, ...}``: ``rows`` in
the report's section shape, ``details`` with everything else.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from hidim.errors import ExplainError, HidimError
from hidim.explain.occlusion import Region, grid_regions, occlusion_scores, performance_drop
from hidim.explain.regions import TruthIndex, phantom_phases
from hidim.explain.temporal import (
    FramePhases,
    phase_window_masks,
    prediction_shift,
    temporal_regions,
)

__all__ = [
    "localisation",
    "occlusion_section",
    "temporal_section",
    "cases_section",
    "sanity_section",
    "streams_section",
]

Item = Mapping[str, Any]
ScorerFor = Callable[[Item], nn.Module]
PHASE_WINDOWS = ("end_diastole", "end_systole", "mid_systole", "mid_diastole")
ANATOMY = ("lv_cavity", "myocardium")


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _drop_row(r: Mapping[str, Any], subset: str | None) -> dict[str, Any]:
    anatomical = r.get("anatomical")
    return {
        "region": r["region"],
        "anatomical": None if anatomical is None or pd.isna(anatomical) else bool(anatomical),
        "metric": r["metric"],
        "original": _num(r.get("original")),
        "occluded": _num(r.get("occluded")),
        "drop": {
            "value": _num(r.get("drop")),
            "lower": _num(r.get("drop_lower")),
            "upper": _num(r.get("drop_upper")),
        },
        "p_value": _num(r.get("p_value")),
        "subset": subset,
    }


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (_num(v) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()}
        for r in df.astype(object).where(df.notna(), None).to_dict(orient="records")
    ]


def _rel(path: Path, run: Path) -> str:
    return os.path.relpath(path, run)


def _site_of(store: Any) -> dict[str, str]:
    labels = store.labels if store.has_labels else pd.DataFrame()
    if "site" not in labels.columns or "patient_key" not in labels.columns:
        return {}
    return {
        str(p): str(s)
        for p, s in zip(labels["patient_key"], labels["site"], strict=True)
        if s is not None and not (isinstance(s, float) and math.isnan(s))
    }


def _png(fig: Any, path: Path) -> Path:
    from hidim.provenance import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def _grid_figure(drops: np.ndarray, metric: str, path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.6, 3.0))
    ax = fig.subplots()
    lim = max(float(np.nanmax(np.abs(drops))) if np.isfinite(drops).any() else 0.0, 1e-6)
    im = ax.imshow(drops, cmap="RdBu_r", vmin=-lim, vmax=lim)
    for (r, c), v in np.ndenumerate(drops):
        if np.isfinite(v):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{metric} drop when each cell is masked", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _png(fig, path)


def occlusion_section(
    scorer_for: ScorerFor,
    items: Any,
    store: Any,
    regions: Sequence[Region],
    task: str,
    opts: Any,
    out: Path,
    run: Path,
) -> dict[str, Any]:
    """Region occlusion overall and per site, plus the grid map and shortcut flags."""
    grid = grid_regions(opts.grid) if opts.grid else []
    scores = occlusion_scores(
        scorer_for, items, [*regions, *grid], batch_size=opts.batch_size,
        progress=opts.progress, total=len(items),
    )  # fmt: skip
    sites = _site_of(store)
    if "patient_key" in scores.columns:
        scores["site"] = scores["patient_key"].map(lambda p: sites.get(str(p)))
    kw = {"task": task, "n_boot": opts.n_boot, "alpha": opts.alpha, "seed": opts.seed}
    table = performance_drop(scores, regions, **kw) if regions else pd.DataFrame()
    rows = [_drop_row(r, None) for r in _records(table)]
    per_site: list[dict[str, Any]] = []
    if "site" in scores.columns and regions:
        for site in sorted(scores["site"].dropna().unique()):
            sub = scores[scores["site"] == site]
            t = performance_drop(sub, regions, **kw)
            rows += [_drop_row(r, f"site={site}") for r in _records(t)]
            per_site += [dict(r, subset=f"site={site}") for r in _records(t)]
    flags = []
    for r in rows:
        d = r["drop"]
        big = d["value"] is not None and d["value"] >= opts.min_shortcut_drop
        if r["anatomical"] is False and d["lower"] is not None and d["lower"] > 0 and big:
            where = f" ({r['subset']})" if r["subset"] else ""
            flags.append(
                {
                    "code": "non_anatomical_reliance",
                    "region": r["region"],
                    "subset": r["subset"],
                    "drop": d["value"],
                    "p_value": r["p_value"],
                    "message": (
                        f"model relies on a non-anatomical region: masking {r['region']}"
                        f"{where} worsens {r['metric']} by {d['value']:.3f} "
                        f"(95% CI {d['lower']:.3f} to {d['upper']:.3f})"
                    ),
                }
            )
    details: dict[str, Any] = {"table": _records(table), "per_site": per_site}
    if grid:
        gt = performance_drop(
            scores, grid, **{**kw, "n_boot": min(opts.n_boot, 200)}, all_metrics=False
        )
        drops = gt["drop"].to_numpy(dtype=float).reshape(opts.grid)
        fig = _grid_figure(drops, gt["metric"].iloc[0], out / "grid_occlusion.png")
        details["grid"] = {
            "shape": list(opts.grid),
            "drop": drops.tolist(),
            "significant": gt["significant"].to_numpy().reshape(opts.grid).tolist(),
            "figure": _rel(fig, run),
        }
    keep = [c for c in scores.columns if not c.startswith(("grid_", "masked__grid_"))]
    return {"rows": rows, "details": details, "flags": flags, "scores": scores[keep]}


def temporal_section(
    scorer_for: ScorerFor, items: Any, index: TruthIndex | None, task: str, opts: Any
) -> dict[str, Any]:
    """Performance drop per cardiac-phase window (truth phases, else estimated)."""
    sources: dict[str, int] = {}
    base = phantom_phases(index)

    def phase_fn(item: Item) -> FramePhases | None:
        ph = base(item)
        if ph is not None:
            sources[ph.source] = sources.get(ph.source, 0) + 1
        return ph

    regions = temporal_regions(phase_fn, windows=PHASE_WINDOWS)
    scores = occlusion_scores(
        scorer_for, items, regions, fill="temporal_mean", batch_size=opts.batch_size,
        progress=opts.progress, total=len(items),
    )  # fmt: skip
    table = performance_drop(
        scores, regions, task=task, n_boot=opts.n_boot, alpha=opts.alpha, seed=opts.seed
    )
    rows = [
        {
            "phase": r["region"],
            "metric": r["metric"],
            "drop": {
                "value": _num(r["drop"]),
                "lower": _num(r["drop_lower"]),
                "upper": _num(r["drop_upper"]),
            },
            "p_value": _num(r["p_value"]),
        }
        for r in _records(table)
    ]
    n_regions = max(1, len(regions))
    shift = prediction_shift(
        scores, PHASE_WINDOWS, n_boot=opts.n_boot, alpha=opts.alpha, seed=opts.seed
    )
    return {
        "rows": rows,
        "details": {
            "table": _records(table),
            "phase_source": {k: v // n_regions for k, v in sources.items()},
            "prediction_shift": shift,
        },
    }


Case = tuple[int, bool | None, str]


def _select_cases(
    scores: pd.DataFrame | None, task: str, n: int
) -> list[tuple[int, bool | None, str]]:
    """``(item index, correct, why)`` for up to ``n`` cases, half right and half wrong."""
    if n == 0:
        return []
    if scores is None or "original" not in scores.columns:
        return [(i, None, "first test case") for i in range(n)]
    s = scores["original"].to_numpy(float)
    idx = np.arange(len(scores))
    if task == "binary" and "target" in scores.columns:
        # Positives first: true positives (most confident first), then missed positives
        # (the clinically costly errors), before true negatives and false alarms.
        y = scores["target"].to_numpy(float) >= 0.5
        thr = 0.5 if ((s >= 0) & (s <= 1)).all() else 0.0
        correct = (s >= thr) == y
        confidence = np.abs(s - thr) + np.where(y, 10.0, 0.0)
    elif task == "regression" and "target" in scores.columns:
        err = np.abs(s - scores["target"].to_numpy(float))
        correct = err <= np.median(err)
        confidence = np.where(correct, -err, err)
    else:  # survival: no per-case right/wrong; show the extremes of risk
        order = np.argsort(-s)
        half = [int(i) for i in order[: (n + 1) // 2]]
        rest = [int(i) for i in order[::-1] if int(i) not in half][: n - len(half)]
        picked: list[Case] = [(i, None, "highest risk") for i in half]
        return picked + [(i, None, "lowest risk") for i in rest]
    right = idx[correct][np.argsort(-confidence[correct])].tolist()
    wrong = idx[~correct][np.argsort(-confidence[~correct])].tolist()
    n_wrong = min(len(wrong), n // 2)
    n_right = min(len(right), n - n_wrong)
    n_wrong = min(len(wrong), n - n_right)
    out: list[Case] = [(int(i), True, "correct") for i in right[:n_right]]
    return out + [(int(i), False, "incorrect") for i in wrong[:n_wrong]]


def localisation(attr: np.ndarray, mask: np.ndarray) -> dict[str, float] | None:
    """Share of positive attribution inside ``mask`` vs the mask's share of the frame.

    Returns ``{"share", "area", "lift"}`` (lift = share / area; 1 = no better than a uniform
    map) or ``None`` for an all-zero map or an empty mask.
    """
    pos = np.clip(attr, 0, None) if (attr > 0).any() else np.abs(attr)
    total = float(pos.sum())
    area = float(mask.mean())
    if total <= 0 or area <= 0:
        return None
    inside = float(pos[:, mask].sum()) / total
    return {"share": inside, "area": area, "lift": inside / area}


def cases_section(
    bundle: Any,
    scorer_for: ScorerFor,
    items: Any,
    scores: pd.DataFrame | None,
    index: TruthIndex | None,
    task: str,
    opts: Any,
    out: Path,
    run: Path,
) -> dict[str, Any]:
    """Saliency overlays for correct and incorrect cases, with localisation and phases."""
    from hidim.explain.render import (
        frame_importance,
        plot_frame_importance,
        write_overlay_gif,
        write_overlay_panel,
    )
    from hidim.explain.saliency import explain

    phase_fn = phantom_phases(index)
    cases, details = [], []
    frame_imp = None
    fps = _single_fps(bundle.preprocessing.get("fps"))
    for k, (i, correct, why) in enumerate(_select_cases(scores, task, opts.n_cases)):
        item = items[i]
        clip = torch.as_tensor(item["clip"], dtype=torch.float32)
        scorer = scorer_for(item)
        with torch.no_grad():
            score = float(scorer(clip[None])[0])
        phases = phase_fn(item)
        labels = list(phases.phase) if phases is not None else None
        key = str(item.get("series_key", f"item{i}"))
        label = _label_text(item, task)
        entry: dict[str, Any] = {"case_id": key, "correct": correct, "why": why, "score": score,
                                 "label": label, "methods": {}}  # fmt: skip
        for j, method in enumerate(opts.methods):
            attr = explain(scorer, clip, method=method, chunk_frames=opts.chunk_frames).numpy()
            stem = out / "cases" / f"case{k}_{method}"
            title = f"{method}: score {score:.3f}, {label} ({why})"
            panel = write_overlay_panel(f"{stem}.png", clip, attr, title=title, frame_labels=labels)
            m: dict[str, Any] = {"panel": _rel(panel, run)}
            if j == 0:
                gif = write_overlay_gif(f"{stem}.gif", clip, attr, fps=fps or 10.0)
                imp = frame_importance(attr)
                curve = plot_frame_importance(out / "cases" / f"case{k}_importance.png", imp,
                                              phases=labels, fps=fps)  # fmt: skip
                m.update(gif=_rel(gif, run), curve=_rel(curve, run))
                if frame_imp is None:
                    frame_imp = {
                        "frames": list(range(len(imp))),
                        "importance": [float(v) for v in imp],
                        "phase": labels or [],
                    }
                cases.append({"case_id": key, "correct": correct, "caption": title,
                              "image_path": _rel(panel, run)})  # fmt: skip
            if phases is not None:
                m["attribution_by_window"] = _window_shares(attr, phases)
            if index is not None:
                m["localisation"] = _case_localisation(attr, index, key)
            entry["methods"][method] = m
        details.append(entry)
    return {"cases": cases, "frame_importance": frame_imp, "details": details}


def _single_fps(value: Any) -> float | None:
    """The store's frame rate when all clips share one (``preprocessing["fps"]``)."""
    if isinstance(value, (list, tuple)):
        return float(value[0]) if len(value) == 1 and value[0] else None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _label_text(item: Item, task: str) -> str:
    if task == "survival":
        t, e = item.get("time"), item.get("event")
        return f"time {float(t or 0):.0f}, {'event' if bool(e) else 'censored'}"
    y = item.get("target")
    try:
        return f"label {float(y):.3g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "label n/a"


def _window_shares(attr: np.ndarray, phases: FramePhases) -> dict[str, float]:
    """Mean |attribution| per frame of each phase window, relative to the clip's mean."""
    per_frame = np.abs(attr).reshape(attr.shape[0], -1).sum(1)
    mean = float(per_frame.mean()) or 1.0
    masks = phase_window_masks(phases)
    return {w: float(per_frame[masks[w]].mean() / mean) for w in PHASE_WINDOWS if masks[w].any()}


def _case_localisation(attr: np.ndarray, index: TruthIndex, key: str) -> dict[str, Any]:
    shape = attr.shape[-2:]
    out: dict[str, Any] = {}
    masks = [index.region_mask(key, n, shape) for n in ANATOMY]
    anatomy = [m for m in masks if m is not None]
    if anatomy:
        out["heart"] = localisation(attr, np.logical_or.reduce(anatomy))
    entry = index.entry(key)
    if entry is not None and "shortcut_marker" in entry["regions"]:
        marker = index.region_mask(key, "shortcut_marker", shape)
        if marker is not None:
            out["shortcut_marker"] = localisation(attr, marker)
    return out


def sanity_section(
    bundle: Any, scorer_for: ScorerFor, items: Any, opts: Any, out: Path
) -> dict[str, Any]:
    """Cascading parameter randomisation (and optional label randomisation) per method."""
    from hidim.explain.sanity import data_randomisation_test, model_randomisation_test

    n = min(opts.sanity_clips, len(items))
    if n == 0:
        return {"rows": [], "details": {}, "notes": ["sanity checks skipped (sanity_clips=0)"]}
    chosen = [items[i] for i in range(n)]
    clips = [torch.as_tensor(it["clip"], dtype=torch.float32) for it in chosen]
    scorer = scorer_for(chosen[0])
    kwargs = {"chunk_frames": opts.chunk_frames} if opts.chunk_frames else {}
    methods = [*opts.methods, "edge"]  # edge: the negative control that must fail
    results = model_randomisation_test(
        scorer, clips, methods=methods, max_steps=opts.sanity_steps, seed=opts.seed,
        explain_kwargs=kwargs,
    )  # fmt: skip
    notes: list[str] = []
    if opts.label_randomisation:
        try:
            results += data_randomisation_test(
                _retrainer(bundle, opts, out), clips, methods=methods, reference_model=None,
                seed=opts.seed, explain_kwargs=kwargs,
            )  # fmt: skip
        except HidimError as exc:
            notes.append(f"label randomisation not run: {exc}")
    else:
        notes.append("label randomisation not run (pass label_randomisation=True; retrains)")
    rows = [
        {"method": r.method, "test": r.test, "similarity": _num(r.similarity),
         "threshold": r.threshold, "passed": r.passed}
        for r in results
        if r.method != "edge"
    ]  # fmt: skip
    control = [r.to_dict() for r in results if r.method == "edge"]
    if any(c["passed"] for c in control):
        notes.append("the edge-detector control passed a sanity check: the test is not sensitive")
    return {
        "rows": rows,
        "details": {
            "results": [r.to_dict() for r in results if r.method != "edge"],
            "negative_control": control,
            "n_clips": n,
        },
        "notes": notes,
    }


def _retrainer(bundle: Any, opts: Any, out: Path) -> Callable[..., nn.Module]:
    """``train_fn(shuffle_labels, seed)``: a short retraining on (permuted) labels, under
    ``out/label_randomisation/`` (replaced on every run; kept for inspection)."""
    import shutil

    from hidim.explain.shuffled_store import label_shuffled_store
    from hidim.training.bundle import load_run
    from hidim.training.train import train

    cfg = bundle.config
    work = out / "label_randomisation"
    shutil.rmtree(work, ignore_errors=True)

    def train_fn(*, shuffle_labels: bool, seed: int) -> nn.Module:
        store = Path(cfg.data.store)
        if shuffle_labels:
            store = label_shuffled_store(store, work / "store", config=cfg, seed=seed)
        c = cfg.model_copy(
            update={
                "data": cfg.data.model_copy(update={"store": store}),
                "trainer": cfg.trainer.model_copy(
                    update={
                        "max_epochs": opts.retrain_epochs,
                        "loggers": [],
                        "progress_bar": False,
                        "early_stopping_patience": 0,
                    }
                ),  # fmt: skip
            }
        )
        run = work / ("shuffled" if shuffle_labels else "true")
        train(c, run, overwrite=True, evaluate=False)
        return load_run(run).scorer("score")

    return train_fn


def streams_section(bundle: Any, items: Any, opts: Any, max_cases: int = 64) -> dict[str, Any]:
    """Shapley importance of the image embedding vs each tabular variable."""
    from hidim.explain.streams import stream_importance

    net = bundle.model
    if net.tabular is None:
        return {"rows": [], "details": {}, "notes": ["no tabular inputs: stream importance n/a"]}
    if net.multiview is not None:
        return {"rows": [], "details": {},
                "notes": ["stream importance for multi-view fusion is not supported yet"]}  # fmt: skip
    enc = bundle.tabular_encoder
    names = [c for c in enc.columns for _ in range(len(enc.categories.get(c, [])) or 1)]
    n = min(len(items), max_cases)
    embs, tabs, miss = [], [], []
    with torch.no_grad():
        for i in range(n):
            it = items[i]
            embs.append(net.backbone(torch.as_tensor(it["clip"], dtype=torch.float32)[None])[0])
            tabs.append(torch.as_tensor(it["tabular"], dtype=torch.float32))
            miss.append(torch.as_tensor(it["tabular_missing"]).bool())
    head = net.head

    def fn(e: torch.Tensor, t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return head.predict(head(net.tabular(e, t, m)))["score"]

    if len(names) != tabs[0].shape[0]:
        raise ExplainError(f"tabular encoder names {len(names)} != features {tabs[0].shape[0]}")
    df = stream_importance(
        fn, torch.stack(embs), torch.stack(tabs), torch.stack(miss), names=names,
        n_background=8, seed=opts.seed,
    )  # fmt: skip
    rows = [{"input": r["input"], "value": float(r["mean_abs"])} for r in df.to_dict("records")]
    return {"rows": rows, "details": {"table": _records(df), "n_cases": n}, "notes": []}
