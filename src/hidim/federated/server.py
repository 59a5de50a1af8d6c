"""``HidimServer``: Flower's ``Server`` with hidim's statistics phases around the FedAvg rounds.

:meth:`HidimServer.fit` runs, over whatever transport connects the sites (Flower's gRPC, or
:class:`LocalClientProxy` in-process):

1. wait until every expected site is connected;
2. **describe** (``get_properties``): each site sends counts and moments; the server merges
   them (:func:`~hidim.federated.statistics.merge_descriptions`), seeds the RNG with
   ``trainer.seed``, builds the global model and hands its initial tensors to the strategy;
3. the **rounds** (Flower's own ``Server.fit``: ``fit`` on every site, example-weighted
   aggregation, ``evaluate`` on every site);
4. **finalise** and **reference** (``evaluate`` messages carrying the final weights): Cox
   baseline and feature densities from aggregates (:mod:`hidim.federated.finalise`).

Any failure is recorded in :attr:`HidimServer.error` and the method returns normally, so
Flower disconnects the sites and stops its gRPC server; the caller raises the error.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
from flwr.client import Client
from flwr.common import (
    DisconnectRes,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    ReconnectIns,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server import History, Server
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy

from hidim.errors import FederatedError
from hidim.federated import protocol as P
from hidim.federated.aggregates import pack_arrays, unpack_arrays
from hidim.federated.finalise import (
    build_densities,
    density_payload,
    fit_cox_baseline,
    set_references,
)
from hidim.federated.model import build_module
from hidim.federated.parameters import ParameterLayout
from hidim.federated.statistics import FederationStatistics, merge_descriptions
from hidim.tasks.feature_density import FeatureDensity
from hidim.training.config import ExperimentConfig, dump_config
from hidim.training.module import HidimModule
from hidim.training.transfer import init_encoder_from

__all__ = ["HidimServer", "LocalClientProxy", "FederationOutcome"]

_IMAGE_QUANTILE = 0.99  # as hidim.training.ood_gate.fit_image_density


@dataclass
class FederationOutcome:
    """What the server holds after a successful federation."""

    module: HidimModule
    statistics: FederationStatistics
    layout: ParameterLayout
    image_density: FeatureDensity | None
    init_from: dict[str, Any] | None
    seconds_rounds: float
    descriptions: list[dict[str, Any]]
    site_batchnorm: dict[str, dict[str, np.ndarray]]


class HidimServer(Server):
    """Flower ``Server`` running hidim's federation (see the module docstring).

    Args:
        client_manager: Flower's client manager.
        strategy: A strategy from :func:`hidim.federated.strategy.make_strategy`.
        config: The experiment config (sent to every site).
        expected_sites: Site names that must take part, or their number.
        connect_timeout: Seconds to wait for all sites to connect.
        abort_check: Polled every second while waiting; a returned message aborts the
            wait (e.g. a local site process died).
    """

    def __init__(
        self,
        *,
        client_manager: ClientManager,
        strategy: Any,
        config: ExperimentConfig,
        expected_sites: Sequence[str] | int,
        connect_timeout: float = 600.0,
        abort_check: Callable[[], str | None] | None = None,
    ) -> None:
        super().__init__(client_manager=client_manager, strategy=strategy)
        self.config = config
        self.config_text = dump_config(config)
        self.expected = (
            sorted(expected_sites) if not isinstance(expected_sites, int) else int(expected_sites)
        )
        self.n_sites = self.expected if isinstance(self.expected, int) else len(self.expected)
        self.connect_timeout = float(connect_timeout)
        self.abort_check = abort_check
        self.error: BaseException | None = None
        self.outcome: FederationOutcome | None = None

    # ---- helpers ----------------------------------------------------------------------------------
    def _proxies(self) -> list[ClientProxy]:
        deadline = time.monotonic() + self.connect_timeout
        while not self._client_manager.wait_for(self.n_sites, timeout=1):
            problem = self.abort_check() if self.abort_check is not None else None
            if problem:
                raise FederatedError(f"waiting for the sites to connect: {problem}")
            if time.monotonic() > deadline:
                n = self._client_manager.num_available()
                raise FederatedError(
                    f"only {n} of {self.n_sites} sites connected within "
                    f"{self.connect_timeout:.0f} s; start every site's client "
                    "(hidim federated-client) or check the address"
                )
        proxies = list(self._client_manager.all().values())
        if len(proxies) != self.n_sites:
            raise FederatedError(
                f"{len(proxies)} clients connected but the federation has {self.n_sites} sites"
            )
        return proxies

    def _each(self, fn: Any, proxies: Sequence[ClientProxy]) -> list[Any]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            return list(pool.map(fn, proxies))

    def _describe(self, proxies: Sequence[ClientProxy], timeout: float | None) -> list[dict]:
        ins = GetPropertiesIns(config={P.PHASE_KEY: P.DESCRIBE, P.CONFIG_KEY: self.config_text})
        replies = self._each(lambda c: c.get_properties(ins, timeout, 0), proxies)
        out = []
        for res in replies:
            site = P.check_reply("properties", res.properties)
            description = json.loads(str(res.properties.get("description", "{}")))
            extra = sorted(set(description) - P.DESCRIPTION_KEYS)
            if extra or description.get("site") != site:
                raise FederatedError(
                    f"site {site!r} sent a description outside the protocol: {extra}"
                )
            self.strategy.record.receive(  # type: ignore[attr-defined]
                "describe", site, round_=0, description=description
            )
            out.append(description)
        names = sorted(d["site"] for d in out)
        if isinstance(self.expected, list) and names != self.expected:
            raise FederatedError(f"expected sites {self.expected}, these connected: {names}")
        return sorted(out, key=lambda d: d["site"])

    def _phase(
        self,
        proxies: Sequence[ClientProxy],
        phase: str,
        extra: dict[str, Any],
        timeout: float | None,
    ) -> list[dict[str, np.ndarray]]:
        config = {
            P.CONFIG_KEY: self.config_text,
            P.STATISTICS_KEY: self.strategy.base_config[P.STATISTICS_KEY],  # type: ignore[attr-defined]
            P.PHASE_KEY: phase,
            **extra,
        }
        ins = EvaluateIns(parameters=self.parameters, config=config)
        replies = self._each(lambda c: c.evaluate(ins, timeout, None), proxies)
        payloads = []
        for res in sorted(replies, key=lambda r: str(r.metrics.get("site"))):
            site = P.check_reply(phase, res.metrics)
            arrays = unpack_arrays(bytes(res.metrics["aggregates"]))
            self.strategy.record.receive(  # type: ignore[attr-defined]
                phase,
                site,
                round_=None,
                aggregates={k: list(v.shape) for k, v in arrays.items()},
            )
            payloads.append(arrays)
        return payloads

    # ---- the federation -------------------------------------------------------------------------
    def fit(self, num_rounds: int, timeout: float | None) -> tuple[History, float]:
        """Describe, train ``num_rounds`` rounds, finalise (errors go to :attr:`error`)."""
        try:
            return self._fit(num_rounds, timeout)
        except BaseException as exc:  # noqa: BLE001 - stored; the caller raises after shutdown
            self.error = exc
            return History(), 0.0

    def _fit(self, num_rounds: int, timeout: float | None) -> tuple[History, float]:
        proxies = self._proxies()
        descriptions = self._describe(proxies, timeout)
        stats = merge_descriptions(self.config, descriptions)
        L.seed_everything(self.config.trainer.seed, workers=True, verbose=False)
        module = build_module(self.config, stats)
        init_info = None
        if self.config.model.init_from:
            init_info = init_encoder_from(module.net, self.config.model.init_from)
        layout = ParameterLayout.of(module)
        self.strategy.start(  # type: ignore[attr-defined]
            layout=layout,
            initial=ndarrays_to_parameters(layout.get(module)),
            config_text=self.config_text,
            statistics_text=stats.to_json(),
        )
        history, elapsed = super().fit(num_rounds, timeout)
        layout.set(module, parameters_to_ndarrays(self.parameters))
        payloads = self._phase(proxies, P.FINALISE, {}, timeout)
        fit_cox_baseline(module, payloads)
        densities = build_densities(module, payloads, quantile=_IMAGE_QUANTILE)
        if densities:
            refs = self._phase(
                proxies,
                P.REFERENCE,
                {"densities": pack_arrays(density_payload(densities))},
                timeout,
            )
            set_references(densities, refs)
        self.outcome = FederationOutcome(
            module=module,
            statistics=stats,
            layout=layout,
            image_density=densities.get("image"),
            init_from=init_info,
            seconds_rounds=float(elapsed),
            descriptions=descriptions,
            site_batchnorm=dict(self.strategy.site_batchnorm),  # type: ignore[attr-defined]
        )
        return history, elapsed


class LocalClientProxy(ClientProxy):
    """A ``ClientProxy`` that calls a Flower ``Client`` in this process (no network).

    The ``--transport inprocess`` path: the same ``SiteClient`` and strategy objects as
    over gRPC, exchanging the same Flower message objects, just without serialisation.
    """

    def __init__(self, cid: str, client: Client) -> None:
        super().__init__(cid)
        self.client = client

    def get_properties(
        self, ins: GetPropertiesIns, timeout: float | None, group_id: int | None
    ) -> GetPropertiesRes:
        """Forward to the client."""
        return self.client.get_properties(ins)

    def get_parameters(
        self, ins: GetParametersIns, timeout: float | None, group_id: int | None
    ) -> GetParametersRes:
        """Forward to the client."""
        return self.client.get_parameters(ins)

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None) -> FitRes:
        """Forward to the client."""
        return self.client.fit(ins)

    def evaluate(
        self, ins: EvaluateIns, timeout: float | None, group_id: int | None
    ) -> EvaluateRes:
        """Forward to the client."""
        return self.client.evaluate(ins)

    def reconnect(
        self, ins: ReconnectIns, timeout: float | None, group_id: int | None
    ) -> DisconnectRes:
        """Nothing to disconnect."""
        return DisconnectRes(reason="")
