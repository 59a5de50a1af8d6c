"""Report figures, drawn for clinicians: large labels, plain axis names, colour-blind-safe.

Every function takes section data and returns PNG bytes; :func:`data_uri` turns them into
an ``<img src>`` value so the HTML report stays one self-contained file. Matplotlib is used
through its object API with the Agg canvas only (no ``pyplot``, no global backend state),
so plotting is thread-safe and never opens a window. PNG metadata is stripped, so the same
data gives the same bytes.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hidim.report.sections import (
    Calibration,
    CoveragePoint,
    FrameImportance,
    KMCurve,
    SubgroupRow,
    TradeoffPoint,
)

__all__ = [
    "PALETTE",
    "data_uri",
    "km_plot",
    "reliability_plot",
    "risk_coverage_plot",
    "forest_plot",
    "tradeoff_plot",
    "frame_importance_plot",
]

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
"""Okabe–Ito colours (distinguishable with the common colour-vision deficiencies)."""

_STYLE: Any = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "svg.hashsalt": "hidim",
}


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """``data:`` URI of ``data`` (base64), for an inline ``<img src>``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _figure(width_in: float = 6.4, height_in: float = 4.0) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


RISK_COLOURS = {"low risk": "#009E73", "medium risk": "#E69F00", "high risk": "#D55E00"}
"""Risk groups drawn green → orange → vermillion (low → high), as clinicians expect."""


def km_plot(
    curves: Sequence[KMCurve],
    *,
    logrank_p: float | None = None,
    at_risk_times: Sequence[float] = (),
) -> bytes:
    """Kaplan–Meier survival by predicted-risk group, 95 % bands, and a number-at-risk table.

    Args:
        curves: One step curve per risk group (low → high risk).
        logrank_p: Log-rank test p-value across the groups, shown in the title.
        at_risk_times: Times of the number-at-risk table (each curve's ``at_risk``).
    """
    show_table = bool(at_risk_times) and all(len(c.at_risk) == len(at_risk_times) for c in curves)
    with rc_context(_STYLE):
        height = 4.0 + (0.25 * len(curves) + 0.3 if show_table else 0)
        fig = Figure(figsize=(6.4, height), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        if show_table:
            ax, tab = fig.subplots(2, 1, height_ratios=[4.0, 0.25 * len(curves) + 0.3], sharex=True)
        else:
            ax, tab = fig.add_subplot(), None
        for i, c in enumerate(curves):
            colour = RISK_COLOURS.get(c.group, PALETTE[i % len(PALETTE)])
            t = np.concatenate([[0.0], c.times])
            surv = np.concatenate([[1.0], c.survival])
            ax.step(t, surv, where="post", color=colour, lw=2,
                    label=f"{c.group} (n={c.n}, {c.events} events)")  # fmt: skip
            if c.lower and c.upper:
                lo = np.concatenate([[1.0], c.lower])
                hi = np.concatenate([[1.0], c.upper])
                ax.fill_between(t, lo, hi, step="post", color=colour, alpha=0.10, lw=0)
        ax.set_ylim(0, 1.02)
        ax.set_xlim(left=0)
        ax.set_ylabel("Proportion event-free")
        title = "Outcome by predicted risk group"
        if logrank_p is not None:
            title += f" (log-rank p = {logrank_p:.2g})"
        ax.set_title(title)
        ax.legend(loc="lower left")
        if tab is not None:
            tab.set_ylim(-0.5, len(curves) - 0.5)
            tab.set_yticks(range(len(curves)), [c.group for c in curves][::-1])
            for i, c in enumerate(curves[::-1]):
                colour = RISK_COLOURS.get(c.group, PALETTE[(len(curves) - 1 - i) % len(PALETTE)])
                for x, n in zip(at_risk_times, c.at_risk, strict=True):
                    tab.text(x, i, str(n), ha="center", va="center", fontsize=9, color=colour)
            tab.grid(False)
            tab.tick_params(axis="y", length=0, pad=16)
            for side in ("left", "bottom"):
                tab.spines[side].set_visible(False)
            tab.set_xlabel("Time since the echo (label time units); numbers: patients at risk")
        else:
            ax.set_xlabel("Time since the echo (label time units)")
        return _png(fig)


def reliability_plot(cal: Calibration) -> bytes:
    """Reliability diagram: mean predicted risk vs observed frequency per bin.

    Points on the diagonal are well calibrated; the marker area is proportional to the
    number of patients in the bin.
    """
    with rc_context(_STYLE):
        fig, ax = _figure(5.0, 4.6)
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
        if cal.bins:
            p = np.array([b.predicted for b in cal.bins])
            o = np.array([b.observed for b in cal.bins])
            n = np.array([b.count for b in cal.bins], dtype=float)
            size = 30 + 270 * n / max(n.max(), 1.0)
            ax.plot(p, o, color=PALETTE[0], lw=1.5)
            ax.scatter(p, o, s=size, color=PALETTE[0], alpha=0.8, label="patients (area = count)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        what = "event by the horizon" if cal.kind == "survival" else "positive"
        ax.set_xlabel(f"Predicted probability of {what}")
        ax.set_ylabel("Observed frequency")
        title = "Calibration"
        if cal.horizon is not None:
            title += f" at t = {cal.horizon:.3g}"
        if cal.ece is not None:
            title += f" (ECE = {cal.ece:.3f})"
        ax.set_title(title)
        ax.legend(loc="upper left")
        return _png(fig)


def risk_coverage_plot(
    points: Sequence[CoveragePoint],
    *,
    risk_name: str = "error",
    operating_coverage: float | None = None,
) -> bytes:
    """Risk–coverage curve: the error of the cases the model keeps as it abstains more.

    Args:
        points: (coverage, risk) pairs, any order.
        risk_name: What "risk" measures (e.g. ``"1 − C-index"``, ``"error rate"``).
        operating_coverage: The coverage of the calibrated abstain rule (vertical line).
    """
    with rc_context(_STYLE):
        fig, ax = _figure()
        pts = sorted(points, key=lambda q: q.coverage)
        x = [q.coverage for q in pts]
        y = [q.risk for q in pts]
        ax.plot(x, y, color=PALETTE[0], lw=2, marker="o", ms=3, label="answered cases")
        if pts:
            ax.axhline(pts[-1].risk, color="grey", ls=":", lw=1.2,
                       label="no abstention (all cases)")  # fmt: skip
        if operating_coverage is not None:
            ax.axvline(operating_coverage, color=PALETTE[1], ls="--", lw=1.5,
                       label=f"operating point: answers {operating_coverage:.0%}")  # fmt: skip
        ax.legend(loc="upper left")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, max(y + [1e-3]) * 1.25)
        ax.set_xlabel("Coverage (share of cases the model answers)")
        ax.set_ylabel(f"Risk ({risk_name})")
        ax.set_title("Selective prediction: abstaining on uncertain cases")
        return _png(fig)


def forest_plot(
    rows: Sequence[SubgroupRow],
    *,
    metric: str,
    overall: float | None = None,
    min_n: int = 30,
) -> bytes:
    """Forest plot of one metric per subgroup with 95 % CIs; unreliable groups drawn hollow.

    Args:
        rows: Subgroup rows of the same metric (any attributes).
        metric: The metric name for the axis label.
        overall: The whole-cohort value (vertical reference line).
        min_n: Groups with fewer patients are drawn hollow (and, for performance metrics,
            groups the audit marked ``small_n`` — too few events).
    """
    rows = [r for r in rows if r.estimate.value is not None]
    with rc_context(_STYLE):
        fig, ax = _figure(6.4, max(2.2, 0.36 * len(rows) + 1.5))
        y = np.arange(len(rows))[::-1]
        attrs = list(dict.fromkeys(r.attribute for r in rows))
        for yi, r in zip(y, rows, strict=True):
            colour = PALETTE[attrs.index(r.attribute) % len(PALETTE)]
            v = float(r.estimate.value or 0.0)  # rows without a value were dropped above
            lo, hi = r.estimate.lower, r.estimate.upper
            if lo is not None and hi is not None:
                ax.plot([lo, hi], [yi, yi], color=colour, lw=2)
            hollow = r.n < min_n or (r.small_n and r.kind == "performance")
            ax.plot([v], [yi], "s", ms=8, mfc="white" if hollow else colour, mec=colour, mew=2)
        if overall is not None:
            ax.axvline(overall, color="grey", ls="--", lw=1, label=f"whole cohort = {overall:.3g}")
            ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=1, fontsize=9)
        ax.set_yticks(y, [f"{r.attribute} = {r.group} (n={r.n})" for r in rows])
        ax.set_xlabel(f"{metric}, 95 % CI (hollow: too few patients/events)")
        ax.grid(axis="y", alpha=0)
        ax.set_title(f"{metric} by subgroup", pad=24 if overall is not None else 6)
        return _png(fig)


def tradeoff_plot(
    points: Sequence[TradeoffPoint],
    *,
    performance: str = "performance",
    disparity: str = "disparity",
) -> bytes:
    """Fairness trade-off: overall performance vs disparity for each penalty weight."""
    pts = sorted(points, key=lambda q: q.weight)
    with rc_context(_STYLE):
        fig, ax = _figure()
        ax.plot(
            [q.disparity for q in pts], [q.performance for q in pts], "-o", color=PALETTE[0], lw=2
        )
        for q in pts:
            ax.annotate(
                f"λ={q.weight:g}",
                (q.disparity, q.performance),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=9,
            )
        ax.set_xlabel(f"Disparity between groups ({disparity}; lower is fairer)")
        ax.set_ylabel(f"Overall {performance}")
        ax.set_title("Fairness vs performance as the fairness penalty grows")
        return _png(fig)


def frame_importance_plot(fi: FrameImportance) -> bytes:
    """Per-frame importance curve with the true cardiac phase shaded (when known)."""
    with rc_context(_STYLE):
        fig, ax = _figure(6.4, 3.4)
        frames = np.asarray(fi.frames)
        imp = np.asarray(fi.importance)
        if fi.phase:
            names = sorted(set(fi.phase))
            for k, name in enumerate(names):
                mask = np.array([p == name for p in fi.phase])
                ax.fill_between(
                    frames,
                    0,
                    imp.max() * 1.05 if imp.size else 1,
                    where=mask,
                    step="mid",
                    color=PALETTE[(k + 4) % len(PALETTE)],
                    alpha=0.18,
                    lw=0,
                    label=name,
                )
        ax.plot(frames, imp, color=PALETTE[0], lw=2, marker="o", ms=3, label="importance")
        ax.set_xlabel("Frame")
        ax.set_ylabel("Share of attribution")
        ax.set_ylim(bottom=0)
        ax.set_title("Which frames the model looks at")
        ax.legend(loc="upper right", ncol=3)
        return _png(fig)
