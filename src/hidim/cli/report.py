"""``hidim report RUN`` and ``hidim demo``: thin adapters over the report and demo workflows."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _print_flags(console: Console, flags: tuple, *, limit: int = 12) -> None:  # type: ignore[type-arg]
    if not flags:
        console.print("[green]No automatic flags raised.[/green]")
        return
    table = Table(title="Flags", show_lines=False)
    table.add_column("severity")
    table.add_column("flag")
    table.add_column("evidence")
    for f in flags[:limit]:
        table.add_row(f"[{_SEVERITY_STYLE[f.severity]}]{f.severity}[/]", f.title, f"#{f.evidence}")
    if len(flags) > limit:
        table.add_row("", f"... {len(flags) - limit} more in the report", "")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``hidim report`` and ``hidim demo`` to the root app."""

    @app.command("report")
    def report_cmd(
        run: Path = typer.Argument(
            ..., help="A training run directory (the --out of `hidim train`)."
        ),
        out: Path | None = typer.Option(
            None,
            "--out",
            "-o",
            help="HTML file to write (default RUN/report/report.html); report.json goes beside it.",
        ),
        store: Path | None = typer.Option(
            None, "--store", help="The store the run used (default: from its config)."
        ),
        deid_audit: Path | None = typer.Option(
            None,
            "--deid-audit",
            help="The de-identification audit Parquet (default: the one of the release folder "
            "`hidim curate` read, recorded in the store's run.json).",
        ),
        baseline: Path | None = typer.Option(
            None,
            "--baseline",
            help="A 2-D-per-frame baseline run to compare the video model against.",
        ),
    ) -> None:
        """Write the translational-readiness report of a run: one self-contained HTML file
        (data, model card, performance, uncertainty, explanations, bias, flags) plus
        report.json with every number in it. Sections whose artefacts are missing are shown
        as "not run"."""
        from hidim.report import build_report

        result = build_report(run, out, store=store, deid_audit=deid_audit, baseline_run=baseline)
        console = Console()
        _print_flags(console, result.flags)
        console.print(f"report: [bold]{result.html_path}[/bold]\nnumbers: {result.json_path}")

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(
            Path("demo-out"), "--out", "-o", help="Folder for every stage's outputs."
        ),
        quick: bool = typer.Option(
            False, "--quick", help="Small cohort and short training (about 2 minutes)."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the phantom and of training."),
        baseline: bool = typer.Option(
            False,
            "--baseline",
            help="Also train the 2-D-per-frame baseline (ResNet-18 per frame; several minutes).",
        ),
        threads: int = typer.Option(
            1,
            "--threads",
            min=1,
            help="CPU threads for torch. Results are identical for one seed only at one "
            "thread count; the default 1 makes them the same on every machine.",
        ),
    ) -> None:
        """Run the whole pipeline on the built-in phantom: generate echo DICOM with PHI, a
        planted shortcut and a planted subgroup bias → de-identify → curate → import labels →
        pretrain the video encoder on EF → train a survival model with uncertainty → predict →
        explain → audit → report.
        Prints the report's path and headline numbers."""
        from hidim.workflows.demo import run_demo

        result = run_demo(out, quick=quick, seed=seed, baseline=baseline or None, threads=threads)
        raise typer.Exit(code=0 if result.ok else 1)
