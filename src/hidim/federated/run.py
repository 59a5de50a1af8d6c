"""Run a federation: all sites on this machine, the server alone, or one site's client.

* :func:`train_federated` — the server and every site on this machine (a consortium's
  dry run, a simulation with ``--split-by``, the benchmark): over Flower's gRPC transport
  on localhost, each site a separate process (``transport="grpc"``), or in-process without
  a network (``transport="inprocess"``: the same client and strategy objects, called
  directly). Writes the run directory and, because the stores are reachable here,
  predictions and ``metrics.json``.
* :func:`serve_federation` — the coordinator of a real federation: a Flower gRPC server
  (optionally TLS) waiting for the sites; writes the run directory (no data, so no
  predictions).
* :func:`run_site` — one hospital: connect to the coordinator and take part until it ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr.server import SimpleClientManager

from hidim.errors import FederatedError, HidimError
from hidim.federated.client import SiteClient
from hidim.federated.export import FEDERATED_FILE, SITES_DIR, clean_json, write_federated_run
from hidim.federated.parameters import BN_MODES
from hidim.federated.record import evaluate_sites, federated_record, write_federated_run_json
from hidim.federated.server import FederationOutcome, HidimServer, LocalClientProxy
from hidim.federated.sites import Site
from hidim.federated.strategy import STRATEGIES, make_strategy
from hidim.federated.transport import quiet_flower, run_local_grpc, run_site, serve_grpc
from hidim.parallel import progress_bar
from hidim.provenance import atomic_write_text
from hidim.training.config import ExperimentConfig

__all__ = [
    "FederatedResult",
    "TRANSPORTS",
    "train_federated",
    "serve_federation",
    "run_site",
]

TRANSPORTS = ("grpc", "inprocess")


@dataclass(frozen=True)
class FederatedResult:
    """What a federation produced.

    Attributes:
        run_dir: The run directory.
        rounds: Per-round record (site losses/metrics, aggregation weights, seconds).
        final: Per site, the last round's evaluation of the global model (val + test).
        metrics: Contents of ``metrics.json`` (``{}`` when not evaluated).
        seconds: Wall-clock time of the whole federation.
    """

    run_dir: Path
    rounds: list[dict[str, Any]]
    final: dict[str, dict[str, Any]]
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _check(
    rounds: int, local_epochs: int, strategy: str, mu: float, bn: str, transport: str
) -> None:
    if rounds < 1 or local_epochs < 1:
        raise FederatedError(f"rounds and local epochs must be >= 1, got {rounds}, {local_epochs}")
    if strategy not in STRATEGIES:
        raise FederatedError(f"--strategy must be one of {STRATEGIES}, got {strategy!r}")
    if mu < 0:
        raise FederatedError(f"--mu must be >= 0, got {mu}")
    if bn not in BN_MODES:
        raise FederatedError(f"--bn must be one of {BN_MODES}, got {bn!r}")
    if transport not in TRANSPORTS:
        raise FederatedError(f"--transport must be one of {TRANSPORTS}, got {transport!r}")


_OUTPUTS = (
    "config.yaml",
    "preprocessing.json",
    "members.json",
    FEDERATED_FILE,
    "metrics.json",
    "run.json",
    "abstention.json",
    "predictions.parquet",
    "predictions_clips.parquet",
    "predictions.json",
    "survival_curves.parquet",
    "checkpoints",
    SITES_DIR,
)


def _prepare_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse to overwrite a run unless asked; then remove only what a run writes."""
    if (run_dir / "run.json").exists() or (run_dir / FEDERATED_FILE).exists():
        if not overwrite:
            raise FederatedError(
                f"{run_dir} already holds a run; choose a new --out or pass --overwrite"
            )
        for name in _OUTPUTS:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)


def _raise_failure(server: HidimServer) -> FederationOutcome:
    """The outcome, or re-raise what stopped the federation (hidim errors as they are)."""
    if server.error is None and server.outcome is not None:
        return server.outcome
    err = server.error or FederatedError("the federation ended without a model")
    if isinstance(err, (HidimError, KeyboardInterrupt, SystemExit)):
        raise err
    raise FederatedError(f"the federation failed: {type(err).__name__}: {err}") from err


@contextlib.contextmanager
def _server(
    config: ExperimentConfig,
    *,
    expected: Sequence[str] | int,
    rounds: int,
    local_epochs: int,
    strategy: str,
    mu: float,
    bn: str,
    on_round: Callable[[int, dict[str, Any]], None] | None,
    connect_timeout: float,
    show_progress: bool,
) -> Iterator[HidimServer]:
    """The federation's server, with a progress bar advanced after every round."""
    n = expected if isinstance(expected, int) else len(expected)
    with progress_bar(disable=not show_progress) as bar:
        task = bar.add_task("federated rounds", total=rounds)

        def round_done(number: int, entry: dict[str, Any]) -> None:
            bar.advance(task)
            if on_round is not None:
                on_round(number, entry)

        strat = make_strategy(
            name=strategy,
            n_sites=n,
            num_rounds=rounds,
            local_epochs=local_epochs,
            mu=mu,
            bn=bn,
            on_round=round_done,
        )
        yield HidimServer(
            client_manager=SimpleClientManager(),
            strategy=strat,
            config=config,
            expected_sites=expected,
            connect_timeout=connect_timeout,
        )


def train_federated(
    config: ExperimentConfig,
    sites: Sequence[Site],
    out_dir: str | os.PathLike[str],
    *,
    rounds: int,
    local_epochs: int,
    strategy: str = "fedavg",
    mu: float = 0.01,
    bn: str = "global",
    transport: str = "grpc",
    overwrite: bool = False,
    evaluate: bool = True,
    show_progress: bool = True,
    on_round: Callable[[int, dict[str, Any]], None] | None = None,
    verbose: bool = False,
    connect_timeout: float = 300.0,
) -> FederatedResult:
    """Train one model across ``sites`` with every party on this machine.

    Args:
        config: The experiment config (``data.store`` is replaced by the reference store:
            the first site's).
        sites: The sites (:func:`~hidim.federated.sites.sites_from_stores` or
            :func:`~hidim.federated.sites.sites_from_column`).
        out_dir: The run directory.
        rounds: Federated rounds.
        local_epochs: Epochs each site trains per round.
        strategy: ``fedavg`` or ``fedprox``.
        mu: FedProx proximal strength.
        bn: ``global`` (average batch norm) or ``local`` (FedBN).
        transport: ``grpc`` (Flower's gRPC on localhost, one process per site) or
            ``inprocess`` (no network; sites run one after another in this process).
        overwrite: Replace a finished run in ``out_dir``.
        evaluate: Predict every site's store and write ``metrics.json`` (pooled + per site).
        show_progress: A progress bar over rounds.
        on_round: Called after each round with ``(round, record entry)``.
        verbose: Show Flower's log.
        connect_timeout: Seconds to wait for the sites' processes to connect.

    Returns:
        A :class:`FederatedResult`.
    """
    _check(rounds, local_epochs, strategy, mu, bn, transport)
    if not sites:
        raise FederatedError("a federation needs at least one site")
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        raise FederatedError(f"site names must be unique, got {names}")
    run_dir = Path(out_dir)
    _prepare_dir(run_dir, overwrite)
    reference = Path(sites[0].store).resolve()
    config = config.model_copy(update={"data": config.data.model_copy(update={"store": reference})})
    started = time.perf_counter()
    with _server(
        config,
        expected=names,
        rounds=rounds,
        local_epochs=local_epochs,
        strategy=strategy,
        mu=mu,
        bn=bn,
        on_round=on_round,
        connect_timeout=connect_timeout,
        show_progress=show_progress,
    ) as server:
        with quiet_flower(verbose):
            if transport == "inprocess":
                server.set_max_workers(1)  # one Lightning trainer at a time in this process
                for i, site in enumerate(sites):
                    server.client_manager().register(
                        LocalClientProxy(str(i), SiteClient(site=site).to_client())
                    )
                server.fit(rounds, timeout=None)
            else:
                run_local_grpc(server, sites, rounds, verbose, connect_timeout)
    outcome = _raise_failure(server)
    seconds = time.perf_counter() - started
    record = federated_record(
        server,
        sites=[s.describe() for s in sites],
        strategy=strategy,
        mu=mu,
        bn=bn,
        rounds=rounds,
        local_epochs=local_epochs,
        transport=transport,
        seconds=seconds,
    )
    write_federated_run(run_dir, config=config, outcome=outcome, federated=record)
    metrics: dict[str, Any] = {}
    if evaluate:
        metrics = evaluate_sites(run_dir, sites, reference, config)
        metrics["federated"] = {"final": record["final"], "seconds": record["seconds"]}
        import json

        atomic_write_text(run_dir / "metrics.json", json.dumps(clean_json(metrics), indent=2))
    write_federated_run_json(run_dir, config, sites, record, seconds)
    return FederatedResult(
        run_dir=run_dir,
        rounds=record["history"],
        final=record["final"],
        metrics=metrics,
        seconds=seconds,
    )


def serve_federation(
    config: ExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    sites: Sequence[str] | int,
    rounds: int,
    local_epochs: int,
    strategy: str = "fedavg",
    mu: float = 0.01,
    bn: str = "global",
    address: str = "0.0.0.0:8080",
    certificates: tuple[bytes, bytes, bytes] | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_round: Callable[[int, dict[str, Any]], None] | None = None,
    verbose: bool = False,
    connect_timeout: float = 3600.0,
) -> FederatedResult:
    """Coordinate a federation whose sites connect from elsewhere (Flower gRPC server).

    Args:
        config: The experiment config every site will run (sent to them).
        out_dir: The run directory (model, preprocessing, ``federated.json``).
        sites: The site names expected (recommended), or their number.
        address: ``host:port`` to listen on.
        certificates: ``(CA cert, server cert, server key)`` PEM bytes for TLS.
        connect_timeout: Seconds to wait for every site to connect.

    The other arguments are as for :func:`train_federated`.
    """
    _check(rounds, local_epochs, strategy, mu, bn, "grpc")
    run_dir = Path(out_dir)
    _prepare_dir(run_dir, overwrite)
    started = time.perf_counter()
    with _server(
        config,
        expected=sites,
        rounds=rounds,
        local_epochs=local_epochs,
        strategy=strategy,
        mu=mu,
        bn=bn,
        on_round=on_round,
        connect_timeout=connect_timeout,
        show_progress=show_progress,
    ) as server:
        with quiet_flower(verbose):
            serve_grpc(server, rounds, address, certificates)
    outcome = _raise_failure(server)
    seconds = time.perf_counter() - started
    record = federated_record(
        server,
        sites=[{"name": d["site"], "n": d["n"]} for d in outcome.descriptions],
        strategy=strategy,
        mu=mu,
        bn=bn,
        rounds=rounds,
        local_epochs=local_epochs,
        transport="grpc",
        seconds=seconds,
    )
    write_federated_run(run_dir, config=config, outcome=outcome, federated=record)
    write_federated_run_json(run_dir, config, [], record, seconds)
    return FederatedResult(
        run_dir=run_dir, rounds=record["history"], final=record["final"], seconds=seconds
    )
