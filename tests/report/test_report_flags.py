"""Each automatic flag fires on the evidence that should raise it, and not otherwise."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hidim.report.flags import RULES, ReportSections, compute_flags, is_anatomical_region
from hidim.report.sections import (
    BaselineComparison,
    BiasSection,
    Calibration,
    CountRow,
    DataSection,
    DeidSummary,
    Estimate,
    ExplanationSection,
    MetricRow,
    ModelCardSection,
    OcclusionRow,
    OODRow,
    PerformanceSection,
    SanityCheck,
    SubgroupRow,
    UncertaintySection,
)
from hidim.report.thresholds import FlagThresholds


def clean() -> ReportSections:
    """A run whose evidence raises no flag at all."""
    return ReportSections(
        data=DataSection(
            status="ok",
            ledger_counts=(CountRow(label="ok", count=100),),
            deid=DeidSummary(n_inputs=100, n_written=100, n_quarantined=0, n_failed=0),
        ),
        model_card=ModelCardSection(status="ok"),
        performance=PerformanceSection(
            status="ok",
            eval_split="test",
            metrics=(
                MetricRow(
                    name="C-index (Harrell)",
                    split="test",
                    estimate=Estimate(value=0.75, lower=0.68, upper=0.82),
                    chance=0.5,
                ),
            ),
            calibration=Calibration(kind="survival", horizon=2.0, ece=0.04),
            baseline=BaselineComparison(
                metric="C-index (Harrell)",
                split="test",
                video=Estimate(value=0.75),
                baseline=Estimate(value=0.70),
                baseline_name="2-D",
            ),
        ),
        uncertainty=UncertaintySection(
            status="ok",
            abstention_rate=0.08,
            ood=(
                OODRow(kind="noise", in_distribution=False, n=10, abstained=10, rate=1.0),
                OODRow(kind="test", in_distribution=True, n=40, abstained=3, rate=0.075),
            ),
        ),
        explanations=ExplanationSection(
            status="ok",
            sanity_checks=(
                SanityCheck(
                    method="gradcam",
                    test="model_randomisation",
                    similarity=0.1,
                    threshold=0.5,
                    passed=True,
                ),
            ),
            occlusion=(
                OcclusionRow(
                    region="marker",
                    anatomical=False,
                    metric="C-index",
                    drop=Estimate(value=0.003, lower=-0.01, upper=0.015),
                    p_value=0.6,
                ),
                OcclusionRow(
                    region="lv_cavity",
                    anatomical=True,
                    metric="C-index",
                    drop=Estimate(value=0.2, lower=0.1, upper=0.3),
                    p_value=0.001,
                ),
            ),
        ),
        bias=BiasSection(
            status="ok",
            rows=(
                SubgroupRow(
                    attribute="sex",
                    group="F",
                    metric="C-index",
                    n=60,
                    estimate=Estimate(value=0.74),
                    difference=Estimate(value=-0.01, lower=-0.08, upper=0.06),
                ),
                SubgroupRow(
                    attribute="sex",
                    group="M",
                    metric="C-index",
                    n=60,
                    estimate=Estimate(value=0.76),
                    difference=Estimate(value=0.01, lower=-0.06, upper=0.08),
                ),
            ),
        ),
    )


def codes(s: ReportSections, t: FlagThresholds | None = None) -> list[str]:
    return [f.code for f in compute_flags(s, t)]


def test_clean_run_raises_no_flag() -> None:
    assert codes(clean()) == []


def _replace(s: ReportSections, section: str, **changes: object) -> ReportSections:
    return s._replace(**{section: getattr(s, section).model_copy(update=changes)})


MUTATIONS: dict[str, Callable[[ReportSections], ReportSections]] = {
    "sanity_check_failed": lambda s: _replace(
        s,
        "explanations",
        sanity_checks=(
            SanityCheck(
                method="guided_backprop",
                test="model_randomisation",
                similarity=0.93,
                threshold=0.5,
                passed=False,
            ),
        ),
    ),
    "shortcut_suspected": lambda s: _replace(
        s,
        "explanations",
        occlusion=(
            OcclusionRow(
                region="marker",
                anatomical=False,
                metric="C-index",
                drop=Estimate(value=0.12, lower=0.06, upper=0.18),
                p_value=0.001,
                subset="site_a",
            ),
        ),
    ),
    "chance_performance": lambda s: _replace(
        s,
        "performance",
        metrics=(
            MetricRow(
                name="AUROC",
                split="test",
                estimate=Estimate(value=0.56, lower=0.45, upper=0.67),
                chance=0.5,
            ),
        ),
    ),
    "subgroup_gap": lambda s: _replace(
        s,
        "bias",
        rows=(
            SubgroupRow(
                attribute="ethnicity",
                group="C",
                metric="C-index",
                n=45,
                estimate=Estimate(value=0.58),
                difference=Estimate(value=-0.17, lower=-0.28, upper=-0.05),
            ),
        ),
    ),
    "small_subgroup": lambda s: _replace(
        s,
        "bias",
        rows=(
            SubgroupRow(
                attribute="site",
                group="d",
                metric="C-index",
                n=8,
                estimate=Estimate(value=0.5),
                difference=Estimate(value=-0.3, lower=-0.6, upper=-0.01),
                small_n=True,
            ),
        ),
    ),
    "high_abstention": lambda s: _replace(s, "uncertainty", abstention_rate=0.35),
    "ood_not_detected": lambda s: _replace(
        s,
        "uncertainty",
        ood=(OODRow(kind="ct_volume", in_distribution=False, n=10, abstained=4, rate=0.4),),
    ),
    "poor_calibration": lambda s: _replace(
        s, "performance", calibration=Calibration(kind="binary", ece=0.19)
    ),
    "data_failures": lambda s: _replace(
        s,
        "data",
        ledger_counts=(CountRow(label="ok", count=99), CountRow(label="failed", count=1)),
        n_ledger_failures=1,
    ),
    "files_quarantined": lambda s: _replace(
        s, "data", deid=DeidSummary(n_inputs=100, n_written=97, n_quarantined=3, n_failed=0)
    ),
    "baseline_not_beaten": lambda s: _replace(
        s,
        "performance",
        baseline=BaselineComparison(
            metric="C-index (Harrell)",
            split="test",
            video=Estimate(value=0.70),
            baseline=Estimate(value=0.72),
            baseline_name="2-D",
        ),
    ),
    "section_not_run": lambda s: s._replace(explanations=ExplanationSection(status="not_run")),
}


@pytest.mark.parametrize("code", sorted(MUTATIONS))
def test_flag_fires_on_its_evidence_only(code: str) -> None:
    flags = compute_flags(MUTATIONS[code](clean()))
    assert [f.code for f in flags] == [code]
    flag = flags[0]
    assert flag.message and "\n" not in flag.message
    assert flag.evidence and " " not in flag.evidence


def test_every_rule_has_a_firing_case() -> None:
    fired = {code for code in MUTATIONS}
    rule_codes = {f.code for rule in RULES for f in rule(MUTATIONS_ALL(), FlagThresholds())}
    assert rule_codes <= fired
    assert len(RULES) == 11


def MUTATIONS_ALL() -> ReportSections:  # noqa: N802 - reads like a constant
    s = clean()
    for mutate in MUTATIONS.values():
        s = mutate(s)
    return s


def test_shortcut_needs_a_significant_drop_on_a_non_anatomical_region() -> None:
    base = clean()
    # A big drop on anatomy is what a good model shows: no flag.
    anat = _replace(
        base,
        "explanations",
        occlusion=(
            OcclusionRow(
                region="lv_cavity",
                anatomical=True,
                metric="C",
                drop=Estimate(value=0.3, lower=0.2, upper=0.4),
                p_value=1e-4,
            ),
        ),
    )
    assert "shortcut_suspected" not in codes(anat)
    # Significant but tiny (below min_shortcut_drop): no flag.
    tiny = _replace(
        base,
        "explanations",
        occlusion=(
            OcclusionRow(
                region="marker",
                anatomical=False,
                metric="C",
                drop=Estimate(value=0.01, lower=0.005, upper=0.015),
                p_value=0.01,
            ),
        ),
    )
    assert "shortcut_suspected" not in codes(tiny)
    assert "shortcut_suspected" in codes(tiny, FlagThresholds(min_shortcut_drop=0.005))
    # Region anatomy unknown in the summary: inferred from the name.
    named = _replace(
        base,
        "explanations",
        occlusion=(
            OcclusionRow(
                region="outside_sector",
                metric="C",
                drop=Estimate(value=0.1, lower=0.05, upper=0.15),
                p_value=0.002,
            ),
        ),
    )
    assert "shortcut_suspected" in codes(named)


def test_subgroup_gap_ignores_intervals_that_include_zero_and_small_groups() -> None:
    row = SubgroupRow(
        attribute="sex",
        group="F",
        metric="C",
        n=60,
        estimate=Estimate(value=0.6),
        difference=Estimate(value=-0.1, lower=-0.2, upper=0.01),
    )
    assert "subgroup_gap" not in codes(_replace(clean(), "bias", rows=(row,)))
    # A group doing *better* than the reference is not itself flagged.
    higher = row.model_copy(update={"difference": Estimate(value=0.1, lower=0.02, upper=0.2)})
    assert codes(_replace(clean(), "bias", rows=(higher,))) == []
    worse = row.model_copy(update={"difference": Estimate(value=-0.1, lower=-0.2, upper=-0.02)})
    flags = compute_flags(_replace(clean(), "bias", rows=(worse,)))
    assert [f.code for f in flags] == ["subgroup_gap"] and "worse" in flags[0].message
    small = row.model_copy(
        update={"n": 10, "difference": Estimate(value=-0.3, lower=-0.5, upper=-0.1)}
    )
    assert codes(_replace(clean(), "bias", rows=(small,))) == ["small_subgroup"]


def test_lower_is_better_subgroup_metric() -> None:
    row = SubgroupRow(
        attribute="site",
        group="x",
        metric="Brier score",
        higher_is_better=False,
        n=80,
        estimate=Estimate(value=0.3),
        difference=Estimate(value=0.08, lower=0.03, upper=0.13),
    )
    assert codes(_replace(clean(), "bias", rows=(row,))) == ["subgroup_gap"]
    better = row.model_copy(update={"difference": Estimate(value=-0.08, lower=-0.13, upper=-0.03)})
    assert codes(_replace(clean(), "bias", rows=(better,))) == []


def test_under_recorded_outcomes_are_flagged_even_with_few_events() -> None:
    """The audit marks a group with few events small_n (performance unreliable), but a rate
    over enough patients is still well estimated: a lower recorded event rate is flagged."""
    row = SubgroupRow(
        attribute="sex",
        group="F",
        metric="Recorded event rate",
        kind="outcome_rate",
        n=114,
        events=5,
        estimate=Estimate(value=0.044, lower=0.009, upper=0.079),
        difference=Estimate(value=-0.16, lower=-0.2, upper=-0.12),
        small_n=True,
    )
    flags = compute_flags(_replace(clean(), "bias", rows=(row,)))
    gap = [f for f in flags if f.code == "subgroup_gap"]
    assert len(gap) == 1 and "under-recording" in gap[0].message and "sex = F" in gap[0].title
    # A group with *more* recorded events is sicker, not a data-quality worry.
    more = row.model_copy(
        update={
            "group": "M",
            "difference": Estimate(value=0.15, lower=0.11, upper=0.18),
            "small_n": False,
        }
    )
    assert codes(_replace(clean(), "bias", rows=(more,))) == []
    # Too few patients for even a rate: not a gap flag.
    tiny = row.model_copy(update={"n": 12})
    assert "subgroup_gap" not in codes(_replace(clean(), "bias", rows=(tiny,)))


def test_abstaining_more_on_a_group_is_flagged() -> None:
    row = SubgroupRow(
        attribute="ethnicity",
        group="D",
        metric="Abstention rate",
        kind="rate",
        higher_is_better=False,
        n=50,
        estimate=Estimate(value=0.3),
        difference=Estimate(value=0.2, lower=0.1, upper=0.3),
    )
    flags = compute_flags(_replace(clean(), "bias", rows=(row,)))
    assert [f.code for f in flags] == ["subgroup_gap"] and "fewer automated answers" in flags[
        0
    ].message


def test_thresholds_are_applied_at_their_boundary() -> None:
    at = _replace(clean(), "performance", calibration=Calibration(kind="binary", ece=0.10))
    assert "poor_calibration" not in codes(at)
    assert "poor_calibration" in codes(at, FlagThresholds(max_ece=0.099))
    ab = _replace(clean(), "uncertainty", abstention_rate=0.20)
    assert "high_abstention" not in codes(ab)
    assert "high_abstention" in codes(ab, FlagThresholds(max_abstention=0.15))


def test_flags_are_sorted_by_severity() -> None:
    flags = compute_flags(MUTATIONS_ALL())
    order = {"critical": 0, "warning": 1, "info": 2}
    assert [order[f.severity] for f in flags] == sorted(order[f.severity] for f in flags)
    assert flags[0].severity == "critical"


def test_lower_is_better_baseline() -> None:
    b = BaselineComparison(
        metric="MAE",
        split="test",
        video=Estimate(value=4.0),
        baseline=Estimate(value=5.0),
        baseline_name="2-D",
        higher_is_better=False,
    )
    assert "baseline_not_beaten" not in codes(_replace(clean(), "performance", baseline=b))
    worse = b.model_copy(update={"video": Estimate(value=5.5)})
    assert "baseline_not_beaten" in codes(_replace(clean(), "performance", baseline=worse))


@pytest.mark.parametrize(
    ("name", "anatomical"),
    [
        ("marker", False),
        ("outside_sector", False),
        ("burned_in_text", False),
        ("lv_cavity", True),
        ("myocardium", True),
        ("grid_3_4", True),
    ],
)
def test_region_names(name: str, anatomical: bool) -> None:
    assert is_anatomical_region(name) is anatomical


def test_thresholds_validate() -> None:
    with pytest.raises(ValueError, match="max_ece"):
        FlagThresholds(max_ece=1.5)


def test_docs_list_every_flag_and_threshold() -> None:
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "report.md").read_text()
    for code in MUTATIONS:
        assert f"`{code}`" in doc, code
    for name, field in FlagThresholds.model_fields.items():
        m = re.search(rf"^\| `{name}` \| ([0-9.]+) \|", doc, flags=re.M)
        assert m is not None and float(m.group(1)) == field.default, name


def test_holm_step_down() -> None:
    from hidim.report.flags import holm_significant

    # Holm at 0.05 with m = 4: thresholds 0.0125, 0.0167, 0.025, 0.05 (step-down).
    assert holm_significant([0.01, 0.04, 0.03, 0.005], 0.05) == [True, False, False, True]
    assert holm_significant([0.001, 0.01, 0.02, 0.04], 0.05) == [True, True, True, True]
    assert holm_significant([None, 0.01], 0.05) == [False, True]


def test_shortcut_tests_of_one_region_are_corrected_together() -> None:
    def row(subset: str | None, p: float) -> OcclusionRow:
        return OcclusionRow(
            region="shortcut_marker",
            anatomical=False,
            metric="C",
            drop=Estimate(value=0.05, lower=0.01, upper=0.09),
            p_value=p,
            subset=subset,
        )

    # p = 0.02 alone is significant; among four tests of the same region it is not.
    one = _replace(clean(), "explanations", occlusion=(row(None, 0.02),))
    assert "shortcut_suspected" in codes(one)
    four = _replace(
        clean(),
        "explanations",
        occlusion=(row(None, 0.02), row("site=a", 0.5), row("site=b", 0.6), row("site=c", 0.9)),
    )
    assert "shortcut_suspected" not in codes(four)
    strong = _replace(
        clean(),
        "explanations",
        occlusion=(row(None, 0.03), row("site=a", 0.004), row("site=b", 0.6), row("site=c", 0.9)),
    )
    flags = compute_flags(strong)
    assert [f.code for f in flags] == ["shortcut_suspected"] and "at site a" in flags[0].message
