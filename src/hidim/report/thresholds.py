"""Every threshold the automatic flags use, in one place.

The defaults are documented for clinicians in ``docs/report.md``; a run can override them
(``build_report(..., thresholds=FlagThresholds(max_ece=0.05))``) and the values used are
written into ``report.json`` beside the flags they produced.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FlagThresholds", "NON_ANATOMICAL_KEYWORDS"]

NON_ANATOMICAL_KEYWORDS: tuple[str, ...] = (
    "marker",
    "outside",
    "text",
    "annotation",
    "background",
    "label",
    "corner",
    "logo",
    "ecg",
    "border",
)
"""Occlusion region names that denote non-anatomical content (used when the explain
summary does not say whether a region is anatomical)."""


class FlagThresholds(BaseModel):
    """Every threshold the flag rules use, in one place (documented in docs/report.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(
        default=0.05, gt=0, lt=1, description="significance level for occlusion-test p-values"
    )
    min_shortcut_drop: float = Field(
        default=0.02,
        ge=0,
        description="smallest performance drop (metric units) from masking a non-anatomical "
        "region that counts as reliance on it",
    )
    max_ece: float = Field(
        default=0.10,
        gt=0,
        lt=1,
        description="expected calibration error above which calibration is poor",
    )
    max_abstention: float = Field(
        default=0.20,
        ge=0,
        le=1,
        description="in-distribution abstention rate above which the model abstains too often",
    )
    min_ood_abstention: float = Field(
        default=0.90,
        ge=0,
        le=1,
        description="share of out-of-distribution inputs on which the model must say "
        "'I don't know'",
    )
    min_group_n: int = Field(
        default=30, ge=1, description="subgroups with fewer patients are too small"
    )
    max_failed_fraction: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="fraction of input files that may fail before a data-quality flag",
    )
    baseline_margin: float = Field(
        default=0.0,
        ge=0,
        description="the video model must beat the 2-D baseline by more than this (metric units)",
    )
