"""``hidim deid``: de-identify DICOM (PS3.15 Annex E profile, pseudonyms, burned-in text)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from hidim.errors import HidimError


def _read_lines(path: Path | None) -> list[str]:
    if path is None:
        return []
    return [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _parse_tags(lines: list[str]) -> frozenset[int]:
    from pydicom.datadict import tag_for_keyword

    from hidim.errors import ConfigError

    tags = set()
    for line in lines:
        token = line.split()[0].strip("()").replace(",", "")
        found = tag_for_keyword(token)
        if found is None:
            try:
                found = int(token, 16)
            except ValueError:
                raise ConfigError(
                    f"expected a DICOM keyword or tag (GGGGEEEE) per line of the safe list, got "
                    f"{token!r}; fix the --safe-list file"
                ) from None
        tags.add(int(found))
    return frozenset(tags)


def deid(
    paths: list[Path] = typer.Argument(
        ..., help="Input files/folders (searched recursively), then OUT (the release folder)."
    ),
    key: Path = typer.Option(..., "--key", help="Project key file (keep it secret)."),
    reid_table: Path = typer.Option(
        ..., "--reid-table", help="Re-identification CSV (kind,original,pseudonym); outside OUT."
    ),
    create_key: bool = typer.Option(
        False, "--create-key", help="Create the key file (32 random bytes, mode 0600) if missing."
    ),
    quarantine: Path | None = typer.Option(
        None, "--quarantine", help="Folder for files whose pixels cannot be released safely."
    ),
    retain_dates_modified: bool = typer.Option(
        True,
        "--retain-dates-modified/--no-retain-dates-modified",
        help="Shift dates/times per patient (keeps intervals); off: dates removed.",
    ),
    retain_full_dates: bool = typer.Option(False, help="Keep dates unchanged (not de-identified)."),
    retain_patient_characteristics: bool = typer.Option(
        False, help="Keep age, sex, size, weight, ethnic group."
    ),
    retain_device_identity: bool = typer.Option(False, help="Keep device serials, station names."),
    retain_institution_identity: bool = typer.Option(False, help="Keep institution names."),
    retain_uids: bool = typer.Option(False, help="Keep original UIDs (not de-identified)."),
    clean_descriptors: bool = typer.Option(
        False, help="Keep descriptors made only of imaging words (see docs/deidentify.md)."
    ),
    clean_structured_content: bool = typer.Option(False, help="Keep SR content, text cleaned."),
    safe_list: Path | None = typer.Option(
        None, "--safe-list", help="Keep only the attributes listed (keyword or tag per line)."
    ),
    safe_private: Path | None = typer.Option(
        None, "--safe-private", help="Private creators (one per line) whose blocks are kept."
    ),
    ocr: bool = typer.Option(True, "--ocr/--no-ocr", help="OCR for burned-in text (Tesseract)."),
    pixels: str = typer.Option(
        "auto", help="Pixel check: auto (by modality/flags), all, none (your responsibility)."
    ),
    workers: int = typer.Option(1, "--workers", help="Processes on this machine."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler address."),
    path_log: Path | None = typer.Option(
        None, "--path-log", help="CSV input_id,path kept OUTSIDE OUT (paths may hold names)."
    ),
) -> None:
    """De-identify DICOM files into OUT/<study>/<series>/<instance>.dcm (new UIDs).

    Applies the DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile (Table
    E.1-1, as data) at every nesting depth, removes private tags, overlays and curves, remaps
    UIDs and patient IDs with a keyed hash, shifts dates per patient, and blanks burned-in
    text (ultrasound sector kept bit-identical, OCR elsewhere). Files that cannot be released
    safely go to the quarantine folder. Exit code 1 when any file failed or was quarantined.
    """
    from hidim.deidentify.keys import create_key as make_key
    from hidim.deidentify.pipeline import DeidOptions, deidentify
    from hidim.deidentify.pixels import PixelPolicy
    from hidim.deidentify.profile import ProfileOptions

    console = Console()
    if len(paths) < 2:
        console.print("[red]error:[/red] expected at least one input and OUT; see --help")
        raise typer.Exit(2)
    *inputs, out = paths
    try:
        if not key.exists():
            if not create_key:
                console.print(
                    f"[red]error:[/red] key file {str(key)!r} does not exist. A key makes "
                    "pseudonyms and UIDs consistent across runs and sites; create one with "
                    "--create-key (32 random bytes, mode 0600), keep it secret and outside OUT."
                )
                raise typer.Exit(2)
            make_key(key)
            console.print(f"created key file {str(key)!r} (mode 0600); back it up securely")
        if pixels not in ("auto", "all", "none"):
            console.print(f"[red]error:[/red] --pixels must be auto, all or none, got {pixels!r}")
            raise typer.Exit(2)
        profile = ProfileOptions(
            retain_long_modified_dates=retain_dates_modified and not retain_full_dates,
            retain_long_full_dates=retain_full_dates,
            retain_patient_characteristics=retain_patient_characteristics,
            retain_device_identity=retain_device_identity,
            retain_institution_identity=retain_institution_identity,
            retain_uids=retain_uids,
            clean_descriptors=clean_descriptors,
            clean_structured_content=clean_structured_content,
            retain_safe_private=safe_private is not None,
            safe_private_creators=frozenset(_read_lines(safe_private)),
            safe_list=_parse_tags(_read_lines(safe_list)) if safe_list else None,
        )
        options = DeidOptions(profile=profile, pixels=PixelPolicy(mode=pixels, ocr=ocr))  # type: ignore[arg-type]
        summary = deidentify(
            inputs,
            out,
            key_file=key,
            reid_table=reid_table,
            quarantine_dir=quarantine,
            options=options,
            workers=workers,
            scheduler=scheduler,
            path_log=path_log,
            console=console,
        )
    except HidimError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(
        f"OUT: {summary.out_dir}  audit: {summary.out_dir / 'deid_audit.parquet'}  "
        f"quarantine: {summary.quarantine_dir}"
    )
    if not summary.all_ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    app.command("deid")(deid)
