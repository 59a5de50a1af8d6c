"""Metric names as a clinician reads them, their direction, chance level and kind.

One table for every section: ``metrics.json`` keys (``cindex``, ``auroc``...), subgroup
audit keys (``c_index``, ``event_rate``...) and occlusion metrics all map here.

Kinds:
    ``performance``: how well predictions match outcomes (gaps are model bias).
    ``outcome_rate``: how often the outcome was recorded (a lower rate in one group can be
    under-diagnosis or under-recording that a model then learns).
    ``rate``: how often the model does something (abstains, predicts positive).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

__all__ = ["MetricInfo", "METRICS", "metric_info", "display_name"]

Kind = Literal["performance", "outcome_rate", "rate"]


class MetricInfo(NamedTuple):
    """How to show and judge one metric."""

    name: str
    higher_is_better: bool
    chance: float | None = None
    kind: Kind = "performance"


_C = MetricInfo("C-index (Harrell)", True, 0.5)
_UNO = MetricInfo("C-index (Uno, IPCW)", True, 0.5)
_AUROC = MetricInfo("AUROC", True, 0.5)

METRICS: dict[str, MetricInfo] = {
    "c_index": _C,
    "cindex": _C,
    "harrell_c": _C,
    "concordance": _C,
    "uno_c": _UNO,
    "c_index_ipcw": _UNO,
    "cindex_ipcw": _UNO,
    "uno_c_index": _UNO,
    "auroc": _AUROC,
    "auc": _AUROC,
    "roc_auc": _AUROC,
    "auprc": MetricInfo("AUPRC", True),
    "average_precision": MetricInfo("AUPRC", True),
    "mean_auc": MetricInfo("Time-dependent AUC (mean)", True, 0.5),
    "td_auc": MetricInfo("Time-dependent AUC (mean)", True, 0.5),
    "ibs": MetricInfo("Integrated Brier score", False),
    "integrated_brier_score": MetricInfo("Integrated Brier score", False),
    "brier": MetricInfo("Brier score", False),
    "brier_score": MetricInfo("Brier score", False),
    "mae": MetricInfo("Mean absolute error", False),
    "rmse": MetricInfo("Root mean squared error", False),
    "mse": MetricInfo("Mean squared error", False),
    "r2": MetricInfo("R²", True),
    "accuracy": MetricInfo("Accuracy", True),
    "sensitivity": MetricInfo("Sensitivity", True),
    "specificity": MetricInfo("Specificity", True),
    "tpr": MetricInfo("True-positive rate (sensitivity)", True),
    "fpr": MetricInfo("False-positive rate", False),
    "f1": MetricInfo("F1", True),
    "ece": MetricInfo("Expected calibration error", False),
    "d_calibration_p": MetricInfo("D-calibration p-value", True),
    "event_rate": MetricInfo("Recorded event rate", True, None, "outcome_rate"),
    "prevalence": MetricInfo("Recorded positive rate", True, None, "outcome_rate"),
    "abstention_rate": MetricInfo("Abstention rate", False, None, "rate"),
    "selection_rate": MetricInfo("Predicted-positive rate", True, None, "rate"),
}
"""Known metric keys (lower case, ``_`` separated)."""


def _key(name: str) -> str:
    return name.lower().replace("-", "_").replace(" ", "_")


def metric_info(name: str) -> MetricInfo | None:
    """The :class:`MetricInfo` of a metric key or display name, or ``None`` if unknown."""
    info = METRICS.get(_key(name))
    if info is not None:
        return info
    return next((m for m in METRICS.values() if m.name == name), None)


def display_name(name: str) -> str:
    """The clinician-facing name of a metric key (the key itself when unknown)."""
    info = metric_info(name)
    return info.name if info else name
