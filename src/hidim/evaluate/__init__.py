"""hidim.evaluate: metrics as pure functions on numpy arrays, with validated inputs.

Survival (:mod:`~hidim.evaluate.survival_metrics`, :mod:`~hidim.evaluate.concordance`,
:mod:`~hidim.evaluate.kaplan_meier`), classification/regression
(:mod:`~hidim.evaluate.classification`), calibration (:mod:`~hidim.evaluate.calibration`),
uncertainty and selective prediction (:mod:`~hidim.evaluate.uncertainty`), bootstrap
confidence intervals for any of them (:mod:`~hidim.evaluate.bootstrap`). Subgroup audits
live in :mod:`hidim.evaluate.subgroup`.
"""

from hidim.evaluate.bootstrap import BootstrapResult, bootstrap_ci
from hidim.evaluate.calibration import (
    ReliabilityBins,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    plot_reliability_diagram,
    reliability_bins,
)
from hidim.evaluate.classification import (
    accuracy,
    auprc,
    auroc,
    binary_metrics,
    mae,
    operating_point,
    r2,
    regression_metrics,
    rmse,
    sensitivity,
    specificity,
)
from hidim.evaluate.concordance import (
    ConcordanceResult,
    concordance_counts,
    concordance_index,
    concordance_index_ipcw,
)
from hidim.evaluate.kaplan_meier import (
    KaplanMeier,
    RiskGroupCurves,
    kaplan_meier,
    plot_risk_group_curves,
    risk_group_curves,
)
from hidim.evaluate.survival_metrics import (
    CalibrationTest,
    brier_score,
    cumulative_dynamic_auc,
    d_calibration,
    integrated_brier_score,
    one_calibration,
    survival_at,
)
from hidim.evaluate.uncertainty import (
    abstain,
    aurc,
    enable_mc_dropout,
    ensemble_aggregate,
    fit_abstention_threshold,
    mc_dropout_predict,
    ood_abstention_summary,
    ood_auroc,
    risk_coverage_curve,
)

__all__ = [
    "BootstrapResult",
    "bootstrap_ci",
    "ReliabilityBins",
    "apply_temperature",
    "expected_calibration_error",
    "fit_temperature",
    "plot_reliability_diagram",
    "reliability_bins",
    "accuracy",
    "auprc",
    "auroc",
    "binary_metrics",
    "mae",
    "operating_point",
    "r2",
    "regression_metrics",
    "rmse",
    "sensitivity",
    "specificity",
    "ConcordanceResult",
    "concordance_counts",
    "concordance_index",
    "concordance_index_ipcw",
    "KaplanMeier",
    "RiskGroupCurves",
    "kaplan_meier",
    "plot_risk_group_curves",
    "risk_group_curves",
    "CalibrationTest",
    "brier_score",
    "cumulative_dynamic_auc",
    "d_calibration",
    "integrated_brier_score",
    "one_calibration",
    "survival_at",
    "abstain",
    "aurc",
    "enable_mc_dropout",
    "ensemble_aggregate",
    "fit_abstention_threshold",
    "mc_dropout_predict",
    "ood_abstention_summary",
    "ood_auroc",
    "risk_coverage_curve",
]
