"""The network every party builds: the config's ``HidimModule`` with federation statistics.

The server and every site call :func:`build_module` with the same config and
:class:`~hidim.federated.statistics.FederationStatistics`, so they hold the same
architecture, tabular layout and head state; only the exchanged tensors
(:class:`~hidim.federated.parameters.ParameterLayout`) then differ between them.

:func:`site_config` is the config a site trains with: the coordinator's config with the
site's own store, no pretrained-weight file or ``init_from`` run (the global weights
arrive from the server), no loggers and no progress bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hidim.federated.statistics import FederationStatistics, apply_head_statistics
from hidim.training.config import ExperimentConfig
from hidim.training.datamodule import tabular_layout
from hidim.training.module import HidimModule, Penalty

__all__ = ["build_module", "site_config"]


def build_module(
    config: ExperimentConfig,
    stats: FederationStatistics,
    *,
    penalties: Sequence[Penalty] = (),
) -> HidimModule:
    """The config's LightningModule with the federation's tabular layout and head state.

    The caller seeds the RNG first (the server: ``trainer.seed``) when the initial weights
    matter.
    """
    encoder = stats.tabular_encoder()
    layout = tabular_layout(encoder) if config.model.tabular and encoder is not None else None
    module = HidimModule(
        config=config,
        in_channels=stats.in_channels,
        tabular_layout=layout,
        penalties=penalties,
    )
    apply_head_statistics(module.head, stats)
    return module


def site_config(config: ExperimentConfig, store: Path) -> ExperimentConfig:
    """``config`` as a site runs it (own store; weights come from the server)."""
    return config.model_copy(
        update={
            "data": config.data.model_copy(update={"store": Path(store)}),
            "model": config.model.model_copy(update={"weights": None, "init_from": None}),
            "trainer": config.trainer.model_copy(update={"loggers": [], "progress_bar": False}),
        }
    )
