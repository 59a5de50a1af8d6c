"""Automatic flags: what in a run should worry a clinical reader, with links to evidence.

Each rule is a pure function of the collected report sections and :class:`FlagThresholds`
(every threshold lives there, documented, and is echoed in ``report.json``). A rule returns
zero or more :class:`~hidim.report.sections.Flag` objects, each with a severity, a one-line
plain-language message and the HTML anchor of the table or figure that holds the evidence.

Severities:
    ``critical``: the model should not be used as is (shortcut, failed sanity check,
    no better than chance). ``warning``: needs a look before any clinical use (subgroup gap,
    poor calibration, high abstention, data failures). ``info``: context (small subgroups,
    sections not run, quarantined files).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hidim.report.flag_rules_data import (
    flag_baseline,
    flag_data_quality,
    flag_missing_sections,
    flag_small_subgroups,
    flag_subgroup_gaps,
)
from hidim.report.flag_rules_model import (
    flag_abstention,
    flag_calibration,
    flag_chance_performance,
    flag_ood,
    flag_sanity_checks,
    flag_shortcut,
    holm_significant,
)
from hidim.report.flag_text import is_anatomical_region
from hidim.report.sections import Flag, ReportSections
from hidim.report.thresholds import NON_ANATOMICAL_KEYWORDS, FlagThresholds

__all__ = [
    "FlagThresholds",
    "ReportSections",
    "Rule",
    "compute_flags",
    "is_anatomical_region",
    "holm_significant",
    "NON_ANATOMICAL_KEYWORDS",
    "RULES",
]

Rule = Callable[[ReportSections, FlagThresholds], list[Flag]]


RULES: tuple[Rule, ...] = (
    flag_sanity_checks,
    flag_shortcut,
    flag_chance_performance,
    flag_subgroup_gaps,
    flag_small_subgroups,
    flag_abstention,
    flag_ood,
    flag_calibration,
    flag_data_quality,
    flag_baseline,
    flag_missing_sections,
)
"""Every flag rule, in the order their flags are listed (within a severity)."""

_ORDER = {"critical": 0, "warning": 1, "info": 2}


def compute_flags(
    sections: ReportSections,
    thresholds: FlagThresholds | None = None,
    *,
    rules: Sequence[Rule] = RULES,
) -> tuple[Flag, ...]:
    """Run every flag rule; flags sorted by severity (critical first), then rule order."""
    t = thresholds or FlagThresholds()
    flags: list[Flag] = []
    for rule in rules:
        flags.extend(rule(sections, t))
    return tuple(sorted(flags, key=lambda f: _ORDER[f.severity]))
