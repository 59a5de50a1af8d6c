"""``hidim phantom``: generate the synthetic echo cohort with known ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from hidim.errors import HidimError


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise HidimError(f"expected a YAML mapping of phantom options in {str(path)!r}")
    return data


def _print_summary(console: Console, result: Any) -> None:
    summary = result.summary
    table = Table(title="phantom", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("folder", str(result.out_dir))
    table.add_row("patients / series", f"{result.n_patients} / {result.n_series}")
    sites = summary.get("patients_per_site", {})
    table.add_row("sites", ", ".join(f"{k} {v}" for k, v in sites.items()))
    if summary:
        table.add_row(
            "EF < 40 % (true / recorded)",
            f"{summary['ef_lt_40_true']} / {summary['ef_lt_40_recorded']}",
        )
        table.add_row(
            "events (true / recorded)", f"{summary['events_true']} / {summary['events_recorded']}"
        )
        effects = summary.get("effects", {})
        planted = [f"{k}: {v}" if v is not True else k for k, v in effects.items() if v]
        table.add_row("planted effects", ", ".join(planted) or "none")
    if result.n_ood_files:
        table.add_row("OOD files", f"{result.n_ood_files} in {result.ood_dir}")
    table.add_row("labels / truth", f"{result.labels_path.name} / {result.truth_path.name}")
    if result.reused:
        table.add_row("time", "already complete (reused)")
    else:
        table.add_row(
            "time", f"{result.seconds:.1f} s ({result.patients_per_second:.0f} patients/s)"
        )
    console.print(table)
    for failure in result.failures:
        console.print(f"[red]failed[/red] {failure}")


def register(app: typer.Typer) -> None:
    """Add ``hidim phantom`` to the root app."""

    @app.command("phantom")
    def phantom(
        out: Path = typer.Argument(..., help="Output folder (new or empty; re-runs resume)."),
        patients: int | None = typer.Option(
            None, "--patients", "-n", help="Patients (default 50)."
        ),
        seed: int | None = typer.Option(None, "--seed", help="Random seed (default 0)."),
        size: int | None = typer.Option(
            None, "--size", help="Sector depth in pixels (default 64)."
        ),
        shortcut: bool | None = typer.Option(
            None,
            "--shortcut/--no-shortcut",
            help="Plant a bright marker inside the sector at one site, correlated with EF < 40 %.",
        ),
        subgroup_bias: bool | None = typer.Option(
            None,
            "--subgroup-bias/--no-subgroup-bias",
            help="Under-record diagnoses and events for one ethnicity group.",
        ),
        site_shift: bool | None = typer.Option(
            None,
            "--site-shift/--no-site-shift",
            help="Give each site its own fps, gain, noise and tint.",
        ),
        ood: bool | None = typer.Option(
            None,
            "--ood/--no-ood",
            help="Also write OOD inputs (CT volume, natural clip, noise, blank) to OUT/ood.",
        ),
        no_us_regions: bool = typer.Option(
            False, "--no-us-regions", help="Omit SequenceOfUltrasoundRegions (as some scanners do)."
        ),
        rgb: bool = typer.Option(False, "--rgb", help="Write RGB instead of grayscale frames."),
        rle: bool = typer.Option(
            False, "--rle", help="Write RLE Lossless instead of uncompressed."
        ),
        config: Path | None = typer.Option(
            None,
            "--config",
            help="YAML with PhantomConfig fields; command-line options override it.",
        ),
        workers: int = typer.Option(1, "--workers", "-w", help="Processes to use."),
        scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler address."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace a phantom of a different configuration in OUT."
        ),
    ) -> None:
        """Generate the synthetic multi-site echo cohort with known ground truth.

        Writes OUT/dicom (Ultrasound Multi-frame DICOM with PHI in headers and burned-in text),
        OUT/labels.csv (for `hidim labels import`), OUT/truth.json (every generating parameter,
        true outcomes, frame phases, LV areas, named regions) and OUT/run.json. Planted effects
        are off unless asked for. Synthetic data: not a substitute for clinical validation.
        """
        from pydantic import ValidationError

        from hidim.phantom import PhantomConfig, generate

        console = Console()
        options: dict[str, Any] = _load_yaml(config) if config else {}
        for key, value in (("patients", patients), ("seed", seed), ("size", size)):
            if value is not None:
                options[key] = value
        effects = dict(options.get("effects", {}))
        for key, flag in (
            ("shortcut", shortcut),
            ("subgroup_bias", subgroup_bias),
            ("site_shift", site_shift),
            ("ood", ood),
        ):
            if flag is not None:
                effects[key] = flag
        options["effects"] = effects
        if no_us_regions:
            options["include_us_regions"] = False
        if rgb:
            options["color"] = "rgb"
        if rle:
            options["transfer_syntax"] = "rle"
        try:
            cfg = PhantomConfig.model_validate(options)
            result = generate(
                out,
                cfg,
                workers=workers,
                scheduler=scheduler,
                show_progress=True,
                overwrite=overwrite,
            )
        except ValidationError as exc:
            console.print(f"[red]invalid phantom options:[/red] {exc}")
            raise typer.Exit(2) from None
        except HidimError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        _print_summary(console, result)
        if result.failures:
            raise typer.Exit(1)
