"""``predict(run_dir, store)``: per-clip and per-study predictions with uncertainty and abstention.

Every series is cut into clips covering all its frames (``data.eval_stride``, default
non-overlapping) and each clip is scored by every member of the run (one model, an ensemble,
or the CV folds). A study's prediction is the mean over its clips — test-time averaging,
as EchoNet-Dynamic averages beat-to-beat — and over members.

``uncertainty`` per study is, by priority: for ensembles, the members' mean head
uncertainty when the head's is epistemic (evidential heads: ``ensemble_head_mean``; the spread of the members'
study scores is kept as ``uncertainty_spread``, since the spread alone misses
out-of-distribution inputs all members agree on) and otherwise that spread
(``ensemble_sd``); the spread over MC-dropout passes (``uncertainty.mc_dropout_samples``);
the head's own (entropy for classification, ``K / S`` for evidential, predicted SD for
heteroscedastic regression); and otherwise the clip-to-clip SD of the score within the
study. ``uncertainty_source`` says which.

``ood_distance`` (runs trained with ``uncertainty.ood_gate``, the default) is how far the
study's image embedding lies from the training data (:mod:`hidim.training.ood_gate`; about
1 at the edge of the training cloud). ``abstain`` ("I don't know") flags studies whose
uncertainty exceeds its threshold or whose ``ood_distance`` exceeds the gate's, both
calibrated on the validation split so that ``uncertainty.coverage`` of validation studies
are answered; ``abstain_reason`` says which rule fired (``out_of_distribution`` /
``uncertain``) and ``abstain_score`` is the larger of the two ratios value / threshold
(above 1 or NaN: abstained), one score for risk–coverage curves.

Outputs (Parquet): ``predictions.parquet`` (per study), ``predictions_clips.parquet``,
``predictions_refused.parquet`` (series of the store the model did not score, with the
reason: e.g. a CT volume has no view the model takes), and ``survival_curves.parquet``
(long: ``study_uid``, ``time``, ``survival``) for survival heads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hidim.errors import TrainingError
from hidim.models.network import HidimNet
from hidim.parallel import progress_bar
from hidim.provenance import atomic_write_bytes, atomic_write_text, package_versions
from hidim.store import Store, labels_per_series
from hidim.training.abstention import (
    abstain_rule,
    abstention_threshold,
    apply_rule,
)
from hidim.training.bundle import RunBundle, load_run
from hidim.training.datamodule import build_dataset, collate_items
from hidim.training.metrics import compute_metrics, head_kind, metrics_with_ci, task_kind
from hidim.training.ood_gate import ImageFeatureTap, ood_distance

__all__ = [
    "PredictResult",
    "predict",
    "aggregate_studies",
    "abstention_threshold",
    "predictions_metrics",
]

_KEYS = ("patient_key", "study_uid", "series_key", "view", "split")


@dataclass(frozen=True)
class PredictResult:
    """Paths and tables :func:`predict` wrote."""

    studies: pd.DataFrame
    clips: pd.DataFrame
    curves: pd.DataFrame | None
    paths: dict[str, Path]
    abstain_threshold: float | None
    uncertainty_source: str
    task: str
    refused: pd.DataFrame | None = None


@torch.no_grad()
def _epistemic_head(head: Any) -> bool:
    """Heads whose own ``uncertainty`` is epistemic (evidential: grows off the training data).

    Entropy of a plain classifier is aleatoric; for those ensembles the spread stays the
    uncertainty (Lakshminarayanan et al. 2017).
    """
    from hidim.tasks.evidential import EvidentialClassificationHead, EvidentialRegressionHead

    return isinstance(head, (EvidentialClassificationHead, EvidentialRegressionHead))


@torch.no_grad()
def _member_predictions(
    net: HidimNet, batch: dict[str, Any], mc_samples: int, seed: int
) -> tuple[dict[str, Tensor], Tensor | None]:
    from hidim.evaluate.uncertainty import enable_mc_dropout

    net.eval()
    preds = net.predict_batch(batch)
    mc = None
    if mc_samples > 0:
        if not enable_mc_dropout(net):
            net.eval()
            raise TrainingError(
                "uncertainty.mc_dropout_samples > 0 but the network has no dropout layer; "
                "add dropout (model.backbone_kwargs.dropout or task.params.dropout) or use "
                "--ensemble"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            draws = [net.predict_batch(batch)["score"].float() for _ in range(mc_samples)]
        net.eval()
        mc = torch.stack(draws)  # [S, B]
    return preds, mc


def _clip_table(
    bundle: RunBundle,
    store: Store,
    *,
    splits: Sequence[str] | None,
    batch_size: int,
    mc_samples: int,
    show_progress: bool,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    cfg = bundle.config
    multiview = cfg.model.multiview is not None
    data = cfg.data.model_copy(
        update={"target": None, "threshold": None, "tabular": cfg.data.tabular}
    )
    ds = build_dataset(
        store,
        data,
        split=list(splits) if splits else None,
        sampling="centre" if multiview else "all",
        multiview=multiview,
        seed=None,
        encoder=bundle.tabular_encoder,
        coder=None,
        stride=cfg.data.eval_stride,
    )
    if len(ds) == 0:
        raise TrainingError(
            f"no series to predict in {store.path} (views={cfg.data.views}, splits={splits})"
        )
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=False,
        num_workers=cfg.data.num_workers,
        collate_fn=collate_items,
    )
    rows: list[dict[str, Any]] = []
    member_scores: list[np.ndarray] = []
    extra: dict[str, list[np.ndarray]] = {}
    with progress_bar(disable=not show_progress) as bar:
        task = bar.add_task("predicting", total=len(loader))
        for index, batch in enumerate(loader):
            n = len(batch["study_uid"])
            per_member = []
            distances = []
            for k, member in enumerate(bundle.members):
                with ImageFeatureTap(member.net) as tap:
                    preds, mc = _member_predictions(
                        member.net, batch, mc_samples, seed=1000 * index + k
                    )
                    if member.density is not None:
                        distances.append(ood_distance(member.density, tap.first).numpy())
                per_member.append(preds["score"].float().cpu().numpy())
                if k == 0:
                    first = preds
                    first_mc = mc
                else:
                    for key in ("prob", "value", "risk", "survival", "uncertainty"):
                        if key in preds:
                            first[key] = first[key] + preds[key]
                    if mc is not None and first_mc is not None:
                        first_mc = torch.cat([first_mc, mc])
            m = len(bundle.members)
            for key in ("prob", "value", "risk", "survival", "uncertainty"):
                if key in first and m > 1:
                    first[key] = first[key] / m
            member_scores.append(np.stack(per_member, axis=1))  # [B, M]
            if distances:  # mean over the members that have an image density
                extra.setdefault("ood_distance", []).append(np.mean(distances, axis=0))
            for key in ("prob", "survival"):
                if key in first:
                    extra.setdefault(key, []).append(first[key].float().cpu().numpy())
            if first_mc is not None:
                extra.setdefault("mc", []).append(first_mc.cpu().numpy().T)  # [B, S]
            for i in range(n):
                row = {
                    "patient_key": batch["patient_key"][i],
                    "study_uid": batch["study_uid"][i],
                    "series_key": (
                        "|".join(k for k in batch["series_keys"][i] if k)
                        if multiview
                        else batch["series_key"][i]
                    ),
                    "view": "|".join(cfg.data.views or ()) if multiview else batch["view"][i],
                    "clip_start": int(batch["clip_start"][i]) if "clip_start" in batch else 0,
                }
                for key in ("value", "risk", "uncertainty"):
                    if key in first:
                        row[f"{key}_head" if key == "uncertainty" else key] = float(first[key][i])
                rows.append(row)
            bar.advance(task)
    clips = pd.DataFrame(rows)
    scores = np.concatenate(member_scores)
    arrays = {"member_scores": scores}
    for key, parts in extra.items():
        arrays[key] = np.concatenate(parts)
    return clips, arrays


def aggregate_studies(
    clips: pd.DataFrame,
    member_scores: np.ndarray,
    *,
    holdout: Sequence[frozenset[str] | None] = (),
    mc_scores: np.ndarray | None = None,
    prob: np.ndarray | None = None,
) -> pd.DataFrame:
    """Mean over the clips (and members) of each study, with the spread measures.

    Args:
        clips: Per-clip rows (``study_uid``, ``patient_key`` ...).
        member_scores: ``[N_clips, M]`` score of every member.
        holdout: Per member, the patients it must be the only judge of (CV folds), or None.
        mc_scores: ``[N_clips, S]`` MC-dropout scores (optional).
        prob: ``[N_clips, K]`` class probabilities (optional).

    Returns:
        One row per study: ``score``, ``n_clips``, ``clip_sd``, ``member_sd`` (M > 1),
        ``mc_sd`` (MC dropout), ``prob_<k>``.
    """
    m = member_scores.shape[1]
    weights = np.ones((len(clips), m))
    if any(h is not None for h in holdout):
        patients = clips["patient_key"].astype(str).to_numpy()
        for k, h in enumerate(holdout):
            if h is None:
                continue
            mine = np.isin(patients, list(h))
            weights[mine] = 0.0
            weights[mine, k] = 1.0
    score = (member_scores * weights).sum(1) / weights.sum(1)
    frame = clips[["patient_key", "study_uid"]].copy()
    frame["score"] = score
    for k in range(m):
        frame[f"_m{k}"] = np.where(weights[:, k] > 0, member_scores[:, k], np.nan)
    if mc_scores is not None:
        frame["_mc"] = list(mc_scores)
    if prob is not None:
        for k in range(prob.shape[1]):
            frame[f"prob_{k}"] = prob[:, k]
    g = frame.groupby("study_uid", sort=True)
    out = g.agg(
        patient_key=("patient_key", "first"), score=("score", "mean"), n_clips=("score", "size")
    )
    out["clip_sd"] = g["score"].std(ddof=0)
    if m > 1:
        per_member = g[[f"_m{k}" for k in range(m)]].mean()
        used = per_member.notna().sum(axis=1)
        out["member_sd"] = np.where(used > 1, per_member.std(axis=1, ddof=0), np.nan)
    if mc_scores is not None:
        out["mc_sd"] = g["_mc"].apply(lambda s: float(np.stack(list(s)).mean(0).std()))
    if prob is not None:
        for k in range(prob.shape[1]):
            out[f"prob_{k}"] = g[f"prob_{k}"].mean()
    return out.reset_index()


def _labels(store: Store, clips: pd.DataFrame, bundle: RunBundle) -> pd.DataFrame:
    """Label/demographic columns per study (target binarised as in training)."""
    m = store.manifest
    first = clips.drop_duplicates("study_uid")
    keys = first["series_key"].str.split("|").str[0]
    rows = m.set_index("series_key").loc[keys].reset_index()
    per = (
        labels_per_series(rows, store.labels)
        if store.has_labels
        else pd.DataFrame(index=rows.index)
    )
    per = per.reset_index(drop=True)
    out = pd.DataFrame(
        {"study_uid": first["study_uid"].to_numpy(), "split": rows["split"].to_numpy()}
    )
    d = bundle.config.data
    if d.target is not None and d.target in per:
        y = pd.to_numeric(per[d.target], errors="coerce").to_numpy(dtype=float)
        if d.threshold is not None:
            hit = y < d.threshold if d.positive_below else y >= d.threshold
            y = np.where(np.isnan(y), np.nan, hit.astype(float))
        out["target"] = y
    for col in per.columns:
        name = col if col not in ("target", "score", "split", "study_uid") else f"label_{col}"
        if name not in out:
            out[name] = per[col].to_numpy()
    return out


def _refused(
    store: Store, clips: pd.DataFrame, views: Sequence[str] | None, splits: Sequence[str] | None
) -> pd.DataFrame:
    """Series of the store the model did not score, each with the reason (never dropped
    silently): a view the model was not trained on (e.g. a CT volume with no echo view)."""
    m = store.manifest
    if splits and "split" in m:
        m = m[m["split"].isin(list(splits))]
    scored = {k for keys in clips["series_key"].astype(str) for k in keys.split("|")}
    left = m[~m["series_key"].astype(str).isin(scored)]
    wanted = list(views or ())

    def reason(view: Any) -> str:
        if wanted and (view is None or pd.isna(view) or str(view) not in wanted):
            shown = "no view label" if view is None or pd.isna(view) else f"view {view}"
            return f"{shown}: the model takes only {', '.join(wanted)}"
        return "not scored (no clip could be cut from this series)"

    cols = [c for c in ("series_key", "study_uid", "patient_key", "modality", "view") if c in m]
    out = left[cols].copy().reset_index(drop=True)
    out["reason"] = [reason(v) for v in left["view"]] if "view" in left else "not scored"
    return out


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def _out_paths(run_dir: Path, out: str | os.PathLike[str] | None) -> dict[str, Path]:
    if out is None:
        base, stem = run_dir, "predictions"
    else:
        p = Path(out)
        base, stem = (p.parent, p.stem) if p.suffix == ".parquet" else (p, "predictions")
    return {
        "studies": base / f"{stem}.parquet",
        "clips": base / f"{stem}_clips.parquet",
        "curves": base
        / (
            "survival_curves.parquet"
            if stem == "predictions"
            else f"{stem}_survival_curves.parquet"
        ),
        "info": base / f"{stem}.json",
        "refused": base / f"{stem}_refused.parquet",
    }


def predict(
    run_dir: str | os.PathLike[str],
    store: str | os.PathLike[str] | Store | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    splits: Sequence[str] | None = None,
    batch_size: int | None = None,
    mc_dropout: int | None = None,
    coverage: float | None = None,
    show_progress: bool = True,
) -> PredictResult:
    """Predict every series of ``store`` (default: the training store) with a trained run.

    Args:
        run_dir: A ``hidim train`` run directory.
        store: The store to predict (another hospital's store works if it has the views).
        out: Output folder, or the per-study ``.parquet`` path (siblings get the other
            tables); default the run directory.
        splits: Limit to these splits (default: all).
        batch_size: Clips per forward pass (default ``data.batch_size``).
        mc_dropout: MC-dropout passes (default ``uncertainty.mc_dropout_samples``).
        coverage: Target share answered (default ``uncertainty.coverage``).
        show_progress: Show a progress bar.
    """
    bundle = load_run(run_dir)
    cfg = bundle.config
    st = store if isinstance(store, Store) else Store(store or bundle.store_path)
    mc = cfg.uncertainty.mc_dropout_samples if mc_dropout is None else int(mc_dropout)
    cov = cfg.uncertainty.coverage if coverage is None else float(coverage)
    if not 0 < cov <= 1:
        raise TrainingError(f"coverage must be in (0, 1], got {cov}")
    clips, arrays = _clip_table(
        bundle,
        st,
        splits=splits,
        batch_size=batch_size or cfg.data.batch_size,
        mc_samples=mc,
        show_progress=show_progress,
    )
    kind = head_kind(bundle.model.head)
    holdout = [m.holdout_patients for m in bundle.members]
    studies = aggregate_studies(
        clips,
        arrays["member_scores"],
        holdout=holdout,
        mc_scores=arrays.get("mc"),
        prob=arrays.get("prob"),
    )
    clips = clips.assign(score=arrays["member_scores"].mean(1))
    if "ood_distance" in arrays:
        clips["ood_distance"] = arrays["ood_distance"]
    if "prob" in arrays:
        for k in range(arrays["prob"].shape[1]):
            clips[f"prob_{k}"] = arrays["prob"][:, k]
    g = clips.groupby("study_uid", sort=True)
    for col in ("value", "risk", "uncertainty_head", "ood_distance"):
        if col in clips:
            studies[col] = g[col].mean().to_numpy()
    first_clip = g.first()
    studies["series_key"] = first_clip["series_key"].to_numpy()
    studies["view"] = first_clip["view"].to_numpy()
    if kind == "regression":
        studies["value"] = studies["score"]
    source = "clip_sd"
    unc = studies["clip_sd"].to_numpy()
    ensemble = "member_sd" in studies and bool(studies["member_sd"].notna().any())
    if ensemble:
        studies["uncertainty_spread"] = studies["member_sd"].to_numpy()
    if ensemble and "uncertainty_head" in studies and _epistemic_head(bundle.model.head):
        # members' own uncertainty, averaged: the spread alone misses inputs every member
        # is confidently wrong about (far-OOD), the heads' uncertainty does not
        source, unc = "ensemble_head_mean", studies["uncertainty_head"].to_numpy()
    elif ensemble:
        source, unc = "ensemble_sd", studies["member_sd"].to_numpy()
    elif "mc_sd" in studies:
        source, unc = "mc_dropout_sd", studies["mc_sd"].to_numpy()
    elif "uncertainty_head" in studies:
        source, unc = "head", studies["uncertainty_head"].to_numpy()
    studies["uncertainty"] = unc
    studies["uncertainty_source"] = source
    labels = _labels(st, clips, bundle)
    studies = studies.merge(labels, on="study_uid", how="left")
    clips = clips.merge(labels[["study_uid", "split"]], on="study_uid", how="left")
    rule = abstain_rule(bundle, st, studies, cov, source)
    threshold, ood_threshold = rule["threshold"], rule["ood_threshold"]
    threshold_from = rule["from"]
    studies = apply_rule(studies, threshold, ood_threshold)
    front = [c for c in (*_KEYS, "target", "time", "event") if c in studies]
    studies = studies[front + [c for c in studies.columns if c not in front]]
    curves = None
    if "survival" in arrays:
        times = getattr(bundle.model.head, "survival_times", None)
        if not isinstance(times, Tensor):
            raise TrainingError("the head predicts survival curves but has no survival_times")
        grid = np.asarray(times.detach().cpu().numpy(), dtype=float)
        surv = pd.DataFrame(arrays["survival"], columns=range(len(grid)))
        surv["study_uid"] = clips["study_uid"].to_numpy()
        mean = surv.groupby("study_uid", sort=True).mean()
        curves = mean.melt(ignore_index=False, var_name="k", value_name="survival").reset_index()
        curves["time"] = grid[curves["k"].to_numpy(dtype=int)]
        curves = curves[["study_uid", "time", "survival"]].sort_values(["study_uid", "time"])
    paths = _out_paths(Path(run_dir), out)
    refused = _refused(st, clips, cfg.data.views, splits)
    _write_parquet(studies, paths["studies"])
    _write_parquet(clips, paths["clips"])
    _write_parquet(refused, paths["refused"])
    if curves is not None:
        _write_parquet(curves, paths["curves"])
    info = {
        "command": "predict",
        "run_dir": str(Path(run_dir).resolve()),
        "store": str(st.path.resolve()),
        "n_studies": int(len(studies)),
        "n_clips": int(len(clips)),
        "n_refused_series": int(len(refused)),
        "members": len(bundle.members),
        "uncertainty_source": source,
        "mc_dropout_samples": mc,
        "coverage": cov,
        "abstain_threshold": threshold,
        "ood_threshold": ood_threshold,
        "ood_quantile": rule.get("ood_quantile"),
        "abstain_rule": (
            "abstain if uncertainty > abstain_threshold or ood_distance > ood_threshold; "
            "both fitted on val studies (hidim.evaluate.uncertainty.fit_abstention_threshold)"
        ),
        "abstain_threshold_from": threshold_from,
        "versions": package_versions(),
    }
    atomic_write_text(paths["info"], json.dumps(info, indent=2))
    return PredictResult(
        studies=studies,
        clips=clips,
        curves=curves,
        paths={k: v for k, v in paths.items() if k != "curves" or curves is not None},
        abstain_threshold=threshold,
        uncertainty_source=source,
        task=kind,
        refused=refused,
    )


def predictions_metrics(
    studies: pd.DataFrame, task: str, *, seed: int = 0, n_boot: int = 1000
) -> dict[str, Any]:
    """Val and test metrics (with bootstrap CIs) of per-study predictions.

    Args:
        studies: ``predictions.parquet`` rows (``split``, ``score``, ``target`` or
            ``time``/``event``, ``abstain``).
        task: The head's task (``binary``, ``regression``, ``survival`` ...).
        seed: Bootstrap seed.
        n_boot: Bootstrap replicates.

    Returns:
        ``{"task", "level", "val": {...}, "test": {...}}``; each split has ``metrics``,
        ``ci`` and, when some studies abstain, the metrics on the ``answered`` ones.
    """
    kind = task_kind(task)
    out: dict[str, Any] = {"task": kind, "level": "study"}
    prob_cols = sorted(c for c in studies.columns if c.startswith("prob_"))
    for split in ("val", "test"):
        part = studies[studies["split"] == split]
        if part.empty:
            out[split] = None
            continue
        kwargs: dict[str, Any] = {"score": part["score"].to_numpy(float)}
        if kind == "survival":
            if "time" not in part:
                out[split] = None
                continue
            kwargs["time"] = part["time"].to_numpy(float)
            kwargs["event"] = part["event"].fillna(False).to_numpy(bool)
        else:
            if "target" not in part:
                out[split] = None
                continue
            kwargs["target"] = part["target"].to_numpy(float)
            if kind == "multiclass":
                kwargs["prob"] = part[prob_cols].to_numpy(float)
        out[split] = metrics_with_ci(kind, seed=seed, n_boot=n_boot, **kwargs)
        if "abstain" in part and part["abstain"].any() and not part["abstain"].all():
            kept = part[~part["abstain"].astype(bool)]
            sub = {k: (v[~part["abstain"].to_numpy(bool)]) for k, v in kwargs.items()}
            out[split]["answered"] = {
                "coverage": float(len(kept) / len(part)),
                "metrics": compute_metrics(kind, **sub),
            }
    return out
