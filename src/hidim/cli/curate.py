"""CLI: ``hidim curate``, ``hidim labels import|split``, ``hidim inspect``.

Thin adapters: parse options, call one library function, print a rich summary.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hidim.errors import HidimError

__all__ = ["register"]

_console = Console()

labels_app = typer.Typer(
    name="labels",
    help="Import outcome labels / MD.ai annotations into a store, or re-split it.",
    no_args_is_help=True,
)


def _fail(exc: HidimError) -> typer.Exit:
    _console.print(f"[bold red]error:[/] {escape(str(exc))}")
    return typer.Exit(code=2)


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise typer.BadParameter(
            f"expected --size S or HxW in pixels (e.g. 112 or 480x640), got {text!r}"
        ) from None
    if len(numbers) == 1:
        return numbers[0], numbers[0]
    if len(numbers) == 2:
        return numbers[0], numbers[1]
    raise typer.BadParameter(f"expected --size S or HxW, got {text!r}")


def curate_command(
    paths: list[Path] = typer.Argument(
        ...,
        help="Input files/folders (DICOM, DICOMDIR) followed by the STORE folder (last).",
        metavar="IN... STORE",
        show_default=False,
    ),
    fps: float | None = typer.Option(
        None, "--fps", help="Resample cine loops to this frame rate (Hz), by time."
    ),
    size: str | None = typer.Option(
        None,
        "--size",
        help="Resize frames to S or HxW pixels (aspect kept, padded). Default: native.",
    ),
    intensity: str = typer.Option(
        "auto",
        "--intensity",
        help="auto (CT: HU scaling, others: z-score), none, zscore, percentile[:LO,HI], hu, window:LEVEL,WIDTH.",
    ),
    workers: int = typer.Option(1, "--workers", "-j", help="Processes on this machine."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler address (tcp://host:8786)."
    ),
    allow_identified: bool = typer.Option(
        False,
        "--allow-identified",
        help="Curate input not flagged PatientIdentityRemoved=YES (run `hidim deid` first!).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the patient-level train/val/test split."),
    record_paths: bool = typer.Option(
        False, "--record-paths", help="Store input paths in the ledger (paths may contain PHI)."
    ),
) -> None:
    """Curate DICOM into a store: manifest, ledger, lossless arrays, patient-level splits.

    Re-running on the same inputs resumes: unchanged series are not decoded again.
    Exit code 1 when any input file failed (the store is still written), 2 on an error.
    """
    from hidim.curate import curate

    if len(paths) < 2:
        raise typer.BadParameter("expected at least one input and the STORE folder (last argument)")
    *inputs, store = paths
    try:
        result = curate(
            inputs,
            store,
            fps=fps,
            size=_parse_size(size),
            intensity=intensity,
            workers=workers,
            scheduler=scheduler,
            allow_identified=allow_identified,
            seed=seed,
            record_paths=record_paths,
        )
    except HidimError as exc:
        raise _fail(exc) from None
    table = Table(title=f"curated → {store}")
    for col in ("series", "written", "resumed", "failed", "files ok", "skipped", "files failed"):
        table.add_column(col, justify="right")
    table.add_row(
        str(result.n_series),
        str(result.written),
        str(result.resumed),
        str(len(result.failed)),
        str(result.files.get("ok", 0)),
        str(result.files.get("skipped", 0)),
        str(result.n_failed_files),
    )
    _console.print(table)
    for key, reason in result.failed[:10]:
        _console.print(f"[red]failed[/] {key}: {escape(reason)}")
    if not result.ok:
        _console.print(
            f"[yellow]{result.n_failed_files} input file(s) failed; see `hidim inspect {store}`[/]"
        )
        raise typer.Exit(code=1)


@labels_app.command("import")
def labels_import(
    store: Path = typer.Argument(..., help="The store folder."),
    file: Path = typer.Argument(..., help="CSV/TSV/Parquet of labels, or an MD.ai JSON export."),
    id_map: Path | None = typer.Option(
        None,
        "--id-map",
        help="Re-identification table from `hidim deid --reid-table` (kind,original,pseudonym).",
    ),
    merge: bool = typer.Option(
        False, "--merge", help="Add to existing labels/annotations instead of replacing."
    ),
) -> None:
    """Import patient/study labels (outcomes, time/event, demographics) or MD.ai annotations."""
    from hidim.curate import import_labels, import_mdai

    try:
        if file.suffix.lower() == ".json":
            res = import_mdai(store, file, id_map=id_map, merge=merge)
            _console.print(
                escape(
                    f"annotations: {res.n_written} written from {res.n_annotations} "
                    f"({', '.join(f'{k}: {v}' for k, v in res.by_geometry.items()) or 'none'})"
                )
            )
            unmatched = len(res.unmatched_ids)
            detail = f"MD.ai ids {res.unmatched_ids[:5]}"
        else:
            lab = import_labels(store, file, id_map=id_map, merge=merge)
            _console.print(
                f"labels: {lab.n_written} of {lab.n_rows} rows written; columns {lab.columns}"
            )
            unmatched = len(lab.unmatched_lines)
            detail = f"lines {lab.unmatched_lines[:10]}"
    except HidimError as exc:
        raise _fail(exc) from None
    if unmatched:
        _console.print(f"[yellow]{unmatched} not in the store (not written): {escape(detail)}[/]")


@labels_app.command("split")
def labels_split(
    store: Path = typer.Argument(..., help="The store folder."),
    stratify: str | None = typer.Option(
        None, "--stratify", help="Label column to stratify by (e.g. the outcome)."
    ),
    seed: int = typer.Option(0, "--seed", help="Split seed."),
    fractions: str = typer.Option("0.7,0.15,0.15", "--fractions", help="train,val,test fractions."),
    keep_existing: bool = typer.Option(
        False, "--keep-existing", help="Only assign patients without a split."
    ),
) -> None:
    """Re-assign patient-level train/val/test splits (leak-checked)."""
    from hidim.curate import resplit_store

    try:
        fr = [float(x) for x in fractions.split(",")]
    except ValueError:
        raise typer.BadParameter(
            f"expected three numbers like 0.7,0.15,0.15, got {fractions!r}"
        ) from None
    try:
        counts = resplit_store(
            store, stratify=stratify, fractions=fr, seed=seed, keep_existing=keep_existing
        )
    except HidimError as exc:
        raise _fail(exc) from None
    table = Table(title="splits")
    for col in counts.columns:
        table.add_column(str(col))
    for row in counts.itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    _console.print(table)


def inspect_command(store: Path = typer.Argument(..., help="The store folder.")) -> None:
    """Show a store: its series (modality, view, frames, fps before/after, size, split) and failures."""
    from hidim.store import Store
    from hidim.store.summary import ledger_summary, series_table

    try:
        s = Store(store)
        series = series_table(s)
        counts, problems = ledger_summary(s)
    except HidimError as exc:
        raise _fail(exc) from None
    table = Table(title=f"{escape(str(store))}: {len(series)} series")
    for col in (
        "series",
        "modality",
        "view",
        "layout",
        "frames",
        "fps (orig → stored)",
        "C×H×W",
        "dtype",
        "split",
    ):
        table.add_column(col)
    for r in series.to_dict("records"):
        table.add_row(*(escape(v) for v in _series_cells(r)))
    _console.print(table)
    _console.print("files: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if len(problems):
        pt = Table(title="files not curated")
        for col in ("status", "files", "reason"):
            pt.add_column(col)
        for row in problems.itertuples(index=False):
            pt.add_row(escape(str(row.status)), str(row.files), escape(str(row.reason)))
        _console.print(pt)


def _text(value: object, fmt: str = "{}") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return fmt.format(value)


def _series_cells(r: dict[str, object]) -> list[str]:
    return [
        str(r.get("series_key", "")),
        _text(r.get("modality")),
        _text(r.get("view")),
        _text(r.get("layout")),
        _text(r.get("n_frames")),
        f"{_text(r.get('fps_original'), '{:.4g}')} → {_text(r.get('fps'), '{:.4g}')}",
        f"{_text(r.get('channels'))}×{_text(r.get('rows'))}×{_text(r.get('cols'))}",
        _text(r.get("stored_dtype")),
        _text(r.get("split")),
    ]


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    app.command("curate")(curate_command)
    app.command("inspect")(inspect_command)
    app.add_typer(labels_app, name="labels")
