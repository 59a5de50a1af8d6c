"""How the parties talk: Flower's gRPC transport (server here, sites as processes or remote).

* :func:`serve_grpc` — a Flower gRPC server (``flwr.server.start_server``; optional TLS)
  driving a :class:`~hidim.federated.server.HidimServer`, restoring the process's signal
  handlers afterwards;
* :func:`run_site` — a site's Flower gRPC client (``flwr.client.start_client``);
* :func:`run_local_grpc` — both on this machine: the server in this process, each site in
  its own process started from a forkserver that has imported hidim once.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import socket
from collections.abc import Iterator, Sequence
from typing import Any

from flwr.server import ServerConfig

from hidim.errors import FederatedError
from hidim.federated.client import SiteClient
from hidim.federated.server import HidimServer
from hidim.federated.sites import Site

__all__ = ["quiet_flower", "serve_grpc", "run_site", "run_local_grpc", "free_address"]

_SIGNALS = tuple(
    s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGQUIT")) if s is not None
)


@contextlib.contextmanager
def quiet_flower(verbose: bool) -> Iterator[None]:
    """Flower logs every message at INFO; keep errors only unless ``verbose``."""
    logger = logging.getLogger("flwr")
    level = logger.level
    if not verbose:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _kept_signal_handlers() -> Iterator[None]:
    """``flwr.server.start_server`` installs exit handlers; put the previous ones back."""
    saved = {s: signal.getsignal(s) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, handler in saved.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(s, handler)


def free_address(host: str = "127.0.0.1") -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return f"{host}:{sock.getsockname()[1]}"


def _site_process(address: str, site: Site, threads: int, verbose: bool, wait: float) -> None:
    """Entry point of a site's process in a local gRPC federation."""
    import torch

    torch.set_num_threads(max(1, threads))
    run_site(site, server_address=address, max_wait_time=wait, verbose=verbose)


def run_site(
    site: Site,
    *,
    server_address: str,
    root_certificates: bytes | None = None,
    max_wait_time: float | None = 600.0,
    verbose: bool = False,
) -> None:
    """Take part in a federation as ``site`` until the server ends it (Flower gRPC client).

    Args:
        site: This hospital (name, store, optional patient subset).
        server_address: ``host:port`` of the coordinator.
        root_certificates: PEM bytes of the CA that signed the server's certificate (TLS);
            ``None``: an insecure channel (only inside a trusted network or an SSH tunnel).
        max_wait_time: Seconds to keep retrying the connection (``None``: forever).
        verbose: Show Flower's own log.
    """
    from flwr.client import start_client

    client = SiteClient(site=site).to_client()
    with quiet_flower(verbose):
        start_client(
            server_address=server_address,
            client=client,
            root_certificates=root_certificates,
            insecure=root_certificates is None,
            max_wait_time=max_wait_time,
        )


def serve_grpc(
    server: HidimServer, rounds: int, address: str, certificates: tuple[bytes, bytes, bytes] | None
) -> None:
    from flwr.server import start_server

    with _kept_signal_handlers():
        start_server(
            server_address=address,
            server=server,
            config=ServerConfig(num_rounds=rounds),
            certificates=certificates,
        )


def _process_context() -> Any:
    """A clean (fork-free) start method: a forkserver that imported hidim once, else spawn.

    Forking this process could copy a half-initialised thread pool or gRPC state into the
    sites; a forkserver is a fresh single-threaded process whose preloaded imports every
    site inherits, so K sites cost one import instead of K.
    """
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["hidim.federated.transport"])
        return ctx
    return mp.get_context("spawn")


def run_local_grpc(
    server: HidimServer, sites: Sequence[Site], rounds: int, verbose: bool, wait: float
) -> None:
    address = free_address()
    ctx = _process_context()
    threads = max(1, (os.cpu_count() or 1) // max(1, len(sites)))
    procs = [
        ctx.Process(
            target=_site_process,
            args=(address, site, threads, verbose, wait),
            name=f"hidim-site-{site.name}",
            daemon=False,  # a site may start DataLoader workers
        )
        for site in sites
    ]
    for p in procs:
        p.start()

    def dead() -> str | None:
        gone = {p.name: p.exitcode for p in procs if not p.is_alive()}
        return f"site processes exited before connecting: {gone}" if gone else None

    server.abort_check = dead
    try:
        serve_grpc(server, rounds, address, None)
    finally:
        for p in procs:
            p.join(timeout=60)
        for p in procs:
            if p.is_alive():  # a site that never connected: stop our own child process
                p.terminate()
                p.join(timeout=10)
    codes = {p.name: p.exitcode for p in procs}
    if server.error is None and any(c != 0 for c in codes.values()):
        server.error = FederatedError(f"site processes ended abnormally: {codes}")
