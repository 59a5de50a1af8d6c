"""``hidim audit RUN``: the subgroup audit of a training run's predictions, with forest plots.

:func:`audit_run` reads a run's ``predictions.parquet`` (test split by default), infers the
task from its config, runs :func:`hidim.evaluate.subgroup.subgroup_audit` by each requested
attribute / intersection and writes ``RUN/audit/`` (``summary.json``, ``table.csv``, one
forest plot per metric); :func:`plot_forest` draws one metric's groups with their CIs.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hidim.errors import EvaluationError
from hidim.evaluate.subgroup import (
    AuditResult,
    _is_binary,
    subgroup_audit,
)

__all__ = ["plot_forest", "audit_run"]


def plot_forest(
    result: AuditResult, metric: str, path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Forest plot of one metric: each group's estimate and CI, the overall value dashed.

    Small groups are drawn hollow and labelled "(small n)". Written atomically as PNG.
    """
    import io

    from matplotlib.figure import Figure

    from hidim.provenance import atomic_write_bytes

    t = result.table[result.table["metric"] == metric]
    if t.empty:
        raise EvaluationError(
            f"metric {metric!r} is not in the audit; available: {sorted(set(result.table['metric']))}"
        )
    overall = t[t["group"] == "overall"]["estimate"]
    groups = t[t["group"] != "overall"].reset_index(drop=True)
    fig = Figure(figsize=(6.4, 0.34 * len(groups) + 1.3))
    ax = fig.subplots()
    y = np.arange(len(groups))[::-1]
    for yi, r in zip(y, groups.itertuples(index=False), strict=True):
        if r.estimate is None or not np.isfinite(r.estimate):
            ax.text(0.0, yi, "  undefined", va="center", fontsize=7, color="#a00",
                    transform=ax.get_yaxis_transform())  # fmt: skip
            continue
        if r.lower is not None and r.upper is not None:
            ax.plot([r.lower, r.upper], [yi, yi], color="#333", lw=1.4)
        ax.plot([r.estimate], [yi], "o", ms=5, color="#333",
                markerfacecolor="white" if r.small_n else "#333")  # fmt: skip
    if len(overall) and overall.iloc[0] is not None:
        ax.axvline(float(overall.iloc[0]), ls="--", color="#1f77b4", lw=1, label="overall")
        ax.legend(fontsize=7, loc="lower right")
    labels = [
        f"{r.attribute}={r.group} (n={r.n}{', small n' if r.small_n else ''})"
        for r in groups.itertuples(index=False)
    ]
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel(metric)
    ax.set_title(title or f"{metric} by subgroup (95 % bootstrap CI)", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def _infer_task(run_dir: Path, df: pd.DataFrame) -> str:
    cfg_path = run_dir / "config.yaml"
    if cfg_path.is_file():
        import yaml

        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        head = str((cfg.get("task") or {}).get("head", ""))
        threshold = (cfg.get("data") or {}).get("threshold")
        if head in ("cox", "deephit", "discrete_hazard") or "surv" in head:
            return "survival"
        if head in ("binary",) or head.startswith("evidential_class") or threshold is not None:
            return "binary"
        if head == "regression" or head.startswith("evidential_reg"):
            return "regression"
    if {"time", "event"} <= set(df.columns) and df["time"].notna().any():
        return "survival"
    if "target" in df.columns and _is_binary(df["target"]):
        return "binary"
    return "regression"


def audit_run(
    run_dir: str | os.PathLike[str],
    *,
    by: Sequence[str | Sequence[str]] | str = ("sex", "ethnicity", "site"),
    out_dir: str | os.PathLike[str] | None = None,
    task: str | None = None,
    predictions: str | os.PathLike[str] | None = None,
    split: str | None = "test",
    sweep: str | os.PathLike[str] | None = None,
    **audit_kwargs: Any,
) -> AuditResult:
    """Audit a run's predictions and write ``audit/summary.json`` + forest plots.

    Args:
        run_dir: A training run directory holding ``predictions.parquet``.
        by: Attributes / intersections (see :func:`subgroup_audit`).
        out_dir: Output folder (default ``RUN/audit``).
        task: ``binary``/``survival``/``regression``; default from ``config.yaml``'s head.
        predictions: Another predictions Parquet file (default ``RUN/predictions.parquet``).
        split: Audit only the rows of this split (``predictions.parquet`` holds every
            split; the audit belongs on held-out data). ``None``: all rows.
        sweep: A fairness sweep folder (or its ``sweep.json``) from
            :func:`hidim.training.fairness.fairness_sweep`; its trade-off curve is added to
            the summary under ``tradeoff``.
        **audit_kwargs: Passed to :func:`subgroup_audit` (``threshold``, ``reference``,
            ``n_boot``, ``min_n``...).

    Returns:
        The :class:`AuditResult`; files written: ``summary.json``, ``table.csv``,
        ``forest_<metric>.png`` per metric, ``run.json``.
    """
    from hidim.provenance import atomic_write_text, file_sha256, write_run_json

    run = Path(run_dir)
    pred_path = Path(predictions) if predictions is not None else run / "predictions.parquet"
    if not pred_path.is_file():
        raise EvaluationError(
            f"expected predictions at {str(pred_path)!r}, found none; run "
            "`hidim predict RUN STORE` first (or pass predictions=...)"
        )
    df = pd.read_parquet(pred_path)
    if split is not None and "split" in df.columns:
        if not (df["split"] == split).any():
            raise EvaluationError(
                f"{pred_path.name} has no rows of split {split!r} (splits: "
                f"{sorted(df['split'].dropna().unique())}); pass split=None to audit all rows"
            )
        df = df[df["split"] == split]
    task = task or _infer_task(run, df)
    result = subgroup_audit(df, by=by, task=task, **audit_kwargs)
    result.settings["split"] = split
    out = Path(out_dir) if out_dir is not None else run / "audit"
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    for metric in dict.fromkeys(result.table["metric"]):
        name = f"forest_{metric}.png"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plot_forest(result, metric, out / name)
        figures[metric] = name
    summary = result.to_summary() | {"figures": figures, "predictions": pred_path.name}
    if sweep is not None:
        sweep_file = Path(sweep) / "sweep.json" if Path(sweep).is_dir() else Path(sweep)
        if not sweep_file.is_file():
            raise EvaluationError(
                f"no fairness sweep at {str(sweep_file)!r}; run `hidim fairness-sweep` first"
            )
        data = json.loads(sweep_file.read_text(encoding="utf-8"))
        summary["tradeoff"] = {
            "performance_metric": data.get("performance_metric"),
            "disparity_metric": data.get("disparity_metric"),
            "points": data.get("tradeoff", []),
        }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, allow_nan=False))
    atomic_write_text(out / "table.csv", result.table.to_csv(index=False))
    write_run_json(
        out,
        command="audit",
        config=result.settings,
        seed=result.settings.get("seed"),
        input_hashes={"predictions.parquet": file_sha256(pred_path)},
        extra={"n_rows": int(len(result.table)), "n_warnings": len(result.warnings)},
    )
    return result
