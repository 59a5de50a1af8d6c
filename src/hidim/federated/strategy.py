"""Flower's FedAvg / FedProx with hidim's round configuration, checks and bookkeeping.

:func:`make_strategy` returns a subclass of ``flwr.server.strategy.FedAvg`` (or ``FedProx``,
which only adds ``proximal_mu`` to each site's round configuration) that

* samples every site every round (``fraction_fit = 1``; a federation of hospitals, not of
  phones);
* adds the experiment config, the federation statistics, the round, ``local_epochs`` and
  the BN mode to each ``fit``/``evaluate`` message;
* checks every reply (:func:`hidim.federated.protocol.check_reply`, parameter shapes
  against the layout) and stops on any failure with the site's own message;
* aggregates with Flower's example-weighted average (weights ``n_k / sum n``, ``n_k`` =
  the site's training items) over the replies sorted by site name, so the floating-point
  sum — and therefore the run — does not depend on which site answered first;
* records per round and site: training loss, item count, aggregation weight, validation
  (and, last round, test) metrics and seconds (:class:`FederationRecord`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg, FedProx

from hidim.errors import FederatedError
from hidim.federated import protocol as P
from hidim.federated.parameters import BN_MODES, ParameterLayout

__all__ = ["FederationRecord", "make_strategy", "STRATEGIES", "HidimStrategy"]

STRATEGIES = ("fedavg", "fedprox")


@dataclass
class FederationRecord:
    """What happened, round by round (goes to ``federated.json``)."""

    rounds: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    def round(self, number: int) -> dict[str, Any]:
        """The entry of round ``number`` (created on first use)."""
        for entry in self.rounds:
            if entry["round"] == number:
                return entry
        entry = {"round": number, "sites": {}, "weights": {}}
        self.rounds.append(entry)
        return entry

    def receive(self, kind: str, site: str, *, round_: int | None, **facts: Any) -> None:
        """Log one received message (what it carried, never its values)."""
        self.received.append({"kind": kind, "site": site, "round": round_, **facts})


def _failure_text(failures: list[Any]) -> str:
    parts = []
    for f in failures:
        if isinstance(f, BaseException):
            parts.append(f"{type(f).__name__}: {f}")
        else:
            proxy, res = f
            parts.append(f"client {proxy.cid}: {getattr(res, 'status', res)}")
    return "; ".join(parts)


class HidimStrategy:
    """Mixin with hidim's behaviour; combined with ``FedAvg``/``FedProx`` by :func:`make_strategy`."""

    record: FederationRecord
    layout: ParameterLayout | None
    initial_parameters: Parameters | None
    site_batchnorm: dict[str, dict[str, np.ndarray]]
    base_config: dict[str, Scalar]
    num_rounds: int
    on_round: Callable[[int, dict[str, Any]], None] | None
    _round_started: float

    def _hidim_setup(
        self,
        *,
        num_rounds: int,
        local_epochs: int,
        bn: str,
        on_round: Callable[[int, dict[str, Any]], None] | None,
    ) -> None:
        if bn not in BN_MODES:
            raise FederatedError(f"bn must be one of {BN_MODES}, received {bn!r}")
        self.record = FederationRecord()
        self.site_batchnorm: dict[str, dict[str, np.ndarray]] = {}
        self.layout = None
        self.num_rounds = int(num_rounds)
        self.local_epochs = int(local_epochs)
        self.bn = bn
        self.base_config = {}
        self.on_round = on_round
        self._round_started = time.perf_counter()

    def start(
        self,
        *,
        layout: ParameterLayout,
        initial: Parameters,
        config_text: str,
        statistics_text: str,
    ) -> None:
        """Set what the rounds need once the federation statistics exist."""
        self.layout = layout
        self.initial_parameters = initial
        self.base_config = {
            P.CONFIG_KEY: config_text,
            P.STATISTICS_KEY: statistics_text,
            "bn": self.bn,
        }

    # ---- configure ------------------------------------------------------------------------------
    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Every site, with hidim's round configuration."""
        self._round_started = time.perf_counter()
        pairs = super().configure_fit(server_round, parameters, client_manager)  # type: ignore[misc]
        extra = {
            **self.base_config,
            "server_round": server_round,
            "local_epochs": self.local_epochs,
        }
        return [(c, FitIns(ins.parameters, {**ins.config, **extra})) for c, ins in pairs]

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        """Every site evaluates the new global model (test split too in the last round)."""
        pairs = super().configure_evaluate(server_round, parameters, client_manager)  # type: ignore[misc]
        extra = {
            **self.base_config,
            P.PHASE_KEY: P.ROUND,
            "server_round": server_round,
            "final": server_round == self.num_rounds,
        }
        return [(c, EvaluateIns(ins.parameters, {**ins.config, **extra})) for c, ins in pairs]

    # ---- aggregate ------------------------------------------------------------------------------
    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[Any],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Check, log and average the sites' parameters (example-weighted, sorted by site)."""
        if failures:
            raise FederatedError(f"round {server_round}: fit failed: {_failure_text(failures)}")
        if self.layout is None:
            raise FederatedError("the strategy was not started (no parameter layout)")
        entry = self.record.round(server_round)
        named = []
        for proxy, res in results:
            site = P.check_reply("fit", res.metrics)
            arrays = parameters_to_ndarrays(res.parameters)
            self.layout.check(arrays, source=f"site {site!r} (round {server_round})")
            if res.num_examples <= 0:
                raise FederatedError(f"site {site!r} trained on 0 examples in round {server_round}")
            self.record.receive(
                "fit",
                site,
                round_=server_round,
                n_arrays=len(arrays),
                shapes=[list(a.shape) for a in arrays],
                dtypes=sorted({str(a.dtype) for a in arrays}),
                num_examples=int(res.num_examples),
                metric_keys=sorted(res.metrics),
            )
            entry["sites"].setdefault(site, {}).update(
                {
                    "n_train": int(res.num_examples),
                    "train_loss": float(res.metrics.get("train_loss", np.nan)),
                    "fit_seconds": float(res.metrics.get("seconds", np.nan)),
                }
            )
            if self.bn == "local":  # FedBN: each site's own BN, for its personal model
                self.site_batchnorm[site] = {
                    k: a
                    for k, a in zip(self.layout.keys, arrays, strict=True)
                    if k in self.layout.batchnorm
                }
            named.append((site, proxy, res))
        names = [s for s, _, _ in named]
        if len(set(names)) != len(names):
            raise FederatedError(f"two clients answered as the same site: {sorted(names)}")
        named.sort(key=lambda t: t[0])
        total = sum(res.num_examples for _, _, res in named)
        entry["weights"] = {site: res.num_examples / total for site, _, res in named}
        return super().aggregate_fit(  # type: ignore[misc]
            server_round, [(proxy, res) for _, proxy, res in named], []
        )

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[Any],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Log each site's metrics; the loss is the val-item-weighted mean of site losses."""
        if failures:
            raise FederatedError(
                f"round {server_round}: evaluation failed: {_failure_text(failures)}"
            )
        entry = self.record.round(server_round)
        total, weighted = 0, 0.0
        for _, res in results:
            site = P.check_reply(P.ROUND, res.metrics)
            self.record.receive(
                "evaluate",
                site,
                round_=server_round,
                num_examples=int(res.num_examples),
                metric_keys=sorted(res.metrics),
            )
            values = {k: v for k, v in res.metrics.items() if k != "site"}
            entry["sites"].setdefault(site, {}).update(values)
            if res.num_examples > 0:
                total += res.num_examples
                weighted += res.num_examples * float(res.loss)
        loss = weighted / total if total else None
        entry["val_loss"] = loss
        entry["seconds"] = round(time.perf_counter() - self._round_started, 3)
        if self.on_round is not None:
            self.on_round(server_round, entry)
        return loss, {}


class _HidimFedAvg(HidimStrategy, FedAvg):
    pass


class _HidimFedProx(HidimStrategy, FedProx):
    pass


def make_strategy(
    *,
    name: str,
    n_sites: int,
    num_rounds: int,
    local_epochs: int,
    mu: float = 0.01,
    bn: str = "global",
    on_round: Callable[[int, dict[str, Any]], None] | None = None,
) -> FedAvg:
    """A FedAvg or FedProx strategy over exactly ``n_sites`` sites.

    Args:
        name: ``fedavg`` or ``fedprox``.
        n_sites: Number of sites (all of them train and evaluate every round).
        num_rounds: Rounds (the last one also evaluates the test split).
        local_epochs: Local epochs per round.
        mu: FedProx proximal strength (ignored by FedAvg).
        bn: ``global`` or ``local`` (FedBN; see :mod:`hidim.federated.parameters`).
        on_round: Called after each round with ``(round, record entry)`` (progress).
    """
    if name not in STRATEGIES:
        raise FederatedError(f"strategy must be one of {STRATEGIES}, received {name!r}")
    if n_sites < 1 or num_rounds < 1 or local_epochs < 1:
        raise FederatedError(
            f"need >= 1 site, round and local epoch; received {n_sites}, {num_rounds}, "
            f"{local_epochs}"
        )
    if mu < 0:
        raise FederatedError(f"FedProx mu must be >= 0, received {mu}")
    common: dict[str, Any] = {
        "fraction_fit": 1.0,
        "fraction_evaluate": 1.0,
        "min_fit_clients": n_sites,
        "min_evaluate_clients": n_sites,
        "min_available_clients": n_sites,
        "accept_failures": False,
    }
    strategy: FedAvg
    if name == "fedprox":
        strategy = _HidimFedProx(proximal_mu=float(mu), **common)
    else:
        strategy = _HidimFedAvg(**common)
    strategy._hidim_setup(  # type: ignore[attr-defined]
        num_rounds=num_rounds, local_epochs=local_epochs, bn=bn, on_round=on_round
    )
    return strategy
