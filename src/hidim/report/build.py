"""Build the readiness report of a run: collect → flag → render → write HTML + JSON.

``build_report(run_dir, out_html)`` writes the self-contained ``report.html``, its twin
``report.json`` (every number, the flags and the thresholds) and ``run.json`` (provenance)
in the output folder, atomically. The default output is ``RUN/report/report.html``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hidim import __version__
from hidim.errors import ReportError
from hidim.provenance import atomic_write_text, read_run_json, write_run_json
from hidim.report.collect import collect
from hidim.report.flags import compute_flags
from hidim.report.html import render_html
from hidim.report.sections import Flag, Report
from hidim.report.thresholds import FlagThresholds

__all__ = ["ReportResult", "build_report", "assemble_report", "REPORT_TITLE"]

REPORT_TITLE = "Translational-readiness report"


@dataclass(frozen=True)
class ReportResult:
    """What :func:`build_report` wrote.

    Attributes:
        html_path: The self-contained HTML report.
        json_path: ``report.json`` beside it (every number in the HTML).
        report: The report model itself.
    """

    html_path: Path
    json_path: Path
    report: Report

    @property
    def flags(self) -> tuple[Flag, ...]:
        """The automatic flags, critical first."""
        return self.report.flags


def assemble_report(
    run_dir: str | Path,
    *,
    store: str | Path | None = None,
    deid_audit: str | Path | None = None,
    baseline_run: str | Path | None = None,
    thresholds: FlagThresholds | None = None,
    title: str = REPORT_TITLE,
) -> Report:
    """Collect a run's artefacts and compute its flags (no files written)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ReportError(
            f"expected a run directory, got {str(run)!r} which is not a folder; "
            "pass the --out folder of `hidim train`"
        )
    t = thresholds or FlagThresholds()
    sections = collect(run, store=store, deid_audit=deid_audit, baseline_run=baseline_run)
    return Report(
        title=title,
        run_name=run.resolve().name,
        created_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        hidim_version=__version__,
        data=sections.data,
        model_card=sections.model_card,
        performance=sections.performance,
        uncertainty=sections.uncertainty,
        explanations=sections.explanations,
        bias=sections.bias,
        flags=compute_flags(sections, t),
        thresholds=t,
    )


def _may_write_run_json(out_dir: Path) -> bool:
    """True unless ``out_dir`` already holds another command's run.json (never clobber it)."""
    if not (out_dir / "run.json").is_file():
        return True
    try:
        return read_run_json(out_dir).get("command") == "report"
    except (ValueError, OSError):
        return False


def build_report(
    run_dir: str | Path,
    out_html: str | Path | None = None,
    *,
    store: str | Path | None = None,
    deid_audit: str | Path | None = None,
    baseline_run: str | Path | None = None,
    thresholds: FlagThresholds | None = None,
) -> ReportResult:
    """Write the readiness report of a run (HTML + ``report.json`` + ``run.json``).

    Args:
        run_dir: A training run directory (``hidim train --out RUN``).
        out_html: Where to write the HTML (default ``RUN/report/report.html``);
            ``report.json`` is written beside it.
        store: The store the run used (default: from the run's config).
        deid_audit: The de-identification audit Parquet (default: looked up near the store).
        baseline_run: A 2-D-per-frame baseline run to compare the video model against.
        thresholds: Flag thresholds (default :class:`FlagThresholds`).

    Returns:
        The paths written and the report model.

    Raises:
        ReportError: ``run_dir`` is not a directory.
    """
    run = Path(run_dir)
    report = assemble_report(
        run, store=store, deid_audit=deid_audit, baseline_run=baseline_run, thresholds=thresholds
    )
    html_path = Path(out_html) if out_html is not None else run / "report" / "report.html"
    if html_path.suffix.lower() not in (".html", ".htm"):
        raise ReportError(
            f"expected an .html output path, got {str(html_path)!r}; pass --out report.html"
        )
    json_path = html_path.with_name("report.json")
    atomic_write_text(json_path, json.dumps(report.model_dump(mode="json"), indent=2))
    atomic_write_text(html_path, render_html(report, run))
    if _may_write_run_json(html_path.parent):
        write_run_json(
            html_path.parent,
            command="report",
            config={
                "run_dir": str(run),
                "store": None if store is None else str(store),
                "deid_audit": None if deid_audit is None else str(deid_audit),
                "baseline_run": None if baseline_run is None else str(baseline_run),
                "thresholds": report.thresholds.model_dump(),
            },
            extra={
                "flags": {
                    s: sum(f.severity == s for f in report.flags)
                    for s in ("critical", "warning", "info")
                },
                "sections": {
                    name: getattr(report, name).status
                    for name in (
                        "data",
                        "model_card",
                        "performance",
                        "uncertainty",
                        "explanations",
                        "bias",
                    )
                },
            },
        )
    return ReportResult(html_path=html_path, json_path=json_path, report=report)
