"""Typed section models of the readiness report (what ``report.json`` holds).

Every number the HTML report shows lives in one of these frozen pydantic models, so
``report.json`` (``Report.model_dump(mode="json")``) is the machine-readable twin of the
HTML. A section whose artefacts are absent has ``status="not_run"`` and a plain-language
``note`` saying which command produces it; it never raises.

Units: times are in the label file's unit (``time`` column of ``labels.parquet``), frame
rates in frames per second, rates and probabilities in [0, 1].
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from hidim.report.thresholds import FlagThresholds

__all__ = [
    "SectionStatus",
    "Estimate",
    "CountRow",
    "Summary",
    "Section",
    "CohortSummary",
    "LabelSummary",
    "DeidSummary",
    "LedgerFailure",
    "DataSection",
    "ModelCardSection",
    "MetricRow",
    "KMCurve",
    "ReliabilityBin",
    "Calibration",
    "BaselineComparison",
    "PerformanceSection",
    "CoveragePoint",
    "OODRow",
    "UncertaintySection",
    "SanityCheck",
    "OcclusionRow",
    "PhaseRow",
    "FrameImportance",
    "SaliencyCase",
    "ShapleyRow",
    "ExplanationSection",
    "SubgroupRow",
    "TradeoffPoint",
    "BiasSection",
    "Flag",
    "Severity",
    "Report",
    "ReportSections",
]

SectionStatus = Literal["ok", "partial", "not_run", "error"]
Severity = Literal["critical", "warning", "info"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Estimate(_Frozen):
    """A point estimate with an optional confidence interval (default 95 %, bootstrap)."""

    value: float | None = None
    lower: float | None = None
    upper: float | None = None

    @property
    def has_ci(self) -> bool:
        """Whether both interval bounds are known."""
        return self.lower is not None and self.upper is not None

    def excludes(self, x: float) -> bool:
        """True when the interval is known and ``x`` lies strictly outside it."""
        if self.lower is None or self.upper is None:
            return False
        return x < self.lower or x > self.upper


class CountRow(_Frozen):
    """One labelled count (a table row: e.g. ``view = A4C: 40``)."""

    label: str
    count: int


class Summary(_Frozen):
    """Min / median / max of a numeric column (``None`` when the column is absent)."""

    min: float | None = None
    median: float | None = None
    max: float | None = None


class Section(_Frozen):
    """Common fields of every report section."""

    status: SectionStatus = "not_run"
    note: str = ""
    sources: tuple[str, ...] = ()


# --- 1. Data -------------------------------------------------------------------------


class CohortSummary(_Frozen):
    """What is in the store: patients, studies, series and their acquisition."""

    n_patients: int
    n_studies: int
    n_series: int
    modalities: tuple[CountRow, ...] = ()
    views: tuple[CountRow, ...] = ()
    manufacturers: tuple[CountRow, ...] = ()
    splits: tuple[CountRow, ...] = Field(default=(), description="patients per split")
    fps_original: Summary = Summary()
    fps_normalised: Summary = Summary()
    n_frames: Summary = Summary()


class LabelSummary(_Frozen):
    """Outcome labels and demographics (``labels.parquet``)."""

    n_labelled: int
    n_events: int | None = None
    event_rate: float | None = None
    median_follow_up: float | None = None
    targets: tuple[str, ...] = ()
    demographics: dict[str, tuple[CountRow, ...]] = {}


class DeidSummary(_Frozen):
    """What de-identification did (from its audit Parquet): counts only, never values."""

    n_inputs: int
    n_written: int
    n_quarantined: int
    n_failed: int
    n_skipped: int = 0
    actions: tuple[CountRow, ...] = Field(
        default=(), description="header actions, summed over files"
    )
    pixel_decisions: tuple[CountRow, ...] = Field(
        default=(), description="files per pixel decision"
    )
    files_pixels_masked: int | None = Field(default=None, description="files with pixels blanked")
    ocr_text_boxes: int | None = Field(default=None, description="burned-in text boxes OCR found")
    quarantine_reasons: tuple[CountRow, ...] = ()


class LedgerFailure(_Frozen):
    """One input file the pipeline did not use (never a PHI path: a hash id)."""

    input_id: str
    stage: str
    status: str
    reason: str


class DataSection(Section):
    """Section 1: the cohort, de-identification and the ledger of failures."""

    cohort: CohortSummary | None = None
    labels: LabelSummary | None = None
    deid: DeidSummary | None = None
    ledger_counts: tuple[CountRow, ...] = ()
    ledger_failures: tuple[LedgerFailure, ...] = ()
    n_ledger_failures: int = Field(default=0, description="inputs that failed (errors)")
    n_ledger_not_used: int = Field(default=0, description="inputs failed, skipped or quarantined")


# --- 2. Model card -------------------------------------------------------------------


class ModelCardSection(Section):
    """Section 2: what the model is, how it was trained, and where it came from."""

    intended_use: str = ""
    card: dict[str, str] = Field(default={}, description="other entries of RUN/model_card.yaml")
    task: str | None = None
    targets: tuple[str, ...] = ()
    backbone: str | None = None
    pretrained: str | None = None
    head: str | None = None
    fusion_inputs: tuple[str, ...] = ()
    uncertainty_method: str | None = None
    training: dict[str, str] = {}
    seed: int | None = None
    splits: tuple[CountRow, ...] = ()
    command: str | None = None
    created_utc: str | None = None
    git_revision: str | None = None
    versions: dict[str, str | None] = {}
    input_hashes: dict[str, str] = {}


# --- 3. Performance ------------------------------------------------------------------


class MetricRow(_Frozen):
    """One performance metric on one split, with its CI."""

    name: str
    split: str
    estimate: Estimate
    n: int | None = None
    higher_is_better: bool = True
    chance: float | None = Field(default=None, description="the no-skill value (0.5 for AUROC/C)")


class KMCurve(_Frozen):
    """Kaplan–Meier survival curve of one predicted-risk group (step function)."""

    group: str
    n: int
    events: int
    times: tuple[float, ...]
    survival: tuple[float, ...]
    lower: tuple[float, ...] = ()
    upper: tuple[float, ...] = ()
    at_risk: tuple[int, ...] = Field(default=(), description="patients at risk at at_risk_times")


class ReliabilityBin(_Frozen):
    """One bin of a reliability diagram: mean predicted vs observed frequency."""

    predicted: float
    observed: float
    count: int


class Calibration(_Frozen):
    """Calibration of predicted probabilities (binary, or event risk by a horizon)."""

    kind: Literal["binary", "survival"]
    horizon: float | None = None
    ece: float | None = None
    bins: tuple[ReliabilityBin, ...] = ()


class BaselineComparison(_Frozen):
    """Video model vs the 2-D-per-frame baseline on the same metric and split."""

    metric: str
    split: str
    video: Estimate
    baseline: Estimate
    baseline_name: str
    higher_is_better: bool = True
    video_better: bool | None = None


class PerformanceSection(Section):
    """Section 3: discrimination, survival curves, calibration, baseline comparison."""

    task: str | None = None
    eval_split: str | None = None
    metrics: tuple[MetricRow, ...] = ()
    km_curves: tuple[KMCurve, ...] = ()
    km_at_risk_times: tuple[float, ...] = ()
    km_logrank_p: float | None = None
    calibration: Calibration | None = None
    baseline: BaselineComparison | None = None


# --- 4. Uncertainty ------------------------------------------------------------------


class CoveragePoint(_Frozen):
    """Selective prediction: the risk (error) of the predictions kept at this coverage."""

    coverage: float
    risk: float


class OODRow(_Frozen):
    """How often the model said "I don't know" on one kind of input."""

    kind: str
    in_distribution: bool
    n: int
    abstained: int
    rate: float
    note: str = ""


class UncertaintySection(Section):
    """Section 4: uncertainty, abstention ("I don't know") and out-of-distribution checks."""

    method: str | None = None
    target_coverage: float | None = None
    threshold: float | None = None
    abstention_rate: float | None = None
    n_eval: int | None = None
    ood_threshold: float | None = None
    n_abstained_ood: int | None = None
    risk_name: str | None = None
    risk_coverage: tuple[CoveragePoint, ...] = ()
    aurc: float | None = None
    ood: tuple[OODRow, ...] = ()
    ood_auroc: Estimate | None = None


# --- 5. Explanations -----------------------------------------------------------------


class SanityCheck(_Frozen):
    """One Adebayo-style sanity check of a saliency method."""

    method: str
    test: str
    similarity: float | None = None
    threshold: float | None = None
    passed: bool | None = None


class OcclusionRow(_Frozen):
    """Performance drop when one region is masked in every frame of every test clip."""

    region: str
    anatomical: bool | None = None
    metric: str
    original: float | None = None
    occluded: float | None = None
    drop: Estimate
    p_value: float | None = None
    subset: str | None = Field(default=None, description="e.g. the site the test was run at")


class PhaseRow(_Frozen):
    """Performance drop when one cardiac phase (time window) is occluded."""

    phase: str
    metric: str
    drop: Estimate
    p_value: float | None = None


class FrameImportance(_Frozen):
    """Mean attribution per frame (normalised to sum to 1) with the true phase of each frame."""

    frames: tuple[int, ...]
    importance: tuple[float, ...]
    phase: tuple[str, ...] = ()


class SaliencyCase(_Frozen):
    """One explained test case: an overlay image (embedded) and whether it was right."""

    case_id: str
    correct: bool | None = None
    caption: str = ""
    image_path: str = Field(description="path relative to the run directory")


class ShapleyRow(_Frozen):
    """Input-stream importance: mean |Shapley value| of the image stream or a tabular input."""

    input: str
    value: float


class ExplanationSection(Section):
    """Section 5: saliency with sanity checks, occlusion tests, temporal importance."""

    methods: tuple[str, ...] = ()
    sanity_checks: tuple[SanityCheck, ...] = ()
    occlusion: tuple[OcclusionRow, ...] = ()
    phases: tuple[PhaseRow, ...] = ()
    frame_importance: FrameImportance | None = None
    cases: tuple[SaliencyCase, ...] = ()
    shapley: tuple[ShapleyRow, ...] = ()


# --- 6. Bias -------------------------------------------------------------------------


class SubgroupRow(_Frozen):
    """One subgroup's metric, and its difference from the reference (overall or a group)."""

    attribute: str
    group: str
    metric: str
    kind: Literal["performance", "outcome_rate", "rate"] = "performance"
    higher_is_better: bool = True
    n: int
    events: int | None = None
    estimate: Estimate
    difference: Estimate | None = None
    reference: str = "overall"
    small_n: bool = False


class TradeoffPoint(_Frozen):
    """One fairness-penalty weight of a sweep: overall performance vs disparity."""

    weight: float
    performance: float
    disparity: float


class BiasSection(Section):
    """Section 6: subgroup audit and the fairness trade-off."""

    attributes: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    overall: dict[str, Estimate] = Field(default={}, description="whole-cohort value per metric")
    n_audited: int | None = None
    audited_splits: tuple[CountRow, ...] = Field(
        default=(), description="studies per split audited"
    )
    rows: tuple[SubgroupRow, ...] = ()
    tradeoff: tuple[TradeoffPoint, ...] = ()
    tradeoff_performance: str | None = None
    tradeoff_disparity: str | None = None


# --- 7. Flags ------------------------------------------------------------------------


class Flag(_Frozen):
    """One automatic warning: what should worry a reader, and where the evidence is."""

    code: str
    severity: Severity
    title: str
    message: str = Field(description="one plain-language sentence for a clinician")
    evidence: str = Field(description="HTML anchor id of the table/figure with the evidence")
    value: float | None = None
    threshold: float | None = None


# --- the whole report ----------------------------------------------------------------


class ReportSections(NamedTuple):
    """The six evidence sections the flag rules read."""

    data: DataSection
    model_card: ModelCardSection
    performance: PerformanceSection
    uncertainty: UncertaintySection
    explanations: ExplanationSection
    bias: BiasSection


class Report(_Frozen):
    """The readiness report: six evidence sections, the flags they raise, and the thresholds.

    ``report.json`` is ``Report.model_dump(mode="json")``; the HTML shows the same numbers.
    """

    schema_version: int = 1
    title: str
    run_name: str
    created_utc: str
    hidim_version: str
    data: DataSection
    model_card: ModelCardSection
    performance: PerformanceSection
    uncertainty: UncertaintySection
    explanations: ExplanationSection
    bias: BiasSection
    flags: tuple[Flag, ...] = ()
    thresholds: FlagThresholds
