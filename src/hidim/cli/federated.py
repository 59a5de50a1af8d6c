"""``hidim federated`` (all sites here), ``hidim federated-server`` and ``hidim federated-client``
(a real consortium): thin adapters over :mod:`hidim.federated`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from hidim.errors import HidimError

_console = Console()
_PRIMARY = ("r2", "auroc", "cindex", "accuracy")


def _fail(exc: HidimError) -> None:
    _console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code=2)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _primary(values: dict[str, Any], split: str) -> tuple[str, Any]:
    for name in _PRIMARY:
        if f"{split}_{name}" in values:
            return name, values[f"{split}_{name}"]
    return "loss", values.get(f"{split}_loss")


def _print_round(number: int, entry: dict[str, Any]) -> None:
    parts = []
    for site, values in sorted(entry["sites"].items()):
        name, value = _primary(values, "val")
        parts.append(f"{site} {_fmt(value)}")
    metric = _primary(next(iter(entry["sites"].values()), {}), "val")[0]
    _console.print(
        f"round {number}: val {metric} per site: "
        + " | ".join(parts)
        + f"  ({entry['seconds']:.1f} s)"
    )


def _summary(final: dict[str, Any], weights: dict[str, float], metrics: dict[str, Any]) -> Table:
    table = Table(title="global model per site (last round; centre clips)")
    for col in ("site", "n train", "weight", "val", "test"):
        table.add_column(col)
    for site, values in sorted(final.items()):
        name, val = _primary(values, "val")
        _, test = _primary(values, "test")
        table.add_row(
            site,
            _fmt(values.get("n_train")),
            _fmt(weights.get(site)),
            f"{name} {_fmt(val)}",
            f"{name} {_fmt(test)}",
        )
    test = (metrics.get("test") or {}).get("ci") or {}
    for name in _PRIMARY:
        if name in test:
            ci = test[name]
            table.caption = (
                f"pooled test {name} per study: {ci['estimate']:.3f} "
                f"[{ci['low']:.3f}, {ci['high']:.3f}] (95 % bootstrap CI)"
            )
            break
    return table


def _site_stores(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in values:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(
                f"expected NAME=STORE, got {text!r}", param_hint="--site-store"
            )
        if name in out:
            raise typer.BadParameter(f"site {name!r} given twice", param_hint="--site-store")
        out[name] = path
    return out


def register(app: typer.Typer) -> None:
    """Add ``federated``, ``federated-server`` and ``federated-client`` to the root app."""

    @app.command("federated")
    def federated_cmd(
        config: Path = typer.Argument(..., help="YAML training config (as for `hidim train`)."),
        out: Path = typer.Option(..., "--out", "-o", help="Run directory to create."),
        site_store: list[str] = typer.Option(
            [], "--site-store", help="A site and its own store: NAME=STORE (repeat per site)."
        ),
        split_by: str | None = typer.Option(
            None,
            "--split-by",
            help="Simulate sites by splitting the config's store by this label/manifest "
            "column (e.g. site); one value per patient.",
        ),
        rounds: int = typer.Option(..., "--rounds", "-r", help="Federated rounds."),
        local_epochs: int = typer.Option(
            1, "--local-epochs", "-e", help="Epochs each site trains per round."
        ),
        strategy: str = typer.Option("fedavg", help="fedavg or fedprox."),
        mu: float = typer.Option(
            0.01, help="FedProx proximal strength mu (with --strategy fedprox)."
        ),
        bn: str = typer.Option(
            "global", help="Batch norm: global (averaged) or local (FedBN: stays at each site)."
        ),
        transport: str = typer.Option(
            "grpc",
            help="grpc: Flower's gRPC on localhost, one process per site; inprocess: no "
            "network, sites in turn.",
        ),
        set_: list[str] = typer.Option([], "--set", help="Override a config key (repeatable)."),
        overwrite: bool = typer.Option(False, help="Replace a finished run in --out."),
        verbose: bool = typer.Option(False, help="Show Flower's own log."),
    ) -> None:
        """Train one model across sites that never share images: FedAvg/FedProx over Flower.

        Every party runs on this machine (a consortium's dry run, or a simulation with
        --split-by). Each site trains on its own store; only model tensors, item counts,
        scalar metrics and aggregate statistics reach the server. RUN is a normal hidim
        run (load_run, predict, explain, report work) plus federated.json. For a real
        multi-hospital run use `hidim federated-server` and `hidim federated-client`.
        """
        from hidim.federated import sites_from_column, sites_from_stores, train_federated
        from hidim.training.config import load_config

        if bool(site_store) == bool(split_by):
            raise typer.BadParameter("give either --site-store NAME=STORE ... or --split-by COLUMN")
        try:
            cfg = load_config(config, overrides=set_)
            sites = (
                sites_from_stores(_site_stores(site_store))
                if site_store
                else sites_from_column(cfg.data.store, str(split_by))
            )
            _console.print(
                f"{len(sites)} sites: " + ", ".join(s.name for s in sites) + f"; {transport}"
            )
            result = train_federated(
                cfg,
                sites,
                out,
                rounds=rounds,
                local_epochs=local_epochs,
                strategy=strategy,
                mu=mu,
                bn=bn,
                transport=transport,
                overwrite=overwrite,
                on_round=_print_round,
                verbose=verbose,
            )
        except HidimError as exc:
            _fail(exc)
            return
        weights = result.rounds[-1]["weights"] if result.rounds else {}
        _console.print(_summary(result.final, weights, result.metrics))
        _console.print(f"run written to [bold]{result.run_dir}[/bold] ({result.seconds:.1f} s)")

    @app.command("federated-server")
    def server_cmd(
        config: Path = typer.Argument(..., help="YAML training config, sent to every site."),
        out: Path = typer.Option(..., "--out", "-o", help="Run directory to create."),
        site: list[str] = typer.Option(
            [], "--site", help="Name of a site that must take part (repeat per site)."
        ),
        sites: int | None = typer.Option(None, help="Number of sites (instead of --site names)."),
        rounds: int = typer.Option(..., "--rounds", "-r", help="Federated rounds."),
        local_epochs: int = typer.Option(1, "--local-epochs", "-e", help="Local epochs per round."),
        strategy: str = typer.Option("fedavg", help="fedavg or fedprox."),
        mu: float = typer.Option(0.01, help="FedProx proximal strength."),
        bn: str = typer.Option("global", help="global or local (FedBN)."),
        address: str = typer.Option("0.0.0.0:8080", help="host:port to listen on."),
        ca_cert: Path | None = typer.Option(None, help="TLS: CA certificate (PEM)."),
        server_cert: Path | None = typer.Option(None, help="TLS: this server's certificate."),
        server_key: Path | None = typer.Option(None, help="TLS: this server's private key."),
        wait: float = typer.Option(3600.0, help="Seconds to wait for every site to connect."),
        set_: list[str] = typer.Option([], "--set", help="Override a config key (repeatable)."),
        overwrite: bool = typer.Option(False, help="Replace a finished run in --out."),
        verbose: bool = typer.Option(False, help="Show Flower's own log."),
    ) -> None:
        """Coordinate a federation: wait for the sites, run the rounds, write the model.

        The server holds no data: RUN gets the model, preprocessing.json and
        federated.json (per-round per-site metrics); each site then runs
        `hidim predict RUN ITS_STORE`. With --ca-cert/--server-cert/--server-key the
        gRPC channel is TLS-encrypted (sites pass --root-cert).
        """
        from hidim.federated import serve_federation
        from hidim.training.config import load_config

        tls = (ca_cert, server_cert, server_key)
        if any(tls) and not all(tls):
            raise typer.BadParameter("TLS needs all of --ca-cert, --server-cert, --server-key")
        if bool(site) == (sites is not None):
            raise typer.BadParameter("give the site names (--site NAME ...) or --sites K")
        try:
            cfg = load_config(config, overrides=set_)
            result = serve_federation(
                cfg,
                out,
                sites=list(site) if site else int(sites or 0),
                rounds=rounds,
                local_epochs=local_epochs,
                strategy=strategy,
                mu=mu,
                bn=bn,
                address=address,
                certificates=tuple(p.read_bytes() for p in tls) if all(tls) else None,  # type: ignore[arg-type,union-attr]
                overwrite=overwrite,
                on_round=_print_round,
                verbose=verbose,
                connect_timeout=wait,
            )
        except HidimError as exc:
            _fail(exc)
            return
        weights = result.rounds[-1]["weights"] if result.rounds else {}
        _console.print(_summary(result.final, weights, {}))
        _console.print(f"run written to [bold]{result.run_dir}[/bold] ({result.seconds:.1f} s)")

    @app.command("federated-client")
    def client_cmd(
        server: str = typer.Option(..., "--server", help="host:port of the coordinator."),
        name: str = typer.Option(..., "--name", help="This site's name (as the server expects)."),
        store: Path = typer.Option(..., "--store", help="This site's hidim store."),
        root_cert: Path | None = typer.Option(
            None, help="TLS: the CA certificate that signed the server's (PEM)."
        ),
        wait: float = typer.Option(600.0, help="Seconds to keep retrying the connection."),
        verbose: bool = typer.Option(False, help="Show Flower's own log."),
    ) -> None:
        """Take part in a federation as one hospital, training on STORE locally.

        Images and labels never leave this machine: only model tensors, the number of
        training items, scalar metrics and aggregate statistics (counts, means, quantiles)
        are sent. The experiment config comes from the server.
        """
        from hidim.federated import run_site, sites_from_stores

        try:
            (site,) = sites_from_stores({name: store})
            run_site(
                site,
                server_address=server,
                root_certificates=root_cert.read_bytes() if root_cert else None,
                max_wait_time=wait,
                verbose=verbose,
            )
        except HidimError as exc:
            _fail(exc)
            return
        _console.print(f"site {name}: federation finished")
