"""Render a :class:`~hidim.report.sections.Report` as one self-contained HTML file.

The file has inline CSS, images as ``data:`` URIs and a Content-Security-Policy that
forbids every network load, so it opens offline, can be e-mailed or archived as is, and
prints cleanly (``@media print``). Every number is rendered by :func:`number_span` inside a
``<span class="num" data-key="…">`` whose key is the number's path in ``report.json``, so
tests (and readers) can check that the HTML and the JSON agree.

A tiny inline script (allowed by its SHA-256 in the CSP, nothing else may run) checks that
every embedded image decoded, logs a console error for any that did not, and records the
result in ``<html data-images-ok>`` for the headless-browser test.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from hidim.report import plots
from hidim.report.sections import CountRow, Estimate, Report, SubgroupRow
from hidim.report.thresholds import FlagThresholds

__all__ = ["render_html", "number_span", "format_number", "IMAGE_MIME", "SECTION_TITLES"]

IMAGE_MIME = {
    ".png": "image/png",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
"""Image files the report embeds (saliency overlays); other formats are listed, not shown."""

SECTION_TITLES = (
    ("data", "Data"),
    ("model-card", "Model card"),
    ("performance", "Performance"),
    ("uncertainty", "Uncertainty"),
    ("explanations", "Explanations"),
    ("bias", "Bias"),
)

_STATUS_LABEL = {"ok": "ok", "partial": "partial", "not_run": "not run", "error": "error"}

_SCRIPT = (
    "window.addEventListener('load',function(){var im=document.images,bad=0;"
    "for(var i=0;i<im.length;i++){if(!(im[i].complete&&im[i].naturalWidth>0)){bad++;"
    "console.error('hidim report: image did not decode: '+im[i].alt);}}"
    "var h=document.documentElement;h.setAttribute('data-images',String(im.length));"
    "h.setAttribute('data-images-ok',bad?'no':'yes');});"
)


def format_number(value: float | int | None, digits: int = 3, scale: float = 1.0) -> str:
    """The text the report shows for a number (``—`` when unknown).

    Integers print as integers; floats with ``digits`` decimals after multiplying by
    ``scale`` (100 for percentages).
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and scale == 1.0:
        return str(value)
    x = float(value) * scale
    if x != x:  # NaN
        return "—"
    return f"{x:.{digits}f}"


def number_span(value: float | int | None, key: str, digits: int = 3, scale: float = 1.0) -> Markup:
    """``<span class="num" data-key=KEY …>`` holding :func:`format_number`'s text."""
    suffix = " %" if scale == 100.0 else ""
    return Markup(
        '<span class="num" data-key="{}" data-digits="{}" data-scale="{}">{}</span>{}'
    ).format(
        key,
        digits,
        format_number(scale, 0) if scale != 1.0 else 1,
        format_number(value, digits, scale),
        suffix,
    )


def _pct(value: float | None, key: str, digits: int = 1) -> Markup:
    return number_span(value, key, digits, 100.0)


def _ci(est: Estimate | None, key: str, digits: int = 3) -> Markup:
    if est is None or not est.has_ci:
        return Markup("")
    return Markup("[{} to {}]").format(
        number_span(est.lower, f"{key}.lower", digits),
        number_span(est.upper, f"{key}.upper", digits),
    )


def _counts_table(rows: tuple[CountRow, ...], key: str, label: str, count_label: str) -> Markup:
    if not rows:
        return Markup("")
    body = Markup("").join(
        Markup('<tr><td>{}</td><td class="n">{}</td></tr>').format(
            r.label, number_span(r.count, f"{key}.{i}.count")
        )
        for i, r in enumerate(rows)
    )
    return Markup('<table><tr><th>{}</th><th class="n">{}</th></tr>{}</table>').format(
        label, count_label, body
    )


def _figures(report: Report) -> dict[str, Any]:
    figs: dict[str, Any] = {
        "km": None,
        "reliability": None,
        "risk_coverage": None,
        "frames": None,
        "tradeoff": None,
        "forest": [],
    }
    perf = report.performance
    if perf.km_curves:
        figs["km"] = plots.data_uri(
            plots.km_plot(
                perf.km_curves, logrank_p=perf.km_logrank_p, at_risk_times=perf.km_at_risk_times
            )
        )
    if perf.calibration is not None and perf.calibration.bins:
        figs["reliability"] = plots.data_uri(plots.reliability_plot(perf.calibration))
    unc = report.uncertainty
    if unc.risk_coverage:
        cov = None if unc.abstention_rate is None else 1.0 - unc.abstention_rate
        figs["risk_coverage"] = plots.data_uri(
            plots.risk_coverage_plot(
                unc.risk_coverage, risk_name=unc.risk_name or "error", operating_coverage=cov
            )
        )
    ex = report.explanations
    if ex.frame_importance is not None and ex.frame_importance.frames:
        figs["frames"] = plots.data_uri(plots.frame_importance_plot(ex.frame_importance))
    bias = report.bias
    if bias.tradeoff:
        figs["tradeoff"] = plots.data_uri(
            plots.tradeoff_plot(
                bias.tradeoff,
                performance=bias.tradeoff_performance or "performance",
                disparity=bias.tradeoff_disparity or "disparity",
            )
        )
    by_metric: dict[str, list[SubgroupRow]] = {}
    for row in bias.rows:
        by_metric.setdefault(row.metric, []).append(row)
    for metric, rows in by_metric.items():
        overall = bias.overall.get(metric)
        png = plots.forest_plot(
            rows,
            metric=metric,
            overall=overall.value if overall is not None else None,
            min_n=report.thresholds.min_group_n,
        )
        figs["forest"].append((metric, plots.data_uri(png)))
    return figs


def _case_images(report: Report, run_dir: Path) -> dict[str, str]:
    images: dict[str, str] = {}
    for case in report.explanations.cases:
        path = run_dir / case.image_path
        mime = IMAGE_MIME.get(path.suffix.lower())
        if mime is not None and path.is_file():
            images[case.image_path] = plots.data_uri(path.read_bytes(), mime)
        else:
            # A 1x1 transparent GIF keeps the layout; the caption says the file is missing.
            images[case.image_path] = (
                "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw=="
            )
    return images


def _thresholds(t: FlagThresholds) -> list[tuple[str, float, str]]:
    return [
        (name, getattr(t, name), field.description or "")
        for name, field in FlagThresholds.model_fields.items()
    ]


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("hidim.report", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(num=number_span, pct=_pct, ci=_ci, counts_table=_counts_table)
    return env


def render_html(report: Report, run_dir: str | Path) -> str:
    """The report as one self-contained HTML document.

    Args:
        report: The collected report (the same object written to ``report.json``).
        run_dir: The run directory (saliency overlay images are read from it).

    Returns:
        The HTML text (UTF-8); write it with :func:`hidim.provenance.atomic_write_text`.
    """
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    sections = [
        (sid, title, getattr(report, sid.replace("-", "_"))) for sid, title in SECTION_TITLES
    ]
    template = _environment().get_template("report.html")
    return template.render(
        r=report,
        sections=sections,
        status_label=_STATUS_LABEL,
        figs=_figures(report),
        case_images=_case_images(report, Path(run_dir)),
        thresholds=_thresholds(report.thresholds),
        script=Markup(_SCRIPT),
        script_hash=f"sha256-{digest}",
    )
