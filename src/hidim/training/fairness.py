"""Differentiable fairness penalties added to the training loss, and the λ sweep.

``loss = task_loss + weight · gap``, where ``gap`` measures how differently the model
treats the groups of one attribute *inside the batch*:

* ``demographic_parity`` (classification): spread of the mean predicted probability across
  groups (soft selection rate).
* ``equalized_odds`` (classification): the same spread among true positives (soft TPR) plus
  among true negatives (soft FPR) — Hardt et al. 2016.
* ``calibration_gap``: spread of the mean calibration error per group — ``p - y`` for
  classification; for survival the mean martingale residual ``event - Ĥ0(t)·exp(risk)``
  (observed minus expected events per person, Breslow estimate within the batch).
* ``concordance_gap`` (survival): spread of a smooth (sigmoid) Harrell C-index computed on
  each group's comparable pairs, around the batch's overall smooth C-index.

"Spread" (``reduction``): ``mean_abs`` (default; mean |group − overall| over the groups
present), ``max_gap`` (largest − smallest group) or ``variance``.

Stability: group statistics are masked sums divided by ``clamp(count, min=1)``, so a group
absent from a batch (FairTorch's NaN failure), a missing code (``-1``), a batch with one
group, or a batch of one sample contributes exactly 0 — finite value, finite gradients.
Groups with fewer than ``min_group_size`` samples (pairs, for ``concordance_gap``) in the
batch are ignored.

The training module calls :func:`build_penalty` with the config's ``fairness`` section and
the penalty with the head outputs (merged with ``head.predict``) and the batch, whose
``group__<attribute>`` tensor holds long group codes (``-1`` = missing).
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from hidim.errors import HidimError, TrainingError

__all__ = [
    "PENALTY_KINDS",
    "REDUCTIONS",
    "group_means",
    "spread",
    "demographic_parity_gap",
    "equalized_odds_gap",
    "binary_calibration_gap",
    "survival_calibration_gap",
    "concordance_gap",
    "FairnessPenalty",
    "build_penalty",
    "DISPARITY_METRIC",
    "fairness_sweep",
]

PENALTY_KINDS = ("demographic_parity", "equalized_odds", "calibration_gap", "concordance_gap")
REDUCTIONS = ("mean_abs", "max_gap", "variance")
Outputs = Mapping[str, Tensor]
Batch = Mapping[str, Any]


# --- pure maths ------------------------------------------------------------------------


def group_means(
    values: Tensor, groups: Tensor, *, weights: Tensor | None = None, n_groups: int | None = None
) -> tuple[Tensor, Tensor]:
    """Per-group weighted means without NaNs.

    Args:
        values: ``[B]`` float.
        groups: ``[B]`` long codes, ``-1`` (or any negative) = missing.
        weights: ``[B]`` non-negative weights (e.g. a 0/1 cell mask); default 1.
        n_groups: Number of codes ``G`` (default ``max(groups) + 1``).

    Returns:
        ``(means [G], counts [G])``; an empty group has mean 0 and count 0.
    """
    g = groups.long().to(values.device)
    n = int(n_groups if n_groups is not None else (int(g.max()) + 1 if g.numel() else 0))
    n = max(n, 1)
    w = torch.ones_like(values) if weights is None else weights.to(values)
    onehot = (g[:, None] == torch.arange(n, device=g.device)[None, :]).to(values) * w[:, None]
    counts = onehot.sum(0)
    sums = (onehot * values[:, None]).sum(0)
    return sums / counts.clamp_min(1.0), counts


def spread(
    means: Tensor, present: Tensor, overall: Tensor, *, reduction: str = "mean_abs"
) -> Tensor:
    """How far the present groups' means are from each other (0 with fewer than 2 groups).

    Args:
        means: ``[G]`` group statistics.
        present: ``[G]`` bool, groups that count.
        overall: Scalar reference (the batch's pooled statistic).
        reduction: ``mean_abs``, ``max_gap`` or ``variance``.
    """
    p = present.to(means)
    k = p.sum()
    if float(k) < 2:
        return means.sum() * 0.0
    if reduction == "mean_abs":
        return ((means - overall).abs() * p).sum() / k
    if reduction == "variance":
        return ((means - overall) ** 2 * p).sum() / k
    if reduction == "max_gap":
        hi = torch.where(present, means, means.detach().min() - 1.0).max()
        lo = torch.where(present, means, means.detach().max() + 1.0).min()
        return hi - lo
    raise TrainingError(f"unknown reduction {reduction!r}; expected one of {list(REDUCTIONS)}")


def _gap(
    values: Tensor, groups: Tensor, weights: Tensor | None, min_group_size: int, reduction: str
) -> Tensor:
    valid = (groups >= 0).to(values)
    w = valid if weights is None else valid * weights.to(values)
    means, counts = group_means(values, groups, weights=w)
    overall = (values * w).sum() / w.sum().clamp_min(1.0)
    return spread(means, counts >= min_group_size, overall, reduction=reduction)


def demographic_parity_gap(
    prob: Tensor, groups: Tensor, *, min_group_size: int = 2, reduction: str = "mean_abs"
) -> Tensor:
    """Spread of the mean predicted probability across groups (``prob`` ``[B]``)."""
    return _gap(prob, groups, None, min_group_size, reduction)


def equalized_odds_gap(
    prob: Tensor,
    target: Tensor,
    groups: Tensor,
    *,
    min_group_size: int = 2,
    reduction: str = "mean_abs",
) -> Tensor:
    """Soft TPR spread (among ``target == 1``) plus soft FPR spread (among ``target == 0``)."""
    y = target.to(prob).reshape(-1)
    return _gap(prob, groups, y, min_group_size, reduction) + _gap(
        prob, groups, 1.0 - y, min_group_size, reduction
    )


def binary_calibration_gap(
    prob: Tensor,
    target: Tensor,
    groups: Tensor,
    *,
    min_group_size: int = 2,
    reduction: str = "mean_abs",
) -> Tensor:
    """Spread of the mean calibration error ``prob - target`` across groups."""
    return _gap(prob - target.to(prob).reshape(-1), groups, None, min_group_size, reduction)


def _martingale_residuals(risk: Tensor, time: Tensor, event: Tensor) -> Tensor:
    """``event - Ĥ0(t)·exp(risk)`` with Breslow's Ĥ0 from the batch (stable in ``risk``)."""
    r = risk - risk.detach().max()
    e = event.to(r)
    at_risk = (time[None, :] >= time[:, None]).to(r)  # [j, k]: k at risk at t_j
    denom = (at_risk * r.exp()[None, :]).sum(1).clamp_min(1e-12)  # [j]
    jumps = e / denom  # Breslow hazard increment at each event time (scaled by exp(-max))
    happened = (time[None, :] <= time[:, None]).to(r)  # [i, j]: t_j <= t_i
    cum = (happened * jumps[None, :]).sum(1)
    return e - cum * r.exp()


def survival_calibration_gap(
    risk: Tensor,
    time: Tensor,
    event: Tensor,
    groups: Tensor,
    *,
    min_group_size: int = 2,
    reduction: str = "mean_abs",
) -> Tensor:
    """Spread of the mean martingale residual (observed − expected events) across groups."""
    if not bool(event.bool().any()):
        return risk.sum() * 0.0
    resid = _martingale_residuals(risk.reshape(-1), time.reshape(-1).to(risk), event.reshape(-1))
    return _gap(resid, groups, None, min_group_size, reduction)


def concordance_gap(
    risk: Tensor,
    time: Tensor,
    event: Tensor,
    groups: Tensor,
    *,
    temperature: float = 0.1,
    min_group_size: int = 1,
    reduction: str = "mean_abs",
) -> Tensor:
    """Spread of the smooth within-group C-index around the batch's smooth C-index.

    A pair ``(i, j)`` is comparable when ``event_i`` and ``time_i < time_j``; it counts
    ``sigmoid((risk_i - risk_j) / temperature)``. ``min_group_size`` is in *pairs*.
    """
    if temperature <= 0:
        raise TrainingError(f"temperature must be > 0, got {temperature}")
    r, t = risk.reshape(-1), time.reshape(-1).to(risk)
    e = event.reshape(-1).bool()
    g = groups.reshape(-1).long().to(r.device)
    comparable = (e[:, None] & (t[:, None] < t[None, :])).to(r)
    concord = torch.sigmoid((r[:, None] - r[None, :]) / temperature)
    overall = (comparable * concord).sum() / comparable.sum().clamp_min(1.0)
    n = max(int(g.max()) + 1 if g.numel() else 1, 1)
    same = (g[:, None] == g[None, :]) & (g[:, None] >= 0)
    pairs = comparable * same.to(r)
    onehot = (g[:, None] == torch.arange(n, device=g.device)[None, :]).to(r)  # [B, G]
    n_pairs = (pairs.sum(1)[:, None] * onehot).sum(0)  # pairs anchored in each group
    sums = ((pairs * concord).sum(1)[:, None] * onehot).sum(0)
    means = sums / n_pairs.clamp_min(1.0)
    return spread(means, n_pairs >= max(1, min_group_size), overall, reduction=reduction)


# --- the training-facing penalty --------------------------------------------------------


def _binary_prob(outputs: Outputs, key: str | None) -> Tensor:
    if key is not None:
        if key not in outputs:
            raise TrainingError(
                f"fairness output key {key!r} not in head outputs {sorted(outputs)}"
            )
        x = outputs[key]
        return x[:, -1] if x.ndim == 2 else x.reshape(-1)
    if "logits" in outputs:
        z = outputs["logits"]
        if z.ndim == 1 or z.shape[-1] == 1:
            return torch.sigmoid(z.reshape(-1))
        if z.shape[-1] == 2:
            return torch.softmax(z, dim=-1)[:, 1]
    if "prob" in outputs:
        p = outputs["prob"]
        return p[:, -1] if p.ndim == 2 else p.reshape(-1)
    if "score" in outputs:
        return outputs["score"].reshape(-1)
    raise TrainingError(
        "the fairness penalty needs a binary probability: head outputs with 'logits', "
        f"'prob' or 'score'; got {sorted(outputs)}"
    )


def _risk(outputs: Outputs, key: str | None) -> Tensor:
    for k in (key,) if key is not None else ("risk", "score"):
        if k in outputs:
            return outputs[k].reshape(-1)
    raise TrainingError(
        f"the survival fairness penalty needs a 'risk' or 'score' output; got {sorted(outputs)}"
    )


def _batch_tensor(batch: Batch, key: str, like: Tensor, group: str) -> Tensor:
    if key not in batch:
        hint = (
            f"list {group!r} in data.group_columns"
            if key.startswith("group__")
            else "labels missing"
        )
        raise TrainingError(f"the fairness penalty needs batch[{key!r}]; {hint}")
    return torch.as_tensor(batch[key], device=like.device)


@dataclass(frozen=True)
class FairnessPenalty:
    """``penalty(outputs, batch) -> weight · gap`` (a scalar tensor). See :func:`build_penalty`."""

    kind: str
    group: str
    weight: float
    reduction: str = "mean_abs"
    min_group_size: int = 2
    temperature: float = 0.1
    output: str | None = None

    def gap(self, outputs: Outputs, batch: Batch) -> Tensor:
        """The unweighted disparity in this batch (for logging)."""
        key = f"group__{self.group}"
        survival_outputs = "risk" in outputs or "survival" in outputs
        if self.kind in ("demographic_parity", "equalized_odds") or (
            self.kind == "calibration_gap" and not survival_outputs
        ):
            prob = _binary_prob(outputs, self.output)
            groups = _batch_tensor(batch, key, prob, self.group).reshape(-1)
            size, red = self.min_group_size, self.reduction
            if self.kind == "demographic_parity":
                return demographic_parity_gap(prob, groups, min_group_size=size, reduction=red)
            target = _batch_tensor(batch, "target", prob, self.group).reshape(-1)
            if self.kind == "equalized_odds":
                return equalized_odds_gap(prob, target, groups, min_group_size=size, reduction=red)
            return binary_calibration_gap(prob, target, groups, min_group_size=size, reduction=red)
        risk = _risk(outputs, self.output)
        groups = _batch_tensor(batch, key, risk, self.group).reshape(-1)
        time = _batch_tensor(batch, "time", risk, self.group)
        event = _batch_tensor(batch, "event", risk, self.group)
        if self.kind == "concordance_gap":
            return concordance_gap(
                risk, time, event, groups, temperature=self.temperature,
                min_group_size=self.min_group_size, reduction=self.reduction,
            )  # fmt: skip
        return survival_calibration_gap(
            risk, time, event, groups, min_group_size=self.min_group_size, reduction=self.reduction
        )

    def __call__(self, outputs: Outputs, batch: Batch) -> Tensor:
        return self.weight * self.gap(outputs, batch)


def build_penalty(
    *, kind: str, group: str, weight: float, **kwargs: Any
) -> Callable[[Outputs, Batch], Tensor]:
    """Build the fairness penalty the training loop adds to the loss.

    Args:
        kind: One of :data:`PENALTY_KINDS`.
        group: The attribute (a ``data.group_columns`` entry); codes are read from
            ``batch[f"group__{group}"]``.
        weight: λ ≥ 0.
        **kwargs: ``reduction`` (:data:`REDUCTIONS`), ``min_group_size`` (samples per group,
            pairs for ``concordance_gap``; default 2, 1 for pairs), ``temperature``
            (``concordance_gap`` sigmoid scale in risk units, default 0.1), ``output`` (head
            output key to use instead of the default).

    Returns:
        ``penalty(outputs, batch) -> Tensor`` scalar (a :class:`FairnessPenalty`).

    Raises:
        TrainingError: Unknown kind, reduction or option; negative weight.
    """
    if kind not in PENALTY_KINDS:
        close = difflib.get_close_matches(kind, PENALTY_KINDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise TrainingError(
            f"unknown fairness penalty {kind!r}; expected one of {list(PENALTY_KINDS)}.{hint}"
        )
    if not group:
        raise TrainingError("fairness.group must name an attribute, e.g. 'ethnicity'")
    if weight < 0:
        raise TrainingError(f"fairness weight must be >= 0, got {weight}")
    allowed = {"reduction", "min_group_size", "temperature", "output"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TrainingError(f"unknown fairness options {unknown}; allowed: {sorted(allowed)}")
    reduction = kwargs.get("reduction", "mean_abs")
    if reduction not in REDUCTIONS:
        raise TrainingError(f"unknown reduction {reduction!r}; expected one of {list(REDUCTIONS)}")
    default_min = 1 if kind == "concordance_gap" else 2
    min_size = int(kwargs.get("min_group_size", default_min))
    if min_size < 1:
        raise TrainingError(f"min_group_size must be >= 1, got {min_size}")
    temperature = float(kwargs.get("temperature", 0.1))
    if temperature <= 0:
        raise TrainingError(f"temperature must be > 0, got {temperature}")
    return FairnessPenalty(
        kind=kind,
        group=group,
        weight=float(weight),
        reduction=reduction,
        min_group_size=min_size,
        temperature=temperature,
        output=kwargs.get("output"),
    )


# --- the λ sweep ---------------------------------------------------------------------------

#: Disparity metric of each penalty (the audit metric whose group spread it targets).
DISPARITY_METRIC = {
    "demographic_parity": "selection_rate",
    "equalized_odds": "tpr",
    "calibration_gap": "brier",
    "concordance_gap": "c_index",
}


def fairness_sweep(
    config: Any,
    lambdas: Sequence[float],
    out_dir: str | os.PathLike[str],
    *,
    kind: str | None = None,
    group: str | None = None,
    split: str = "test",
    disparity_metric: str | None = None,
    relabel: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    threshold: float | Callable[[pd.DataFrame], float] | None = None,
    n_boot: int = 500,
    seed: int = 0,
    resume: bool = True,
) -> dict[str, Any]:
    """Train once per penalty weight λ and trace performance against disparity.

    Args:
        config: The :class:`~hidim.training.config.ExperimentConfig`; its ``fairness``
            section (or ``kind``/``group``) names the penalty; ``weight`` is swept.
        lambdas: Weights to train with (0 = no penalty).
        out_dir: Folder; one run per λ in ``lambda_<λ>/``, plus ``sweep.json``,
            ``tradeoff.png`` and ``run.json``.
        kind: Penalty kind (default ``config.fairness.kind``).
        group: Attribute (default ``config.fairness.group``; must be a group column).
        split: Split the trade-off is measured on.
        disparity_metric: Audit metric whose largest group difference from the overall is
            the disparity (default :data:`DISPARITY_METRIC` of the kind).
        relabel: Optional ``predictions -> predictions`` applied before the audit (e.g. to
            score against true labels when the recorded ones are biased).
        threshold: Operating point of the rate metrics (TPR, FPR, selection rate): a number,
            or a function of each run's full predictions table (every split) returning one —
            e.g. the score giving 80 % sensitivity on the validation split. A penalty can
            compress a model's probabilities, so a fixed 0.5 may stop meaning the same
            thing across weights. ``None``: 0.5 for probabilities.
        n_boot: Bootstrap replicates of the audit.
        seed: Audit seed.
        resume: Keep a weight's finished run (``predictions.parquet`` and the same
            ``config.yaml``) instead of training it again.

    Returns:
        The ``sweep.json`` content: ``tradeoff`` points ``{weight, performance,
        performance_lower, performance_upper, disparity, run}`` and the metric names.
    """
    from hidim.evaluate.subgroup import subgroup_audit
    from hidim.provenance import atomic_write_text, write_run_json
    from hidim.training.config import FairnessConfig
    from hidim.training.metrics import task_kind
    from hidim.training.train import train

    base = config.fairness
    kind = kind or (base.kind if base is not None else None)
    group = group or (base.group if base is not None else None)
    if kind is None or group is None:
        raise TrainingError(
            "the sweep needs a penalty: set config.fairness or pass kind= and group="
        )
    build_penalty(kind=kind, group=group, weight=0.0, **(base.extra_kwargs() if base else {}))
    if not lambdas or any(w < 0 for w in lambdas):
        raise TrainingError(
            f"lambdas must be a non-empty list of weights >= 0, got {list(lambdas)}"
        )
    if group not in config.data.group_columns:
        raise TrainingError(f"group {group!r} must be listed in data.group_columns")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = base.extra_kwargs() if base is not None else {}
    points = []
    metric = disparity_metric or DISPARITY_METRIC[kind]
    perf_name = None
    for w in lambdas:
        fair = FairnessConfig(kind=kind, group=group, weight=float(w), **extra) if w > 0 else None
        run_dir = out / f"lambda_{w:g}"
        cfg_w = config.model_copy(update={"fairness": fair})
        if not (resume and _finished(run_dir, cfg_w)):
            train(cfg_w, run_dir, overwrite=True)
        preds = pd.read_parquet(run_dir / "predictions.parquet")
        thr = threshold(preds) if callable(threshold) else threshold
        preds = preds[preds["split"] == split] if "split" in preds.columns else preds
        if relabel is not None:
            preds = relabel(preds)
        task = _audit_task(config.task.head, task_kind)
        audit = subgroup_audit(
            preds, by=[group], task=task, n_boot=n_boot, seed=seed, threshold=thr
        )
        table = audit.table
        perf_name = "c_index" if task == "survival" else ("auroc" if task == "binary" else "mae")
        overall = table[(table["group"] == "overall") & (table["metric"] == perf_name)].iloc[0]
        groups = table[(table["group"] != "overall") & (table["metric"] == metric)]
        values = groups["estimate"].dropna().astype(float)
        disparity = float(values.max() - values.min()) if len(values) > 1 else float("nan")
        points.append(
            {
                "weight": float(w),
                "performance": _f(overall["estimate"]),
                "performance_lower": _f(overall["lower"]),
                "performance_upper": _f(overall["upper"]),
                "disparity": _f(disparity),
                "threshold": _f(thr) if thr is not None else None,
                "by_group": {
                    str(g): _f(v) for g, v in zip(groups["group"], groups["estimate"], strict=True)
                },
                "run": run_dir.name,
            }
        )
    result = {
        "schema": "hidim.fairness_sweep/1",
        "kind": kind,
        "group": group,
        "split": split,
        "performance_metric": perf_name,
        "disparity_metric": f"{metric} range across {group} groups",
        "tradeoff": points,
    }
    _plot_tradeoff(result, out / "tradeoff.png")
    atomic_write_text(out / "sweep.json", json.dumps(result, indent=2, allow_nan=False))
    write_run_json(out, command="fairness-sweep", config={"lambdas": list(lambdas), "kind": kind,
                   "group": group, "split": split, "metric": metric}, seed=seed)  # fmt: skip
    return result


def _finished(run_dir: Path, config: Any) -> bool:
    """Whether ``run_dir`` holds predictions of a finished run trained with ``config``."""
    from hidim.training.config import dump_config, load_config

    if not (run_dir / "predictions.parquet").is_file() or not (run_dir / "run.json").is_file():
        return False
    store = Path(config.data.store).resolve()
    wanted = config.model_copy(update={"data": config.data.model_copy(update={"store": store})})
    try:
        return dump_config(load_config(run_dir / "config.yaml")) == dump_config(wanted)
    except HidimError:
        return False


def _audit_task(head: str, task_kind: Callable[[str], str]) -> str:
    if head in ("cox", "deephit", "discrete_hazard") or "surv" in head:
        return "survival"
    kind = task_kind(head) if not head.startswith("evidential") else head
    if kind == "binary" or head.startswith("evidential_class"):
        return "binary"
    if kind == "regression" or head.startswith("evidential_reg"):
        return "regression"
    raise TrainingError(f"the fairness sweep audits binary/survival/regression heads, not {head!r}")


def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _plot_tradeoff(result: Mapping[str, Any], path: Path) -> None:
    import io

    from matplotlib.figure import Figure

    from hidim.provenance import atomic_write_bytes

    pts = [
        p for p in result["tradeoff"] if p["performance"] is not None and p["disparity"] is not None
    ]
    fig = Figure(figsize=(4.6, 3.4))
    ax = fig.subplots()
    if pts:
        ax.plot([p["disparity"] for p in pts], [p["performance"] for p in pts], "-o", color="#333")
        for p in pts:
            if p["performance_lower"] is not None and p["performance_upper"] is not None:
                ax.plot([p["disparity"]] * 2, [p["performance_lower"], p["performance_upper"]],
                        color="#999", lw=1)  # fmt: skip
            ax.annotate(f"λ={p['weight']:g}", (p["disparity"], p["performance"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")  # fmt: skip
    ax.set_xlabel(f"disparity: {result['disparity_metric']}")
    ax.set_ylabel(f"overall {result['performance_metric']}")
    ax.set_title(f"{result['kind']} penalty on {result['group']}", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
