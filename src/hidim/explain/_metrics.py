"""Task performance metrics and the paired bootstrap used by the occlusion tests.

The primary metric per task: AUROC for binary targets, Harrell's C-index for survival, MAE
for regression. Binary tasks whose scores are probabilities also get the Brier score: AUROC
only sees the *ranking*, so a model whose positive scores collapse from 0.6 to 0.1 when a
marker is masked — still above the negatives — loses nothing in AUROC but a lot in Brier
(and in sensitivity at its operating point). ``drop`` is always signed so that a positive
value means *worse* performance after occlusion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from hidim.errors import ExplainError

__all__ = [
    "TASKS",
    "TaskMetric",
    "task_metric",
    "task_metrics",
    "DropEstimate",
    "paired_bootstrap_drop",
]

TASKS = ("binary", "survival", "regression")
Labels = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class TaskMetric:
    """A performance metric of one task.

    Attributes:
        name: ``auroc``, ``c_index`` or ``mae``.
        higher_is_better: Direction of the metric.
        label_keys: Label arrays it needs (``target`` or ``time``/``event``).
        fn: ``fn(labels, scores) -> float``; raises ``ValueError``/``EvaluationError`` when
            undefined (e.g. a single class).
    """

    name: str
    higher_is_better: bool
    label_keys: tuple[str, ...]
    fn: Callable[[Labels, np.ndarray], float]

    def drop(self, original: float, occluded: float) -> float:
        """Signed loss of performance (positive = occlusion made the model worse)."""
        return original - occluded if self.higher_is_better else occluded - original


def _auroc(labels: Labels, scores: np.ndarray) -> float:
    from hidim.training.metrics import auroc  # vectorised (the bootstrap calls it often)

    value = auroc(np.asarray(labels["target"], float), scores)
    if not np.isfinite(value):
        raise ValueError("AUROC needs both classes")
    return float(value)


def _cindex(labels: Labels, scores: np.ndarray) -> float:
    from hidim.evaluate.concordance import concordance_index

    return float(concordance_index(labels["time"], labels["event"], scores))


def _mae(labels: Labels, scores: np.ndarray) -> float:
    from hidim.evaluate.classification import mae

    return mae(np.asarray(labels["target"], float), scores)


def _brier(labels: Labels, scores: np.ndarray) -> float:
    y = np.asarray(labels["target"], float)
    return float(np.mean((scores - y) ** 2))


def task_metrics(task: str, scores: np.ndarray | None = None) -> list[TaskMetric]:
    """The metrics an occlusion test reports for ``task``: the primary one first, plus the
    Brier score for binary tasks when ``scores`` are probabilities (all in [0, 1])."""
    out = [task_metric(task)]
    if task == "binary" and scores is not None and np.all((scores >= 0) & (scores <= 1)):
        out.append(TaskMetric("brier", False, ("target",), _brier))
    return out


def task_metric(task: str) -> TaskMetric:
    """The performance metric of ``task`` (``binary``, ``survival`` or ``regression``)."""
    if task == "binary":
        return TaskMetric("auroc", True, ("target",), _auroc)
    if task == "survival":
        return TaskMetric("c_index", True, ("time", "event"), _cindex)
    if task == "regression":
        return TaskMetric("mae", False, ("target",), _mae)
    raise ExplainError(f"unknown task {task!r}; expected one of {list(TASKS)}")


@dataclass(frozen=True)
class DropEstimate:
    """Paired-bootstrap estimate of a performance drop.

    Attributes:
        original: Metric on the unmodified inputs.
        occluded: Metric on the occluded inputs.
        drop: Signed loss (see :meth:`TaskMetric.drop`).
        lower: Lower bound of the ``1 - alpha`` percentile interval of the drop.
        upper: Upper bound.
        p_value: Two-sided bootstrap p-value for "drop = 0" (``2·min(P*(d ≤ 0), P*(d ≥ 0))``,
            floored at ``1 / (n_valid + 1)``).
        n_valid: Bootstrap replicates where the metric was defined.
    """

    original: float | None
    occluded: float | None
    drop: float | None
    lower: float | None
    upper: float | None
    p_value: float | None
    n_valid: int


def _safe(metric: TaskMetric, labels: Labels, scores: np.ndarray) -> float | None:
    try:
        value = metric.fn(labels, scores)
    except (ValueError, ZeroDivisionError):  # EvaluationError is a ValueError
        return None
    return value if np.isfinite(value) else None


def paired_bootstrap_drop(
    metric: TaskMetric,
    labels: Labels,
    original: np.ndarray,
    occluded: np.ndarray,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> DropEstimate:
    """Performance drop with a paired bootstrap (the same resampled cases for both arms).

    Resampling is stratified by the binary target or the event indicator (so every
    replicate keeps both classes / its events), through
    :func:`hidim.evaluate.bootstrap.bootstrap_ci`.

    Args:
        metric: The task metric.
        labels: ``{key: [n]}`` label arrays (``metric.label_keys``).
        original: ``[n]`` scores on the unmodified inputs.
        occluded: ``[n]`` scores on the occluded inputs.
        n_boot: Bootstrap replicates.
        alpha: 1 - confidence level of the interval.
        seed: Seed of the resampling.
    """
    from hidim.evaluate.bootstrap import bootstrap_ci

    if n_boot < 2:
        raise ExplainError(f"n_boot must be >= 2, got {n_boot}")
    if not 0 < alpha < 1:
        raise ExplainError(f"alpha must be in (0, 1), got {alpha}")
    s0, s1 = np.asarray(original, float), np.asarray(occluded, float)
    m0, m1 = _safe(metric, labels, s0), _safe(metric, labels, s1)
    if m0 is None or m1 is None:
        return DropEstimate(m0, m1, None, None, None, None, 0)
    keys = list(metric.label_keys)

    def drop(*arrays: np.ndarray) -> float:
        lab = dict(zip(keys, arrays[:-2], strict=True))
        return metric.drop(metric.fn(lab, arrays[-2]), metric.fn(lab, arrays[-1]))

    strata_key = "target" if "target" in keys and metric.name == "auroc" else "event"
    strata = labels.get(strata_key) if strata_key in keys else None
    res = bootstrap_ci(
        drop, *[np.asarray(labels[k]) for k in keys], s0, s1,
        n_boot=n_boot, alpha=alpha, seed=seed, stratify=strata, max_failed_fraction=1.0,
    )  # fmt: skip
    d = np.asarray(res.replicates, float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return DropEstimate(m0, m1, metric.drop(m0, m1), None, None, None, 0)
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    p = 2 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0)))
    p = float(min(1.0, max(p, 1.0 / (d.size + 1))))
    return DropEstimate(m0, m1, metric.drop(m0, m1), float(lo), float(hi), p, int(d.size))
