"""Flag rules on the model's evidence: explanations, discrimination, uncertainty, calibration.

Each rule is a pure function ``rule(sections, thresholds) -> list[Flag]``; the registry and
the ordering live in :mod:`hidim.report.flags`.
"""

from __future__ import annotations

from collections.abc import Sequence

from hidim.report.flag_text import fmt as _fmt
from hidim.report.flag_text import is_anatomical_region
from hidim.report.flag_text import pct as _pct
from hidim.report.sections import Flag, OcclusionRow, ReportSections
from hidim.report.thresholds import FlagThresholds

__all__ = [
    "holm_significant",
    "flag_sanity_checks",
    "flag_shortcut",
    "flag_chance_performance",
    "flag_abstention",
    "flag_ood",
    "flag_calibration",
]


_SANITY_TESTS = {
    "model_randomisation": "the model's learned weights are replaced by random ones",
    "data_randomisation": "the model is retrained on shuffled labels",
}


def flag_sanity_checks(s: ReportSections, t: FlagThresholds) -> list[Flag]:
    """A saliency method whose maps survive weight/label randomisation is not explaining."""
    out = []
    for check in s.explanations.sanity_checks:
        if check.passed is False:
            what = _SANITY_TESTS.get(check.test, check.test.replace("_", " "))
            out.append(
                Flag(
                    code="sanity_check_failed",
                    severity="critical",
                    title=f"Explanation method {check.method} failed a sanity check",
                    message=(
                        f"The {check.method} heat maps barely change when {what} "
                        f"(similarity {_fmt(check.similarity)}, pass below "
                        f"{_fmt(check.threshold)}): they do not show what the model uses."
                    ),
                    evidence="explain-sanity",
                    value=check.similarity,
                    threshold=check.threshold,
                )
            )
    return out


def holm_significant(p_values: Sequence[float | None], alpha: float) -> list[bool]:
    """Holm's step-down test: which p-values stay significant at family-wise ``alpha``.

    ``None`` p-values are never significant and do not count in the family size.
    """
    known = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out = [False] * len(p_values)
    m = len(known)
    for k, (p, i) in enumerate(known):
        if p > alpha / (m - k):
            break
        out[i] = True
    return out


def flag_shortcut(s: ReportSections, t: FlagThresholds) -> list[Flag]:
    """Masking a non-anatomical region (marker, outside the sector) significantly hurts.

    A region is tested on all test clips and per subset (e.g. per site); those tests form one
    family, so their p-values are Holm-corrected at ``alpha`` (a region is flagged when any
    of its tests stays significant and its drop exceeds ``min_shortcut_drop``). Rows without
    a p-value count as significant when the lower CI bound of the drop is above zero.
    """
    by_region: dict[str, list[OcclusionRow]] = {}
    for row in s.explanations.occlusion:
        anatomical = (
            row.anatomical if row.anatomical is not None else is_anatomical_region(row.region)
        )
        if not anatomical and row.drop.value is not None:
            by_region.setdefault(row.region, []).append(row)
    out = []
    for region, rows in by_region.items():
        holm = holm_significant([r.p_value for r in rows], t.alpha)
        hits = [
            r
            for r, sig in zip(rows, holm, strict=True)
            if (sig or (r.p_value is None and r.drop.lower is not None and r.drop.lower > 0))
            and r.drop.value is not None
            and r.drop.value > t.min_shortcut_drop
        ]
        if not hits:
            continue
        row = max(hits, key=lambda r: r.drop.value or 0.0)
        where = f" at {row.subset.replace('site=', 'site ')}" if row.subset else ""
        out.append(
            Flag(
                code="shortcut_suspected",
                severity="critical",
                title="Model relies on a non-anatomical region",
                message=(
                    f"Masking the {region.replace('_', ' ')}{where} lowers {row.metric} by "
                    f"{_fmt(row.drop.value, 3)} (95 % CI {_fmt(row.drop.lower, 3)} to "
                    f"{_fmt(row.drop.upper, 3)}, p = {_fmt(row.p_value, 3)}, significant after "
                    f"Holm correction over the {len(rows)} test(s) of this region): the model "
                    "uses something that is not the heart, a likely shortcut."
                ),
                evidence="explain-occlusion",
                value=row.drop.value,
                threshold=t.min_shortcut_drop,
            )
        )
    return out


def flag_chance_performance(s: ReportSections, t: FlagThresholds) -> list[Flag]:
    """A discrimination metric whose CI includes the no-skill value on the evaluation split."""
    out = []
    split = s.performance.eval_split
    for m in s.performance.metrics:
        if m.chance is None or m.estimate.value is None or (split and m.split != split):
            continue
        low = m.estimate.lower if m.estimate.lower is not None else m.estimate.value
        if low <= m.chance:
            out.append(
                Flag(
                    code="chance_performance",
                    severity="critical",
                    title=f"{m.name} not distinguishable from chance",
                    message=(
                        f"On the {m.split} set {m.name} is {_fmt(m.estimate.value)} and its "
                        f"95 % CI reaches {_fmt(low)}, not clearly above the no-skill value "
                        f"{_fmt(m.chance)}."
                    ),
                    evidence="perf-metrics",
                    value=m.estimate.value,
                    threshold=m.chance,
                )
            )
    return out


def flag_abstention(s: ReportSections, t: FlagThresholds) -> list[Flag]:
    """The model says "I don't know" on too many in-distribution cases."""
    rate = s.uncertainty.abstention_rate
    if rate is None or rate <= t.max_abstention:
        return []
    return [
        Flag(
            code="high_abstention",
            severity="warning",
            title="Model abstains often",
            message=(
                f'The model says "I don\'t know" on {_pct(rate)} of ordinary test cases '
                f"(limit {_pct(t.max_abstention)}); those patients get no automated answer."
            ),
            evidence="unc-abstention",
            value=rate,
            threshold=t.max_abstention,
        )
    ]


def flag_ood(s: ReportSections, t: FlagThresholds) -> list[Flag]:
    """Out-of-distribution inputs the model answers instead of abstaining (one flag)."""
    missed = [
        r
        for r in s.uncertainty.ood
        if not r.in_distribution and r.n and r.rate < t.min_ood_abstention
    ]
    if not missed:
        return []
    kinds = ", ".join(f"{r.kind.replace('_', ' ')} ({_pct(r.rate)})" for r in missed)
    auroc = s.uncertainty.ood_auroc
    inverted = ""
    if auroc is not None and auroc.upper is not None and auroc.upper < 0.5:
        inverted = (
            " Its uncertainty is even lower on these inputs than on real echoes "
            f"(OOD AUROC {_fmt(auroc.value)}), so it cannot be the basis of an "
            "'I don't know'."
        )
    return [
        Flag(
            code="ood_not_detected",
            severity="warning",
            title="Model answers inputs that are not echocardiograms",
            message=(
                f'The model said "I don\'t know" too rarely on {kinds} (expected at least '
                f"{_pct(t.min_ood_abstention)}): it would give a risk for a wrong or broken "
                f"input.{inverted}"
            ),
            evidence="unc-ood",
            value=min(r.rate for r in missed),
            threshold=t.min_ood_abstention,
        )
    ]


def flag_calibration(s: ReportSections, t: FlagThresholds) -> list[Flag]:
    """Predicted probabilities that do not match observed frequencies (ECE too high)."""
    cal = s.performance.calibration
    if cal is None or cal.ece is None or cal.ece <= t.max_ece:
        return []
    what = "event risks" if cal.kind == "survival" else "probabilities"
    return [
        Flag(
            code="poor_calibration",
            severity="warning",
            title="Predicted risks are poorly calibrated",
            message=(
                f"Predicted {what} are off from what was observed by "
                f"{_pct(cal.ece)} on average (ECE {_fmt(cal.ece, 3)} > {_fmt(t.max_ece)}); "
                "read them as rankings, not as absolute risks."
            ),
            evidence="perf-calibration",
            value=cal.ece,
            threshold=t.max_ece,
        )
    ]
