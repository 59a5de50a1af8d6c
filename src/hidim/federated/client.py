"""``SiteClient``: a Flower ``NumPyClient`` wrapping hidim's LightningModule at one hospital.

The client holds only its site's identity and data location. The experiment config and
the federation statistics arrive from the server in every message (``hidim_config``,
``hidim_statistics``), so any number of sites run one coordinator's config; the client
overrides ``data.store`` with its own store and never loads weight files (the global
weights arrive as parameters).

Per round (``fit``): load the global parameters (keeping batch-norm local under FedBN),
anchor the FedProx term on them, train ``local_epochs`` epochs on the site's own training
split (seed ``trainer.seed + round - 1``), return the exchanged tensors and the number of
training items. ``evaluate`` scores the global model on the site's val (and, in the last
round, test) split, or computes the post-training aggregates (see
:mod:`hidim.federated.protocol`). Errors are returned as ``{"site", "error"}`` so the server
can stop the federation with a message naming the site.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from flwr.client import NumPyClient

from hidim.errors import FederatedError, HidimError
from hidim.federated import protocol as P
from hidim.federated.aggregates import pack_arrays, unpack_arrays
from hidim.federated.model import build_module, site_config
from hidim.federated.parameters import ParameterLayout
from hidim.federated.proximal import ProximalPenalty
from hidim.federated.site_compute import (
    evaluate_split,
    finalise_aggregates,
    local_fit,
    reference_quantiles,
)
from hidim.federated.site_data import SiteDataModule
from hidim.federated.sites import Site
from hidim.federated.statistics import FederationStatistics, describe_site
from hidim.tasks.feature_density import FeatureDensity
from hidim.training.config import ExperimentConfig, config_from_dict
from hidim.training.module import HidimModule

__all__ = ["SiteClient", "parse_config"]

_Arrays = list[np.ndarray]


def parse_config(text: str) -> ExperimentConfig:
    """The experiment config a server sent (YAML text)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FederatedError(f"the server sent an unreadable config: {exc}") from exc
    return config_from_dict(raw, source="<server config>")


@dataclass
class _State:
    key: str
    config: ExperimentConfig
    stats: FederationStatistics
    module: HidimModule
    layout: ParameterLayout
    prox: ProximalPenalty


def _error(exc: BaseException) -> str:
    if isinstance(exc, HidimError):
        return str(exc)
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


class SiteClient(NumPyClient):
    """The Flower client of one site.

    Args:
        site: The site (its name, store and optional patient subset).
    """

    def __init__(self, *, site: Site) -> None:
        self.site = site
        self._state: _State | None = None
        self._config_cache: tuple[str, ExperimentConfig] | None = None

    # ---- state ------------------------------------------------------------------------------
    def _config(self, message: Mapping[str, Any]) -> ExperimentConfig:
        text = message.get(P.CONFIG_KEY)
        if not isinstance(text, str):
            raise FederatedError("the server sent no hidim_config; is it a hidim server?")
        if self._config_cache is None or self._config_cache[0] != text:
            self._config_cache = (text, site_config(parse_config(text), self.site.store))
        return self._config_cache[1]

    def _ensure(self, message: Mapping[str, Any]) -> _State:
        config = self._config(message)
        stats_text = message.get(P.STATISTICS_KEY)
        if not isinstance(stats_text, str):
            raise FederatedError("the server sent no federation statistics")
        key = hashlib.sha256((str(message[P.CONFIG_KEY]) + stats_text).encode()).hexdigest()
        if self._state is None or self._state.key != key:
            stats = FederationStatistics.from_json(stats_text)
            prox = ProximalPenalty(mu=0.0)
            module = build_module(config, stats, penalties=[prox])
            self._state = _State(
                key=key,
                config=config,
                stats=stats,
                module=module,
                layout=ParameterLayout.of(module),
                prox=prox,
            )
        return self._state

    def _datamodule(self, state: _State, seed: int) -> SiteDataModule:
        dm = SiteDataModule(
            state.config.data,
            multiview=state.config.model.multiview is not None,
            seed=seed,
            patients=self.site.patients,
            encoder=state.stats.tabular_encoder() or _empty_encoder(),
            coder=state.stats.group_coder(),
        )
        dm.setup()
        return dm

    # ---- Flower interface ---------------------------------------------------------------------
    def get_properties(self, config: dict[str, Any]) -> dict[str, Any]:
        """``phase=describe``: the site's description (aggregates only)."""
        try:
            if config.get(P.PHASE_KEY) != P.DESCRIBE:
                return {"site": self.site.name}
            description = describe_site(self._config(config), self.site)
            return {"site": self.site.name, "description": json.dumps(description)}
        except Exception as exc:  # noqa: BLE001 - reported to the server, which stops the run
            return {"site": self.site.name, P.ERROR_KEY: _error(exc)}

    def get_parameters(self, config: dict[str, Any]) -> _Arrays:
        """The current local tensors (empty before the first round)."""
        return self._state.layout.get(self._state.module) if self._state is not None else []

    def fit(
        self, parameters: _Arrays, config: dict[str, Any]
    ) -> tuple[_Arrays, int, dict[str, Any]]:
        """Local training from the global parameters; returns the new tensors and item count."""
        try:
            started = time.perf_counter()
            state = self._ensure(config)
            rnd = int(config["server_round"])
            epochs = int(config["local_epochs"])
            local = state.layout.local_keys(str(config.get("bn", "global")))
            state.layout.set(state.module, parameters, skip=local)
            state.prox.mu = float(config.get("proximal_mu", 0.0))
            state.prox.exclude = frozenset(local)
            state.prox.anchor(state.module)
            seed = state.config.trainer.seed + rnd - 1
            L.seed_everything(seed, workers=True, verbose=False)
            dm = self._datamodule(state, seed)
            out = local_fit(state.module, dm, state.config, epochs=epochs)
            metrics = {
                "site": self.site.name,
                "train_loss": out["train_loss"],
                "seconds": round(time.perf_counter() - started, 3),
            }
            return state.layout.get(state.module), len(dm.datasets["train"]), metrics
        except Exception as exc:  # noqa: BLE001 - reported to the server
            return [], 0, {"site": self.site.name, P.ERROR_KEY: _error(exc)}

    def evaluate(
        self, parameters: _Arrays, config: dict[str, Any]
    ) -> tuple[float, int, dict[str, Any]]:
        """Per-round evaluation, or a post-training statistics phase (``phase``)."""
        try:
            started = time.perf_counter()
            state = self._ensure(config)
            phase = str(config.get(P.PHASE_KEY, P.ROUND))
            if phase == P.ROUND:
                final = bool(config.get("final", False))
                local = state.layout.local_keys(str(config.get("bn", "global")))
                state.layout.set(state.module, parameters, skip=local)
                loss, n, metrics = self._evaluate_round(state, final=final)
            elif phase in (P.FINALISE, P.REFERENCE):
                state.layout.set(state.module, parameters)
                dm = self._datamodule(state, state.config.trainer.seed)
                if phase == P.FINALISE:
                    edges = state.stats.time_edges
                    arrays = finalise_aggregates(
                        state.module,
                        dm,
                        state.config,
                        np.asarray(edges) if edges is not None else None,
                    )
                else:
                    arrays = reference_quantiles(
                        state.module, dm, _densities(unpack_arrays(config["densities"]))
                    )
                loss, n = 0.0, len(dm.datasets["train"])
                metrics = {"site": self.site.name, "aggregates": pack_arrays(arrays)}
            else:
                raise FederatedError(f"unknown evaluation phase {phase!r}")
            metrics["seconds"] = round(time.perf_counter() - started, 3)
            return loss, n, metrics
        except Exception as exc:  # noqa: BLE001 - reported to the server
            return 0.0, 0, {"site": self.site.name, P.ERROR_KEY: _error(exc)}

    def _evaluate_round(self, state: _State, *, final: bool) -> tuple[float, int, dict[str, Any]]:
        dm = self._datamodule(state, state.config.trainer.seed)
        metrics: dict[str, Any] = {"site": self.site.name}
        loss, n = 0.0, 0
        for split in ("val", "test") if final else ("val",):
            values = evaluate_split(state.module, dm, split)
            metrics[f"n_{split}"] = int(values.pop("n"))
            for name, value in values.items():
                metrics[f"{split}_{name}"] = float(value)
            if split == "val" and metrics["n_val"] and math.isfinite(values["loss"]):
                loss, n = float(values["loss"]), int(metrics["n_val"])
        return loss, n, metrics


def _empty_encoder() -> Any:
    from hidim.store import TabularEncoder

    return TabularEncoder()


def _densities(arrays: Mapping[str, np.ndarray]) -> dict[str, FeatureDensity]:
    """``{"image"|"head": FeatureDensity}`` from the server's means and whiteners."""
    out: dict[str, FeatureDensity] = {}
    for name in ("image", "head"):
        if f"{name}_means" not in arrays:
            continue
        means = torch.as_tensor(arrays[f"{name}_means"], dtype=torch.float64)
        density = FeatureDensity(in_features=int(means.shape[1]), n_classes=int(means.shape[0]))
        with torch.no_grad():
            density.means.copy_(means)
            density.whitener.copy_(torch.as_tensor(arrays[f"{name}_whitener"]))
            density.fitted.fill_(True)
        out[name] = density
    return out
