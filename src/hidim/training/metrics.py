"""Validation and test metrics per task, with percentile-bootstrap confidence intervals.

* regression: ``r2``, ``mae``, ``rmse``, ``pearson_r``;
* binary: ``auroc``, ``auprc`` (average precision), ``brier``, ``accuracy`` (at 0.5);
* multiclass: ``accuracy``, ``auroc`` (macro one-vs-rest), ``log_loss``;
* survival: ``cindex`` (Harrell, :func:`hidim.evaluate.concordance_index`).

The binary and regression metrics are vectorised numpy (equal to scikit-learn's, which the
tests use as the oracle) because the bootstrap calls them thousands of times and
scikit-learn's input validation costs ~1 ms per call. Metrics undefined on the data (one class only, no events) come back as NaN rather than
raising, so a tiny validation split never kills a training run; the confidence intervals
use :func:`hidim.evaluate.bootstrap.bootstrap_ci`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sklearn import metrics as skm

from hidim.errors import EvaluationError, HidimError, TrainingError

__all__ = [
    "TASK_KINDS",
    "PRIMARY_METRICS",
    "task_kind",
    "head_kind",
    "compute_metrics",
    "metrics_with_ci",
    "r2",
    "auroc",
    "auprc",
]

TASK_KINDS = ("binary", "multiclass", "regression", "survival")

#: Metrics reported with a bootstrap CI, per task kind.
PRIMARY_METRICS: dict[str, tuple[str, ...]] = {
    "regression": ("r2", "mae", "rmse"),
    "binary": ("auroc", "auprc", "brier"),
    "multiclass": ("accuracy", "auroc"),
    "survival": ("cindex",),
}


def task_kind(task: str, *, n_classes: int | None = None) -> str:
    """Map a head's ``task`` attribute onto one of :data:`TASK_KINDS`.

    ``"classification"`` (e.g. the evidential head) becomes ``binary`` for two classes and
    ``multiclass`` otherwise.
    """
    if task in TASK_KINDS:
        return task
    if task == "classification":
        return "binary" if n_classes in (None, 2) else "multiclass"
    for kind in TASK_KINDS:
        if kind in task:
            return kind
    raise TrainingError(f"no metrics for head task {task!r}; expected one of {TASK_KINDS}")


def r2(y: np.ndarray, s: np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (NaN if ``y`` is constant)."""
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - s) ** 2)) / ss_tot if ss_tot > 0 else math.nan


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve (:func:`hidim.evaluate.classification.rank_auroc`; NaN if
    one class)."""
    from hidim.evaluate.classification import rank_auroc

    return rank_auroc(y, s)


def auprc(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision, ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds."""
    pos = y == 1
    n_pos = int(pos.sum())
    if n_pos == 0 or n_pos == y.size:
        return math.nan
    order = np.argsort(-s, kind="mergesort")
    s_sorted, hit = s[order], pos[order].astype(float)
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]  # end of each tie block
    tp = np.cumsum(hit)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def head_kind(head: Any) -> str:
    """:func:`task_kind` of a head instance (reads ``task`` and ``n_classes``)."""
    return task_kind(str(head.task), n_classes=getattr(head, "n_classes", None))


def _regression(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    if y.size < 2:
        return {"r2": math.nan, "mae": math.nan, "rmse": math.nan, "pearson_r": math.nan}
    r = float(np.corrcoef(y, s)[0, 1]) if np.std(y) > 0 and np.std(s) > 0 else math.nan
    return {
        "r2": r2(y, s),
        "mae": float(np.mean(np.abs(y - s))),
        "rmse": float(np.sqrt(np.mean((y - s) ** 2))),
        "pearson_r": r,
    }


def _binary(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    return {
        "auroc": auroc(y, s),
        "auprc": auprc(y, s),
        "brier": float(np.mean((s - y) ** 2)) if y.size else math.nan,
        "accuracy": float(np.mean((s >= 0.5) == (y == 1))) if y.size else math.nan,
    }


def _multiclass(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    k = prob.shape[1]
    yi = y.astype(int)
    out = {"accuracy": float(np.mean(prob.argmax(1) == yi)) if y.size else math.nan}
    present = np.unique(yi)
    if present.size == k:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["auroc"] = float(skm.roc_auc_score(yi, prob, multi_class="ovr", average="macro"))
    else:
        out["auroc"] = math.nan
    out["log_loss"] = float(skm.log_loss(yi, prob, labels=list(range(k)))) if y.size else math.nan
    return out


def _survival(time: np.ndarray, event: np.ndarray, score: np.ndarray) -> dict[str, float]:
    from hidim.evaluate import concordance_index

    try:
        return {"cindex": float(concordance_index(time, event.astype(bool), score))}
    except HidimError:
        return {"cindex": math.nan}


def compute_metrics(
    kind: str,
    *,
    score: np.ndarray,
    target: np.ndarray | None = None,
    prob: np.ndarray | None = None,
    time: np.ndarray | None = None,
    event: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics of a task kind (NaN where undefined on these data).

    Args:
        kind: ``binary``, ``multiclass``, ``regression`` or ``survival``.
        score: ``[N]`` the head's ``score``.
        target: ``[N]`` labels (classification/regression).
        prob: ``[N, K]`` class probabilities (multiclass).
        time, event: ``[N]`` survival outcome.
    """
    s = np.asarray(score, dtype=float).reshape(-1)
    if kind == "survival":
        if time is None or event is None:
            raise TrainingError("survival metrics need time and event")
        ok = np.isfinite(np.asarray(time, dtype=float)) & np.isfinite(s)
        return _survival(np.asarray(time, float)[ok], np.asarray(event)[ok], s[ok])
    if target is None:
        raise TrainingError(f"{kind} metrics need target values")
    y = np.asarray(target, dtype=float).reshape(-1)
    ok = np.isfinite(y) & np.isfinite(s)
    if kind == "regression":
        return _regression(y[ok], s[ok])
    if kind == "binary":
        return _binary(y[ok], s[ok])
    if kind == "multiclass":
        if prob is None:
            raise TrainingError("multiclass metrics need prob [N, K]")
        return _multiclass(y[ok], np.asarray(prob, dtype=float)[ok])
    raise TrainingError(f"unknown task kind {kind!r}; expected one of {TASK_KINDS}")


_FAST: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "r2": r2,
    "mae": lambda y, s: float(np.mean(np.abs(y - s))),
    "rmse": lambda y, s: float(np.sqrt(np.mean((y - s) ** 2))),
    "auroc": auroc,
    "auprc": auprc,
    "brier": lambda y, s: float(np.mean((s - y) ** 2)),
}


def _metric_fn(kind: str, name: str) -> Callable[..., float]:
    def fn(*arrays: np.ndarray) -> float:
        if kind == "survival":
            t, e, s = arrays
            value = compute_metrics(kind, score=s, time=t, event=e)[name]
        elif kind == "multiclass":
            y, s, p = arrays
            value = compute_metrics(kind, score=s, target=y, prob=p)[name]
        else:
            y, s = arrays
            value = _FAST[name](y, s)
        if not math.isfinite(value):
            raise EvaluationError(f"{name} undefined on this resample")
        return value

    return fn


def metrics_with_ci(
    kind: str,
    *,
    score: np.ndarray,
    target: np.ndarray | None = None,
    prob: np.ndarray | None = None,
    time: np.ndarray | None = None,
    event: np.ndarray | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric of :func:`compute_metrics`, plus 95 % bootstrap CIs for the primary ones.

    Returns:
        ``{"n": N, "metrics": {name: value}, "ci": {name: {estimate, low, high, ...}}}``;
        a CI is ``None`` when the metric is undefined (e.g. one class in the data).
    """
    from hidim.evaluate.bootstrap import bootstrap_ci

    point = compute_metrics(kind, score=score, target=target, prob=prob, time=time, event=event)
    s = np.asarray(score, float).reshape(-1)
    if kind == "survival":
        t = np.asarray(time, float)
        ok = np.isfinite(t) & np.isfinite(s)
        arrays: tuple[np.ndarray, ...] = (t[ok], np.asarray(event, bool)[ok], s[ok])
        strat: np.ndarray | None = arrays[1]
    else:
        y = np.asarray(target, float).reshape(-1)
        ok = np.isfinite(y) & np.isfinite(s)
        if kind == "multiclass":
            arrays = (y[ok], s[ok], np.asarray(prob, float)[ok])
        else:
            arrays = (y[ok], s[ok])
        strat = y[ok] if kind in ("binary", "multiclass") else None
    ci: dict[str, Mapping[str, Any] | None] = {}
    for name in PRIMARY_METRICS[kind]:
        if n_boot < 2 or not math.isfinite(point.get(name, math.nan)) or arrays[0].shape[0] < 3:
            ci[name] = None
            continue
        try:
            res = bootstrap_ci(
                _metric_fn(kind, name),
                *arrays,
                n_boot=n_boot,
                alpha=alpha,
                seed=seed,
                stratify=strat,
            )
            ci[name] = res.as_dict()
        except EvaluationError:
            ci[name] = None
    return {"n": int(arrays[0].shape[0]), "metrics": point, "ci": ci}
