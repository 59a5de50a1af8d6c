"""Shared wording helpers of the flag rules (number formatting, region names)."""

from __future__ import annotations

from hidim.report.thresholds import NON_ANATOMICAL_KEYWORDS

__all__ = ["fmt", "pct", "is_anatomical_region"]


def is_anatomical_region(name: str) -> bool:
    """Whether an occlusion region name denotes anatomy (False for markers, text, outside)."""
    low = name.lower()
    return not any(k in low for k in NON_ANATOMICAL_KEYWORDS)


def fmt(x: float | None, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals, or ``n/a``."""
    return "n/a" if x is None else f"{x:.{digits}f}"


def pct(x: float | None) -> str:
    """``x`` as a whole percentage, or ``n/a``."""
    return "n/a" if x is None else f"{100 * x:.0f} %"
