"""``hidim explain``, ``hidim audit``, ``hidim fairness-sweep``: thin adapters over
:mod:`hidim.explain`, :mod:`hidim.evaluate.subgroup` and :mod:`hidim.training.fairness`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from hidim.errors import HidimError

_console = Console()


def _fail(exc: HidimError) -> None:
    _console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code=2)


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _ci(d: dict[str, Any] | None) -> str:
    if not d or d.get("value") is None:
        return "-"
    lo, hi = d.get("lower"), d.get("upper")
    ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
    return f"{d['value']:.3f}{ci}"


def _explain_tables(summary: dict[str, Any]) -> None:
    t = Table(title="Occlusion: performance drop when the region is masked (95 % CI)")
    for col in ("region", "subset", "metric", "drop", "p"):
        t.add_column(col)
    for r in summary.get("occlusion", []):
        p = r.get("p_value")
        t.add_row(r["region"], r.get("subset") or "all", r["metric"], _ci(r["drop"]),
                  "-" if p is None else f"{p:.3g}")  # fmt: skip
    _console.print(t)
    if summary.get("phases"):
        t = Table(title="Cardiac-phase windows: performance drop when occluded")
        for col in ("window", "metric", "drop", "p"):
            t.add_column(col)
        for r in summary["phases"]:
            p = r.get("p_value")
            t.add_row(r["phase"], r["metric"], _ci(r["drop"]), "-" if p is None else f"{p:.3g}")
        _console.print(t)
    t = Table(title="Sanity checks (Adebayo et al.): pass = maps change when learning is destroyed")
    for col in ("method", "test", "similarity", "threshold", "verdict"):
        t.add_column(col)
    for r in summary.get("sanity_checks", []):
        verdict = "[green]pass[/green]" if r["passed"] else "[red]FAIL[/red]"
        sim = "-" if r["similarity"] is None else f"{r['similarity']:.3f}"
        t.add_row(r["method"], r["test"], sim, f"< {r['threshold']}", verdict)
    _console.print(t)
    for f in summary.get("flags", []):
        _console.print(f"[bold red]flag:[/bold red] {f['message']}")
    for n in summary.get("notes", []):
        _console.print(f"[dim]note: {n}[/dim]")


def register(app: typer.Typer) -> None:
    """Add ``explain``, ``audit`` and ``fairness-sweep`` to the root app."""

    @app.command("explain")
    def explain_cmd(
        run: Path = typer.Argument(..., help="A `hidim train` run directory."),
        store: Path | None = typer.Option(None, help="Store to evaluate (default: the run's)."),
        out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (RUN/explain)."),
        methods: str = typer.Option("gradcam,ig", help="Saliency methods, comma-separated."),
        n_cases: int = typer.Option(4, help="Cases to render (half correct, half wrong)."),
        region: list[str] = typer.Option(
            [], "--region", help="Occlusion region (repeatable): phantom names or outside_sector."
        ),
        truth: Path | None = typer.Option(None, help="Phantom truth.json (regions, phases)."),
        reid_table: Path | None = typer.Option(
            None, help="hidim deid re-identification table, to match truth to pseudonyms."
        ),
        n_boot: int = typer.Option(1000, help="Bootstrap replicates of every CI."),
        max_items: int | None = typer.Option(None, help="Evaluate at most this many clips."),
        grid: int = typer.Option(4, help="Grid occlusion map of GRID x GRID cells (0: off)."),
        label_randomisation: bool = typer.Option(
            False, help="Also retrain a copy on permuted labels (data-randomisation test)."
        ),
        chunk_frames: int | None = typer.Option(None, help="Explain long clips in windows."),
        seed: int = typer.Option(0, help="Seed of the bootstrap and randomisations."),
    ) -> None:
        """Test the model's explanations on the test split: sanity-checked saliency maps,
        serial occlusion of regions (shortcut flag), cardiac-phase importance and input-stream
        Shapley values; writes RUN/explain/summary.json, overlays and run.json.
        """
        from hidim.explain.run import explain_run

        try:
            summary = explain_run(
                run, store=store, out_dir=out, truth=truth, reid_table=reid_table,
                methods=tuple(_split(methods)), n_cases=n_cases,
                regions=tuple(region) or None, n_boot=n_boot, max_items=max_items,
                grid=(grid, grid) if grid > 0 else None,
                label_randomisation=label_randomisation, chunk_frames=chunk_frames, seed=seed,
            )  # fmt: skip
        except HidimError as exc:
            _fail(exc)
            return
        _explain_tables(summary)
        _console.print(f"wrote {(out or run / 'explain') / 'summary.json'}")

    @app.command("audit")
    def audit_cmd(
        run: Path = typer.Argument(..., help="A run directory with predictions.parquet."),
        by: str = typer.Option(
            "sex,ethnicity,site", help="Attributes; a*b for intersections, age_band from age."
        ),
        out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (RUN/audit)."),
        split: str = typer.Option("test", help="Split to audit ('all' for every row)."),
        threshold: float | None = typer.Option(None, help="Operating point for TPR/FPR."),
        reference: str = typer.Option("overall", help="'overall', 'largest' or attr=group,..."),
        n_boot: int = typer.Option(1000, help="Bootstrap replicates."),
        min_n: int = typer.Option(30, help="Groups smaller than this are flagged small-n."),
        seed: int = typer.Option(0, help="Bootstrap seed."),
        sweep: Path | None = typer.Option(
            None, help="A `hidim fairness-sweep` folder whose trade-off curve to include."
        ),
    ) -> None:
        """Audit performance per subgroup and intersection with bootstrap CIs, differences
        from the reference, and small-n warnings; writes RUN/audit/summary.json, forest plots
        and run.json.
        """
        from hidim.evaluate.subgroup_run import audit_run

        ref: Any = reference
        if "=" in reference:
            ref = dict(part.split("=", 1) for part in _split(reference))
        try:
            result = audit_run(
                run, by=by, out_dir=out, split=None if split == "all" else split,
                threshold=threshold, reference=ref, n_boot=n_boot, min_n=min_n, seed=seed,
                sweep=sweep,
            )  # fmt: skip
        except HidimError as exc:
            _fail(exc)
            return
        t = Table(title=f"Subgroup audit ({result.settings['task']}, 95 % bootstrap CI)")
        for col in ("attribute", "group", "n", "metric", "estimate", "diff vs ref"):
            t.add_column(col)
        for r in result.rows():
            name = r["group"] + (" (small n)" if r["small_n"] else "")
            t.add_row(r["attribute"], name, str(r["n"]), r["metric"], _ci(r["estimate"]),
                      _ci(r["difference"]))  # fmt: skip
        _console.print(t)
        for w in result.warnings:
            _console.print(f"[yellow]warning:[/yellow] {w}")
        _console.print(f"wrote {(out or run / 'audit') / 'summary.json'}")

    @app.command("fairness-sweep")
    def sweep_cmd(
        config: Path = typer.Argument(..., help="YAML training config with a fairness section."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder for one run per weight."),
        lambdas: str = typer.Option("0,0.5,2,8", help="Penalty weights, comma-separated."),
        set_: list[str] = typer.Option([], "--set", help="Config override (repeatable)."),
    ) -> None:
        """Train once per fairness-penalty weight and plot overall performance against the
        group disparity (sweep.json, tradeoff.png).
        """
        from hidim.training.config import load_config
        from hidim.training.fairness import fairness_sweep

        try:
            cfg = load_config(config, overrides=list(set_))
            result = fairness_sweep(cfg, [float(x) for x in _split(lambdas)], out)
        except HidimError as exc:
            _fail(exc)
            return
        except ValueError as exc:
            _console.print(f"[red]error:[/red] --lambdas must be numbers: {exc}")
            raise typer.Exit(code=2) from None
        t = Table(title=f"{result['kind']} on {result['group']}: trade-off")
        for col in ("λ", result["performance_metric"], result["disparity_metric"]):
            t.add_column(col)
        for p in result["tradeoff"]:
            perf = "-" if p["performance"] is None else f"{p['performance']:.3f}"
            disp = "-" if p["disparity"] is None else f"{p['disparity']:.3f}"
            t.add_row(f"{p['weight']:g}", perf, disp)
        _console.print(t)
