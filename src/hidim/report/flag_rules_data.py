"""Flag rules on the data and the cohort: subgroup gaps, small groups, data quality,
the 2-D baseline and missing evidence.

Each rule is a pure function ``rule(sections, thresholds) -> list[Flag]``; the registry and
the ordering live in :mod:`hidim.report.flags`.
"""

from __future__ import annotations

from hidim.report.flag_text import fmt as _fmt
from hidim.report.flag_text import pct as _pct
from hidim.report.sections import Flag, ReportSections, SubgroupRow
from hidim.report.thresholds import FlagThresholds

__all__ = [
    "flag_subgroup_gaps",
    "flag_small_subgroups",
    "flag_data_quality",
    "flag_baseline",
    "flag_missing_sections",
]


def _too_small(row: SubgroupRow, t: FlagThresholds) -> bool:
    """Performance needs enough patients and events; a rate only enough patients."""
    if row.n < t.min_group_n:
        return True
    return row.small_n and row.kind == "performance"


def flag_subgroup_gaps(s: ReportSections, t: FlagThresholds) -> list[Flag]:
    """A subgroup doing worse than the reference with a CI of the difference excluding zero.

    Worse means: lower performance, more abstention, or fewer outcomes recorded (which can
    be under-diagnosis or under-recording that a model trained on these labels learns).
    Better-than-reference groups are not flagged (the groups they are compared with are).
    """
    out = []
    for row in s.bias.rows:
        d = row.difference
        if d is None or d.value is None or _too_small(row, t) or not d.excludes(0.0):
            continue
        worse = d.value < 0 if row.higher_is_better else d.value > 0
        if not worse:
            continue
        who = f"{row.attribute} = {row.group}"
        ci = f"95 % CI of the difference {_fmt(d.lower)} to {_fmt(d.upper)}"
        value = f"{_fmt(row.estimate.value)}"
        if row.kind == "outcome_rate":
            title = f"Fewer outcomes recorded for {who}"
            message = (
                f"The {row.metric.lower()} for {who} (n = {row.n}) is {_pct(row.estimate.value)}, "
                f"{_pct(abs(d.value))} below {row.reference} ({ci}): check for under-diagnosis "
                "or under-recording of outcomes in this group; a model trained on these "
                "labels learns the gap."
            )
        elif row.kind == "rate":
            title = f"{row.metric} higher for {who}"
            message = (
                f"For {who} (n = {row.n}) the {row.metric.lower()} is {_pct(row.estimate.value)}, "
                f"{_pct(abs(d.value))} above {row.reference} ({ci}): this group gets fewer "
                "automated answers."
            )
        else:
            title = f"Performance gap for {who}"
            message = (
                f"For {who} (n = {row.n}) {row.metric} is {value}, worse than {row.reference} "
                f"by {_fmt(abs(d.value))} ({ci} excludes no difference)."
            )
        out.append(
            Flag(
                code="subgroup_gap",
                severity="warning",
                title=title,
                message=message,
                evidence="bias-forest",
                value=d.value,
                threshold=0.0,
            )
        )
    return out


def flag_small_subgroups(s: ReportSections, t: FlagThresholds) -> list[Flag]:
    """Subgroups too small (patients or events) for their metrics to mean much."""
    seen: dict[tuple[str, str], SubgroupRow] = {}
    for row in s.bias.rows:
        if row.small_n or row.n < t.min_group_n:
            seen.setdefault((row.attribute, row.group), row)
    if not seen:
        return []

    def describe(r: SubgroupRow) -> str:
        ev = f", {r.events} events" if r.events is not None else ""
        return f"{r.attribute} = {r.group} (n = {r.n}{ev})"

    listed = ", ".join(describe(r) for r in list(seen.values())[:6])
    more = f" and {len(seen) - 6} more" if len(seen) > 6 else ""
    return [
        Flag(
            code="small_subgroup",
            severity="info",
            title=f"{len(seen)} subgroup(s) too small to judge performance",
            message=(
                f"Too few patients (< {t.min_group_n}) or events in {listed}{more}: "
                "their performance is too uncertain to show or rule out a gap."
            ),
            evidence="bias-table",
            value=float(min(r.n for r in seen.values())),
            threshold=float(t.min_group_n),
        )
    ]


def flag_data_quality(s: ReportSections, t: FlagThresholds) -> list[Flag]:
    """Input files that failed to load, and files quarantined by de-identification."""
    out = []
    d = s.data
    n_in = sum(r.count for r in d.ledger_counts)
    failed = d.n_ledger_failures
    if failed and (n_in == 0 or failed / n_in > t.max_failed_fraction):
        out.append(
            Flag(
                code="data_failures",
                severity="warning",
                title=f"{failed} input file(s) failed",
                message=(
                    f"{failed} input file(s) could not be read or processed and are not in "
                    "the analysis; check they are not a biased subset."
                ),
                evidence="data-ledger",
                value=float(failed),
                threshold=t.max_failed_fraction,
            )
        )
    if d.deid is not None and d.deid.n_quarantined:
        out.append(
            Flag(
                code="files_quarantined",
                severity="info",
                title=f"{d.deid.n_quarantined} file(s) quarantined by de-identification",
                message=(
                    f"{d.deid.n_quarantined} file(s) were held back because identifying "
                    "information could not be removed safely; they are not in the analysis."
                ),
                evidence="data-deid",
                value=float(d.deid.n_quarantined),
            )
        )
    return out


def flag_baseline(s: ReportSections, t: FlagThresholds) -> list[Flag]:
    """The video model does not beat the 2-D frame-by-frame baseline."""
    b = s.performance.baseline
    if b is None or b.video.value is None or b.baseline.value is None:
        return []
    gain = b.video.value - b.baseline.value
    if not b.higher_is_better:
        gain = -gain
    if gain > t.baseline_margin:
        return []
    return [
        Flag(
            code="baseline_not_beaten",
            severity="warning",
            title="Video model not better than the 2-D baseline",
            message=(
                f"The video model's {b.metric} ({_fmt(b.video.value)}) is not better than "
                f"the frame-by-frame 2-D baseline's ({_fmt(b.baseline.value)}): the motion "
                "information is not being used, or not helping."
            ),
            evidence="perf-baseline",
            value=gain,
            threshold=t.baseline_margin,
        )
    ]


_SECTION_HINTS = {
    "performance": ("Performance", "hidim predict RUN STORE"),
    "uncertainty": ("Uncertainty", "hidim predict RUN STORE (with an uncertainty head)"),
    "explanations": ("Explanations", "hidim explain RUN --store STORE"),
    "bias": ("Bias", "hidim audit RUN --by sex,ethnicity,site"),
}


def flag_missing_sections(s: ReportSections, t: FlagThresholds) -> list[Flag]:
    """Evidence sections that were not run: the report cannot vouch for what they check."""
    out = []
    for attr, (title, command) in _SECTION_HINTS.items():
        section = getattr(s, attr)
        if section.status == "not_run":
            out.append(
                Flag(
                    code="section_not_run",
                    severity="info",
                    title=f"{title} not assessed",
                    message=f"No {title.lower()} evidence in this run; produce it with `{command}`.",
                    evidence=attr if attr != "explanations" else "explanations",
                )
            )
    return out
