"""Classification and regression metrics with bootstrap confidence intervals.

Thin, validated wrappers around scikit-learn's reference implementations (AUROC, average
precision) plus operating-point metrics; :func:`binary_metrics` and
:func:`regression_metrics` return every number with its percentile bootstrap CI
(:func:`hidim.evaluate.bootstrap.bootstrap_ci`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hidim.errors import EvaluationError
from hidim.evaluate._validation import as_1d_float, as_binary_labels, check_same_length
from hidim.evaluate.bootstrap import BootstrapResult, bootstrap_ci

__all__ = [
    "auroc",
    "rank_auroc",
    "auprc",
    "operating_point",
    "accuracy",
    "sensitivity",
    "specificity",
    "mae",
    "rmse",
    "r2",
    "binary_metrics",
    "regression_metrics",
]


def _binary(labels: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    y = as_binary_labels(labels)
    s = as_1d_float(score, "score")
    check_same_length(labels=y, score=s)
    return y, s


def _both_classes(y: np.ndarray, what: str) -> None:
    if y.all() or not y.any():
        raise EvaluationError(f"{what} needs both classes in the labels; received only {int(y[0])}")


def auroc(labels: Any, score: Any) -> float:
    """Area under the ROC curve (``sklearn.metrics.roc_auc_score``); ties count 0.5."""
    from sklearn.metrics import roc_auc_score

    y, s = _binary(labels, score)
    _both_classes(y, "AUROC")
    return float(roc_auc_score(y, s))


def rank_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """AUROC by the Mann-Whitney U with midranks (= :func:`auroc`, ties count 0.5), unvalidated.

    For hot loops (bootstrap replicates, per-subgroup metrics) that already hold clean
    arrays: ``y`` ``[n]`` bool or 0/1, ``s`` ``[n]`` float. NaN when only one class is present.
    """
    from scipy.stats import rankdata

    pos = np.asarray(y) == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(labels: Any, score: Any) -> float:
    """Area under the precision-recall curve as average precision (sklearn)."""
    from sklearn.metrics import average_precision_score

    y, s = _binary(labels, score)
    _both_classes(y, "AUPRC")
    return float(average_precision_score(y, s))


def operating_point(labels: Any, score: Any, threshold: float) -> dict[str, float]:
    """Confusion-matrix metrics when predicting positive for ``score >= threshold``."""
    y, s = _binary(labels, score)
    pred = s >= threshold
    tp = float((pred & y).sum())
    tn = float((~pred & ~y).sum())
    fp = float((pred & ~y).sum())
    fn = float((~pred & y).sum())
    nan = float("nan")
    return {
        "accuracy": (tp + tn) / y.shape[0],
        "sensitivity": tp / (tp + fn) if tp + fn else nan,
        "specificity": tn / (tn + fp) if tn + fp else nan,
        "ppv": tp / (tp + fp) if tp + fp else nan,
        "npv": tn / (tn + fn) if tn + fn else nan,
    }


def accuracy(labels: Any, score: Any, *, threshold: float = 0.5) -> float:
    """Fraction correct at ``score >= threshold``."""
    return operating_point(labels, score, threshold)["accuracy"]


def sensitivity(labels: Any, score: Any, *, threshold: float = 0.5) -> float:
    """True-positive rate at ``score >= threshold``."""
    y, _ = _binary(labels, score)
    if not y.any():
        raise EvaluationError("sensitivity needs at least one positive label")
    return operating_point(labels, score, threshold)["sensitivity"]


def specificity(labels: Any, score: Any, *, threshold: float = 0.5) -> float:
    """True-negative rate at ``score >= threshold``."""
    y, _ = _binary(labels, score)
    if y.all():
        raise EvaluationError("specificity needs at least one negative label")
    return operating_point(labels, score, threshold)["specificity"]


def _regression(target: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    y = as_1d_float(target, "target")
    p = as_1d_float(pred, "prediction")
    check_same_length(target=y, prediction=p)
    return y, p


def mae(target: Any, pred: Any) -> float:
    """Mean absolute error."""
    y, p = _regression(target, pred)
    return float(np.mean(np.abs(y - p)))


def rmse(target: Any, pred: Any) -> float:
    """Root mean squared error."""
    y, p = _regression(target, pred)
    return float(np.sqrt(np.mean((y - p) ** 2)))


def r2(target: Any, pred: Any) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``."""
    y, p = _regression(target, pred)
    ss_tot = np.sum((y - y.mean()) ** 2)
    if ss_tot == 0:
        raise EvaluationError("R^2 is undefined for a constant target")
    return float(1.0 - np.sum((y - p) ** 2) / ss_tot)


def binary_metrics(
    labels: Any,
    score: Any,
    *,
    threshold: float = 0.5,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, BootstrapResult]:
    """AUROC, AUPRC, accuracy, sensitivity, specificity, each with a stratified bootstrap CI."""
    y, s = _binary(labels, score)
    fns = {
        "auroc": auroc,
        "auprc": auprc,
        "accuracy": lambda a, b: accuracy(a, b, threshold=threshold),
        "sensitivity": lambda a, b: sensitivity(a, b, threshold=threshold),
        "specificity": lambda a, b: specificity(a, b, threshold=threshold),
    }
    return {
        k: bootstrap_ci(f, y, s, n_boot=n_boot, alpha=alpha, seed=seed, stratify=y)
        for k, f in fns.items()
    }


def regression_metrics(
    target: Any, pred: Any, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> dict[str, BootstrapResult]:
    """MAE, RMSE and R^2, each with a bootstrap CI."""
    y, p = _regression(target, pred)
    return {
        k: bootstrap_ci(f, y, p, n_boot=n_boot, alpha=alpha, seed=seed)
        for k, f in {"mae": mae, "rmse": rmse, "r2": r2}.items()
    }
