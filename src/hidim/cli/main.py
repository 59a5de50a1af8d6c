"""The ``hidim`` command line. Thin: each command parses options and calls one library function.

Each stage's commands live in their own module with a ``register(app)`` function; this file
lists them explicitly.
"""

from __future__ import annotations

import typer

from hidim import __version__
from hidim.cli import (
    curate,
    deid,
    dicomweb,
    explain,
    federated,
    phantom,
    pretrain,
    report,
    train,
)

app = typer.Typer(
    name="hidim",
    help=(
        "hidim: clinically translatable AI for high-dimensional medical imaging "
        "(echo cine loops, CT and MR volumes).\n\n"
        "Pipeline: (pacs pull | phantom) → deid → curate → labels import → train → predict → "
        "explain → audit → report. `hidim demo` runs all of it on the built-in phantom."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hidim {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """hidim command line."""


for _module in (dicomweb, phantom, deid, curate, pretrain, train, federated, explain, report):
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
