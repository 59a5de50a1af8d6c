"""hidim.report — the translational-readiness report of a run.

``build_report(RUN, "report.html")`` collects a run's artefacts (store, de-identification
audit, metrics, predictions, uncertainty, explanations, subgroup audit) into typed sections
(:mod:`hidim.report.sections`), raises automatic flags (:mod:`hidim.report.flags`, thresholds
in :mod:`hidim.report.thresholds`), and writes one self-contained HTML file plus
``report.json`` with every number in it.
"""

from hidim.report.build import ReportResult, assemble_report, build_report
from hidim.report.sections import Flag, Report
from hidim.report.thresholds import FlagThresholds

__all__ = ["build_report", "assemble_report", "ReportResult", "Report", "Flag", "FlagThresholds"]
