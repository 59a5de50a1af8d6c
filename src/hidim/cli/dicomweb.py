"""CLI: ``hidim pacs search|pull|push`` — DICOMweb transfer with a PACS.

Thin adapters over :mod:`hidim.ingest.dicomweb`: parse options, call one library function,
print a rich summary. Exit code 1 when any instance failed (or, for push, was refused), 2 on
an error that stops the command (unreachable server, refused access, bad option).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hidim.errors import HidimError

__all__ = ["register"]

_console = Console()

_PACS_HELP = (
    "Exchange studies with a PACS over DICOMweb: search (QIDO-RS), pull identified studies "
    "into a folder for `hidim deid` (WADO-RS), push a de-identified release to a research "
    "PACS (STOW-RS).\n\nURL is the server's DICOMweb root, e.g. "
    "http://pacs:8042/dicom-web (Orthanc) or http://pacs:8080/dcm4chee-arc/aets/DCM4CHEE/rs. "
    "Credentials: --user (password prompted or from HIDIM_PACS_PASSWORD) or --token "
    "(HIDIM_PACS_TOKEN); never put them in the URL. See docs/dicomweb.md."
)

_USER = typer.Option(None, "--user", help="HTTP Basic user (password prompted, or from env).")
_PASSWORD = typer.Option(
    None,
    "--password",
    envvar="HIDIM_PACS_PASSWORD",
    help="HTTP Basic password; prefer the HIDIM_PACS_PASSWORD variable or the prompt.",
    show_default=False,
)
_TOKEN = typer.Option(
    None,
    "--token",
    envvar="HIDIM_PACS_TOKEN",
    help="OAuth2/OIDC bearer token (or the HIDIM_PACS_TOKEN variable).",
    show_default=False,
)
_CA = typer.Option(None, "--ca-bundle", help="CA bundle (PEM) for the hospital's TLS certificates.")
_INSECURE = typer.Option(False, "--insecure", help="Skip TLS verification (test servers only).")
_TIMEOUT = typer.Option(60.0, "--timeout", help="Seconds to wait for the server.")
_PATIENT = typer.Option(None, "--patient-id", help="PatientID filter (wildcards * ?).")
_DATES = typer.Option(
    None, "--date-range", help="StudyDate filter: YYYYMMDD or YYYYMMDD-YYYYMMDD (open ends ok)."
)


def _fail(exc: HidimError) -> typer.Exit:
    _console.print(f"[bold red]error:[/] {escape(str(exc))}")
    return typer.Exit(code=2)


def _auth(
    user: str | None,
    password: str | None,
    token: str | None,
    ca_bundle: Path | None,
    insecure: bool,
    timeout: float,
) -> Any:
    from hidim.ingest.dicomweb import DicomWebAuth

    if user and password is None:
        password = typer.prompt(f"password for {user}", hide_input=True)
    verify: bool | str = False if insecure else (str(ca_bundle) if ca_bundle else True)
    return DicomWebAuth(
        username=user, password=password, token=token, verify=verify, timeout_s=timeout
    )


def _filters(
    patient_id: str | None, date_range: str | None, modality: str | None
) -> dict[str, str]:
    filters = {}
    if patient_id:
        filters["PatientID"] = patient_id
    if date_range:
        filters["StudyDate"] = date_range
    if modality:
        filters["ModalitiesInStudy"] = modality.upper()
    return filters


def _counts_table(title: str, rows: list[dict[str, Any]], statuses: tuple[str, ...]) -> Table:
    counts = Counter(r["status"] for r in rows)
    table = Table(title=title)
    for status in statuses:
        table.add_column(status, justify="right")
    table.add_row(*(str(counts.get(s, 0)) for s in statuses))
    return table


def _print_problems(rows: list[dict[str, Any]], statuses: tuple[str, ...], limit: int = 10) -> None:
    problems = [r for r in rows if r["status"] in statuses]
    if not problems:
        return
    table = Table(title=f"problems (first {min(limit, len(problems))} of {len(problems)})")
    for col in ("status", "instance", "reason"):
        table.add_column(col)
    for row in problems[:limit]:
        where = row.get("path") or row.get("sop_uid") or row.get("study_uid") or ""
        table.add_row(row["status"], escape(str(where)), escape(row["reason"]))
    _console.print(table)


def search_command(
    url: str = typer.Argument(..., help="DICOMweb root URL."),
    patient_id: str | None = _PATIENT,
    modality: str | None = typer.Option(None, "--modality", help="ModalitiesInStudy, e.g. US."),
    date_range: str | None = _DATES,
    limit: int = typer.Option(100, "--limit", help="At most this many studies."),
    user: str | None = _USER,
    password: str | None = _PASSWORD,
    token: str | None = _TOKEN,
    ca_bundle: Path | None = _CA,
    insecure: bool = _INSECURE,
    timeout: float = _TIMEOUT,
) -> None:
    """List matching studies (QIDO-RS): StudyInstanceUID, date, modalities, counts.

    No patient names or IDs are printed. Pass the UIDs to `hidim pacs pull --study`.
    """
    from hidim.ingest.dicomweb import search_studies

    try:
        auth = _auth(user, password, token, ca_bundle, insecure, timeout)
        studies = search_studies(
            url, filters=_filters(patient_id, date_range, modality), limit=limit, auth=auth
        )
    except HidimError as exc:
        raise _fail(exc) from None
    table = Table(title=f"{len(studies)} studies")
    for col in ("StudyInstanceUID", "date", "modalities", "series", "instances"):
        table.add_column(col, justify="right" if col in ("series", "instances") else "left")
    for s in studies:
        table.add_row(
            s.study_uid,
            s.study_date or "",
            "/".join(s.modalities),
            "" if s.n_series is None else str(s.n_series),
            "" if s.n_instances is None else str(s.n_instances),
        )
    _console.print(table)


def pull_command(
    url: str = typer.Argument(..., help="DICOMweb root URL."),
    out: Path = typer.Argument(..., help="Destination folder (identified data: secure storage)."),
    study: list[str] | None = typer.Option(
        None, "--study", help="StudyInstanceUID to pull (repeat for several)."
    ),
    modality: list[str] | None = typer.Option(
        None, "--modality", help="Pull only series of this modality, e.g. US (repeatable)."
    ),
    patient_id: str | None = _PATIENT,
    date_range: str | None = _DATES,
    all_studies: bool = typer.Option(
        False, "--all", help="Without --study or filters: pull every study on the server."
    ),
    workers: int = typer.Option(4, "--workers", "-j", help="Concurrent HTTP connections."),
    user: str | None = _USER,
    password: str | None = _PASSWORD,
    token: str | None = _TOKEN,
    ca_bundle: Path | None = _CA,
    insecure: bool = _INSECURE,
    timeout: float = _TIMEOUT,
) -> None:
    """Pull studies into OUT/<StudyUID>/<SeriesUID>/<SOPUID>.dcm (WADO-RS), as stored.

    Choose studies with --study UID..., or with filters (--patient-id, --date-range,
    --modality), or --all. The transfer syntax the PACS stored is kept (no transcoding).
    Re-running resumes: instances already in OUT are skipped. OUT/pull_ledger.parquet lists
    every instance (ok / skipped / failed + reason); OUT/run.json records the run.
    Next step: `hidim deid OUT RELEASE --key ... --reid-table ...` (the ledger is skipped).
    """
    from hidim.ingest.dicomweb import pull

    filters = _filters(patient_id, date_range, None)
    if study and (filters or all_studies):
        raise typer.BadParameter("expected --study or filters/--all, not both")
    if not study and not filters and not modality and not all_studies:
        raise typer.BadParameter(
            "expected --study UID, a filter (--patient-id/--date-range/--modality), or --all"
        )
    try:
        auth = _auth(user, password, token, ca_bundle, insecure, timeout)
        result = pull(
            url,
            out,
            study_uids=list(study) if study else None,
            filters=None if study else filters,
            modalities=tuple(modality or ()),
            workers=workers,
            auth=auth,
        )
    except HidimError as exc:
        raise _fail(exc) from None
    _console.print(_counts_table(f"pulled → {out}", result.rows, ("ok", "skipped", "failed")))
    _print_problems(result.rows, ("failed",))
    _console.print(f"ledger: {result.ledger_path}")
    if not result.all_ok:
        raise typer.Exit(code=1)


def push_command(
    url: str = typer.Argument(..., help="DICOMweb root URL of the (research) PACS."),
    folder: Path = typer.Argument(..., help="Folder of DICOM files, e.g. a `hidim deid` release."),
    allow_identified: bool = typer.Option(
        False,
        "--allow-identified",
        help="Also send files not marked PatientIdentityRemoved=YES (identified data!).",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Where push_ledger.parquet and run.json go (default FOLDER_push)."
    ),
    batch_size: int = typer.Option(20, "--batch-size", help="Instances per STOW-RS request."),
    skip_existing: bool = typer.Option(
        True,
        "--skip-existing/--resend",
        help="Skip instances the server already has (resume), or send everything again.",
    ),
    user: str | None = _USER,
    password: str | None = _PASSWORD,
    token: str | None = _TOKEN,
    ca_bundle: Path | None = _CA,
    insecure: bool = _INSECURE,
    timeout: float = _TIMEOUT,
) -> None:
    """Push every DICOM file of FOLDER to a PACS (STOW-RS, in batches).

    Safety rule: only files with PatientIdentityRemoved=YES (what `hidim deid` writes) are
    sent; the others are refused (listed, exit code 1) unless --allow-identified.
    """
    from hidim.ingest.dicomweb import push

    ledger_dir = out if out is not None else folder.parent / f"{folder.name}_push"
    try:
        auth = _auth(user, password, token, ca_bundle, insecure, timeout)
        result = push(
            url,
            folder,
            allow_identified=allow_identified,
            skip_existing=skip_existing,
            batch_size=batch_size,
            ledger_dir=ledger_dir,
            auth=auth,
        )
    except HidimError as exc:
        raise _fail(exc) from None
    statuses = ("ok", "skipped", "refused", "failed")
    _console.print(_counts_table(f"pushed {folder} → {url}", result.rows, statuses))
    _print_problems(result.rows, ("refused", "failed"))
    _console.print(f"ledger: {result.ledger_path}")
    if not result.all_ok:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add ``hidim pacs search|pull|push`` to the root app."""
    pacs_app = typer.Typer(name="pacs", help=_PACS_HELP, no_args_is_help=True)
    pacs_app.command("search")(search_command)
    pacs_app.command("pull")(pull_command)
    pacs_app.command("push")(push_command)
    app.add_typer(pacs_app, name="pacs")
