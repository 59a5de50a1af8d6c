"""Subgroup audit: performance per demographic group and intersection, with bootstrap CIs,
differences and ratios against the overall cohort or a reference group, and small-n
warnings instead of silent NaNs.

Fairlearn's :class:`~fairlearn.metrics.MetricFrame` does the disaggregation (groups and
intersections of several sensitive features). It is extended to survival and to any
metric on several columns by handing it *row indices* as ``y_true``: each metric receives
the indices of one group's rows and reads whatever arrays it needs (time, event, score,
abstain...). Confidence intervals come from one stratified bootstrap per attribute
(:func:`hidim.evaluate.bootstrap.bootstrap_ci`, resampling within each group so group sizes
stay fixed): every replicate recomputes all groups and the overall value together, so a
group's difference from the overall (or from the reference group) has a *paired* interval.

Metrics (``task`` → metrics, each where its inputs exist):

* every task: ``abstention_rate`` (column ``abstain``);
* ``binary``: ``auroc``, ``brier``, ``ece`` (10 equal-width bins), ``tpr``, ``fpr``,
  ``selection_rate`` at the operating point ``threshold``;
* ``survival``: ``c_index`` (Harrell), ``event_rate``; plus the binary metrics when a
  binary ``target`` column is also present;
* ``regression``: ``mae``.

A group whose size is below ``min_n`` (or with fewer than ``min_events`` events/positives
where the metric needs them) is marked ``small_n`` and listed in the warnings; a metric that
is undefined in a group (e.g. AUROC with one class) is ``None`` with a ``note`` saying why.

Forest plots and the run-directory entry point (``hidim audit RUN``) live in
:mod:`hidim.evaluate.subgroup_run`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hidim.errors import EvaluationError
from hidim.evaluate.bootstrap import bootstrap_ci
from hidim.evaluate.calibration import expected_calibration_error
from hidim.evaluate.classification import mae, rank_auroc
from hidim.evaluate.concordance import concordance_index

__all__ = [
    "AGE_EDGES",
    "TASK_METRICS",
    "add_age_band",
    "parse_by",
    "subgroup_metrics",
    "AuditResult",
    "subgroup_audit",
]

AGE_EDGES: tuple[float, ...] = (0, 40, 50, 60, 70, 80, np.inf)
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("auroc", "brier", "ece", "tpr", "fpr", "selection_rate", "abstention_rate"),
    "survival": ("c_index", "event_rate", "abstention_rate"),
    "regression": ("mae", "abstention_rate"),
}
_BINARY_EXTRA = ("auroc", "tpr", "fpr")
MISSING = "missing"
IndexMetric = Callable[[np.ndarray], float]


# --- groups ----------------------------------------------------------------------------


def add_age_band(
    df: pd.DataFrame,
    *,
    column: str = "age",
    edges: Sequence[float] = AGE_EDGES,
    name: str = "age_band",
) -> pd.DataFrame:
    """A copy of ``df`` with an age-band column (``"<40"``, ``"40-49"``, ..., ``"80+"``)."""
    if column not in df.columns:
        raise EvaluationError(
            f"age bands need an {column!r} column; the table has {list(df.columns)}"
        )
    e = list(edges)
    if len(e) < 2 or any(b <= a for a, b in zip(e, e[1:], strict=False)):
        raise EvaluationError(f"age edges must increase, got {e}")

    def label(lo: float, hi: float) -> str:
        if lo <= 0:
            return f"<{hi:g}"
        if not np.isfinite(hi):
            return f"{lo:g}+"
        return f"{lo:g}-{hi - 1:g}"

    labels = [label(a, b) for a, b in zip(e, e[1:], strict=False)]
    out = df.copy()
    out[name] = pd.cut(df[column].astype(float), bins=e, labels=labels, right=False).astype(object)
    return out


def parse_by(by: Sequence[str | Sequence[str]] | str) -> list[tuple[str, ...]]:
    """Attributes to audit: ``"sex,ethnicity"``, ``["sex", "sex*ethnicity"]`` or tuples.

    ``a*b`` (or a tuple) is the intersection of ``a`` and ``b``.
    """
    items = by.split(",") if isinstance(by, str) else list(by)
    out = []
    for item in items:
        parts = tuple(p.strip() for p in item.split("*")) if isinstance(item, str) else tuple(item)
        if not parts or any(not p for p in parts):
            raise EvaluationError(
                f"bad subgroup attribute {item!r}; use e.g. 'sex' or 'sex*ethnicity'"
            )
        out.append(parts)
    if not out:
        raise EvaluationError("give at least one attribute to audit, e.g. by=['sex']")
    return out


# --- metrics on row indices ------------------------------------------------------------


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Rank AUROC (:func:`hidim.evaluate.classification.rank_auroc`: the bootstrap calls it
    thousands of times, and :func:`~hidim.evaluate.classification.auroc` validates through
    scikit-learn, ~1 ms); raises when one class is missing (the guard records why)."""
    value = rank_auroc(y, s)
    if math.isnan(value):
        raise EvaluationError("AUROC needs both classes")
    return value


def subgroup_metrics(
    df: pd.DataFrame,
    *,
    task: str,
    score: str = "score",
    threshold: float | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, IndexMetric]:
    """Metrics of ``task`` as functions of row indices into ``df`` (for MetricFrame/bootstrap).

    Each returns ``nan`` when undefined on the rows it gets (one class, no comparable pair).

    Raises:
        EvaluationError: Unknown task/metric, or a needed column is missing.
    """
    if task not in TASK_METRICS:
        raise EvaluationError(f"unknown task {task!r}; expected one of {list(TASK_METRICS)}")
    if score not in df.columns:
        raise EvaluationError(f"predictions need a {score!r} column; got {list(df.columns)}")
    s = df[score].to_numpy(float)
    has_binary = "target" in df.columns and _is_binary(df["target"])
    names = list(metrics) if metrics is not None else list(TASK_METRICS[task])
    if metrics is None and task == "survival" and has_binary:
        names += [m for m in _BINARY_EXTRA if m not in names]
    if metrics is None and "abstain" not in df.columns:
        names.remove("abstention_rate")
    fns: dict[str, IndexMetric] = {}
    prob = bool(np.all((s >= 0) & (s <= 1)))
    thr = threshold if threshold is not None else (0.5 if prob else None)
    for name in names:
        fns[name] = _make_metric(name, df, s, thr, prob, has_binary)
    return fns


def _is_binary(col: pd.Series) -> bool:
    values = col.dropna()
    if values.empty or not (
        pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
    ):
        return False
    return set(np.unique(values.to_numpy(float)).tolist()) <= {0.0, 1.0}


def _need(df: pd.DataFrame, *cols: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise EvaluationError(
            f"this metric needs columns {missing}; the predictions have {list(df.columns)}"
        )


def _make_metric(
    name: str, df: pd.DataFrame, s: np.ndarray, thr: float | None, prob: bool, has_binary: bool
) -> IndexMetric:
    def guard(fn: Callable[[np.ndarray], float]) -> IndexMetric:
        def wrapped(idx: np.ndarray) -> float:
            idx = np.asarray(idx, dtype=int)
            if idx.size == 0:
                return float("nan")
            try:
                return float(fn(idx))
            except (EvaluationError, ValueError, ZeroDivisionError):
                return float("nan")

        return wrapped

    if name == "abstention_rate":
        _need(df, "abstain")
        a = df["abstain"].fillna(False).to_numpy(bool)
        return guard(lambda i: a[i].mean())
    if name == "c_index":
        _need(df, "time", "event")
        t, e = df["time"].to_numpy(float), df["event"].to_numpy(bool)
        return guard(lambda i: concordance_index(t[i], e[i], s[i]) if e[i].any() else np.nan)
    if name == "event_rate":
        _need(df, "event")
        e = df["event"].to_numpy(bool)
        return guard(lambda i: e[i].mean())
    if name == "mae":
        _need(df, "target")
        y = df["target"].to_numpy(float)
        return guard(lambda i: mae(y[i], s[i]))
    if name in ("auroc", "brier", "ece", "tpr", "fpr", "selection_rate"):
        _need(df, "target")
        if not has_binary:
            raise EvaluationError(f"{name} needs a binary 0/1 target column")
        y = df["target"].to_numpy(float).astype(bool)
        if name == "auroc":
            return guard(lambda i: _auroc(y[i], s[i]))
        if name in ("brier", "ece"):
            if not prob:
                raise EvaluationError(f"{name} needs probabilities in [0, 1] in the score column")
            if name == "brier":
                return guard(lambda i: np.mean((s[i] - y[i]) ** 2))
            return guard(lambda i: expected_calibration_error(s[i], y[i], n_bins=10))
        if thr is None:
            raise EvaluationError(
                f"{name} needs an operating point: pass threshold= (scores are not probabilities)"
            )
        pred = s >= thr
        if name == "selection_rate":
            return guard(lambda i: pred[i].mean())
        if name == "tpr":
            return guard(lambda i: pred[i][y[i]].mean() if y[i].any() else np.nan)
        return guard(lambda i: pred[i][~y[i]].mean() if (~y[i]).any() else np.nan)
    raise EvaluationError(
        f"unknown subgroup metric {name!r}; expected one of {sorted({m for v in TASK_METRICS.values() for m in v})}"
    )


# --- the audit -------------------------------------------------------------------------

_UNDEFINED = {
    "auroc": "needs both classes in the group",
    "tpr": "no positives in the group",
    "fpr": "no negatives in the group",
    "c_index": "needs events and comparable pairs in the group",
}


@dataclass(frozen=True)
class AuditResult:
    """Outcome of :func:`subgroup_audit`.

    Attributes:
        table: Long form, one row per (attribute, group, metric), ``group == "overall"``
            rows included: ``attribute, group, metric, n, events, estimate, lower, upper,
            reference, difference, diff_lower, diff_upper, ratio, ratio_lower, ratio_upper,
            small_n, note``.
        warnings: Plain-language warnings (small groups, undefined metrics).
        settings: The audit's parameters (task, threshold, reference, n_boot...).
    """

    table: pd.DataFrame
    warnings: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """Group rows in the report's ``SubgroupRow`` shape (overall rows excluded).

        Undefined values are ``None`` (never NaN).
        """
        out = []
        for r in self.table[self.table["group"] != "overall"].itertuples(index=False):
            diff = None
            if _clean(r.difference) is not None:
                diff = {
                    "value": _clean(r.difference),
                    "lower": _clean(r.diff_lower),
                    "upper": _clean(r.diff_upper),
                }
            events = _clean(r.events)
            out.append(
                {
                    "attribute": r.attribute,
                    "group": r.group,
                    "metric": r.metric,
                    "n": int(r.n),
                    "events": None if events is None else int(events),
                    "estimate": {
                        "value": _clean(r.estimate),
                        "lower": _clean(r.lower),
                        "upper": _clean(r.upper),
                    },
                    "difference": diff,
                    "reference": r.reference,
                    "small_n": bool(r.small_n),
                }
            )
        return out

    def to_summary(self) -> dict[str, Any]:
        """JSON-ready summary (``rows`` for the report, ``table`` with ratios and notes)."""
        table = self.table.astype(object).where(self.table.notna(), None)
        return {
            "schema": "hidim.audit/1",
            "settings": self.settings,
            "attributes": sorted(set(self.table["attribute"]) - {"overall"}),
            "metrics": list(dict.fromkeys(self.table["metric"])),
            "rows": self.rows(),
            "table": table.to_dict(orient="records"),
            "warnings": list(self.warnings),
        }


def _clean(x: Any) -> float | None:
    """A finite float or ``None`` (NaN, None and pandas NA become ``None``)."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _num(x: Any) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _sensitive(df: pd.DataFrame, cols: tuple[str, ...]) -> pd.DataFrame:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise EvaluationError(
            f"cannot audit by {missing}: no such column in the predictions "
            f"(columns: {list(df.columns)}); add demographics to labels.parquet, or use "
            "'age_band' to bin 'age'"
        )
    out = pd.DataFrame(index=df.index)
    for c in cols:
        out[c] = df[c].astype(object).where(df[c].notna(), MISSING).astype(str)
    return out


def _events(df: pd.DataFrame, idx: np.ndarray, task: str) -> int | None:
    if task == "survival" and "event" in df.columns:
        return int(df["event"].to_numpy(bool)[idx].sum())
    if task == "binary" and "target" in df.columns:
        return int(np.nansum(df["target"].to_numpy(float)[idx]))
    return None


def _quantiles(
    x: np.ndarray, alpha: float, max_nan: float
) -> tuple[float | None, float | None, float]:
    bad = ~np.isfinite(x)
    frac = float(bad.mean()) if x.size else 1.0
    if x.size == 0 or frac > max_nan:
        return None, None, frac
    lo, hi = np.quantile(x[~bad], [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi), frac


def subgroup_audit(
    predictions: pd.DataFrame,
    *,
    by: Sequence[str | Sequence[str]] | str,
    task: str,
    score: str = "score",
    threshold: float | None = None,
    metrics: Sequence[str] | None = None,
    reference: str | Mapping[str, str] = "overall",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    min_n: int = 30,
    min_events: int = 10,
    max_undefined: float = 0.1,
) -> AuditResult:
    """Audit performance per subgroup with bootstrap CIs and paired differences.

    Args:
        predictions: One row per case: ``score``, labels (``target`` or ``time``/``event``),
            optional ``abstain``, and the demographic columns named in ``by``
            (``age_band`` is derived from ``age`` when asked for and absent).
        by: Attributes (``"sex"``) and intersections (``"sex*ethnicity"`` or a tuple).
        task: ``binary``, ``survival`` or ``regression``.
        score: Score column (probability for binary; risk, higher = earlier, for survival).
        threshold: Operating point for TPR/FPR/selection rate (default 0.5 when scores are
            probabilities).
        metrics: Metric names (default: :data:`TASK_METRICS` of the task).
        reference: ``"overall"``, ``"largest"`` (the largest group of each attribute), or
            ``{attribute: group}`` (e.g. ``{"ethnicity": "A"}``; other attributes use overall).
        n_boot: Bootstrap replicates (stratified by group).
        alpha: 1 - confidence level.
        seed: Bootstrap seed.
        min_n: Groups smaller than this are flagged ``small_n``.
        min_events: ... and so are groups with fewer events (survival) or positives (binary).
        max_undefined: A CI is reported only if the metric is defined in at least
            ``1 - max_undefined`` of the replicates.

    Returns:
        :class:`AuditResult`.
    """
    from fairlearn.metrics import MetricFrame

    if predictions.empty:
        raise EvaluationError("no predictions to audit (empty table); run hidim predict first")
    attrs = parse_by(by)
    df = predictions.reset_index(drop=True)
    if any("age_band" in a for a in attrs) and "age_band" not in df.columns:
        df = add_age_band(df)
    fns = subgroup_metrics(df, task=task, score=score, threshold=threshold, metrics=metrics)
    names = list(fns)
    n = len(df)
    all_idx = np.arange(n)
    rows: list[dict[str, Any]] = []
    warn: list[str] = []
    overall_point = {m: fns[m](all_idx) for m in names}
    overall_events = _events(df, all_idx, task)
    first = True
    for attr in attrs:
        label = "*".join(attr)
        sf = _sensitive(df, attr)
        mf = MetricFrame(
            metrics={m: (lambda yt, yp, f=fns[m]: f(yt)) for m in names}
            | {"_n": lambda yt, yp: len(yt)},
            y_true=all_idx,
            y_pred=all_idx,
            sensitive_features=sf,
        )
        by_group = mf.by_group
        by_group = by_group[by_group["_n"].fillna(0) > 0]
        keys = [k if isinstance(k, tuple) else (k,) for k in by_group.index]
        group_names = ["|".join(map(str, k)) for k in keys]
        code_of = {g: i for i, g in enumerate(group_names)}
        codes = np.array([code_of["|".join(r)] for r in sf.itertuples(index=False, name=None)])
        sizes = np.bincount(codes, minlength=len(group_names))
        ref_name = _reference(reference, label, group_names, sizes)

        def replicate(
            idx: np.ndarray, codes: np.ndarray = codes, k: int = len(group_names)
        ) -> np.ndarray:
            c = codes[idx]
            vals = [[fns[m](idx[c == g]) for m in names] for g in range(k)]
            vals.append([fns[m](idx) for m in names])
            return np.asarray(vals, float)

        boot = bootstrap_ci(
            lambda idx: replicate(idx).ravel(), all_idx,
            n_boot=n_boot, alpha=alpha, seed=seed, stratify=codes, max_failed_fraction=1.0,
        )  # fmt: skip
        reps = boot.replicates.reshape(-1, len(group_names) + 1, len(names))
        ref_col = len(group_names) if ref_name == "overall" else code_of[ref_name]
        if first:  # overall rows once
            for j, m in enumerate(names):
                lo, hi, _ = _quantiles(reps[:, -1, j], alpha, max_undefined)
                rows.append(
                    _row("overall", "overall", m, n, overall_events, overall_point[m], lo, hi)
                )
            first = False
        for g, gname in enumerate(group_names):
            idx_g = np.flatnonzero(codes == g)
            events = _events(df, idx_g, task)
            small = bool(sizes[g] < min_n or (events is not None and events < min_events))
            if small:
                warn.append(
                    f"{label}={gname}: small group (n={sizes[g]}"
                    + (f", events/positives={events}" if events is not None else "")
                    + f"; thresholds n>={min_n}, events>={min_events}); its estimates are unreliable"
                )
            for j, m in enumerate(names):
                point = _num(by_group.iloc[g][m])
                lo, hi, frac = _quantiles(reps[:, g, j], alpha, max_undefined)
                note = ""
                if point is None:
                    note = f"undefined: {_UNDEFINED.get(m, 'not computable in this group')}"
                    warn.append(f"{label}={gname}: {m} {note}")
                elif lo is None:
                    note = f"no CI: undefined in {frac:.0%} of bootstrap resamples"
                row = _row(label, gname, m, int(sizes[g]), events, point, lo, hi, small, note)
                ref_point = (
                    overall_point[m]
                    if ref_name == "overall"
                    else _num(by_group.iloc[code_of[ref_name]][m])
                )
                row["reference"] = ref_name
                if point is not None and ref_point is not None and np.isfinite(ref_point):
                    d = reps[:, g, j] - reps[:, ref_col, j]
                    with np.errstate(divide="ignore", invalid="ignore"):
                        r = reps[:, g, j] / reps[:, ref_col, j]
                    row["difference"] = point - ref_point
                    row["diff_lower"], row["diff_upper"], _ = _quantiles(d, alpha, max_undefined)
                    if ref_point != 0:
                        row["ratio"] = point / ref_point
                        row["ratio_lower"], row["ratio_upper"], _ = _quantiles(
                            r, alpha, max_undefined
                        )
                rows.append(row)
    table = pd.DataFrame(rows)
    settings = {
        "task": task,
        "score": score,
        "threshold": threshold,
        "reference": reference if isinstance(reference, str) else dict(reference),
        "n_boot": n_boot,
        "alpha": alpha,
        "seed": seed,
        "min_n": min_n,
        "min_events": min_events,
        "by": ["*".join(a) for a in attrs],
        "n": n,
    }
    return AuditResult(table, tuple(dict.fromkeys(warn)), settings)


def _reference(
    reference: str | Mapping[str, str], label: str, groups: list[str], sizes: np.ndarray
) -> str:
    if isinstance(reference, str):
        if reference == "overall":
            return "overall"
        if reference == "largest":
            return groups[int(np.argmax(sizes))]
        raise EvaluationError(
            f"reference must be 'overall', 'largest' or {{attribute: group}}, got {reference!r}"
        )
    ref = reference.get(label)
    if ref is None:
        return "overall"
    if str(ref) not in groups:
        raise EvaluationError(f"reference group {ref!r} not found for {label}; groups: {groups}")
    return str(ref)


def _row(
    attr: str, group: str, metric: str, n: int, events: int | None, point: float | None,
    lo: float | None, hi: float | None, small: bool = False, note: str = "",
) -> dict[str, Any]:  # fmt: skip
    return {
        "attribute": attr,
        "group": group,
        "metric": metric,
        "n": n,
        "events": events,
        "estimate": _num(point) if point is not None else None,
        "lower": lo,
        "upper": hi,
        "reference": None,
        "difference": None,
        "diff_lower": None,
        "diff_upper": None,
        "ratio": None,
        "ratio_lower": None,
        "ratio_upper": None,
        "small_n": small,
        "note": note,
    }
