"""hidim.federated: one model trained across hospitals that never share images (Flower).

Each hospital runs a Flower client (:class:`~hidim.federated.client.SiteClient`) wrapping
hidim's own LightningModule and DataModule on its own store; a coordinator runs
:class:`~hidim.federated.server.HidimServer` with Flower's FedAvg or FedProx strategy
(:mod:`~hidim.federated.strategy`). Only model tensors, item counts, scalar metrics and
aggregate statistics leave a site (:mod:`~hidim.federated.protocol`). The result is a
normal hidim run directory (``load_run``, ``hidim predict``, ``hidim explain`` and
``hidim report`` work on it) plus ``federated.json``.

* :mod:`~hidim.federated.sites` — who takes part (a store per site, or one store split by a
  column for simulation);
* :mod:`~hidim.federated.parameters` — the exchanged tensors, batch norm global or local
  (FedBN); :mod:`~hidim.federated.proximal` — FedProx's term;
* :mod:`~hidim.federated.statistics`, :mod:`~hidim.federated.aggregates`,
  :mod:`~hidim.federated.finalise` — encoders, target standardisation, time grids, Cox
  baseline and feature densities from per-site aggregates;
* :mod:`~hidim.federated.run` — ``train_federated`` (all parties on one machine, gRPC or
  in-process), ``serve_federation`` (the coordinator), ``run_site`` (one hospital).

See ``docs/federated.md``.
"""

from hidim.federated.run import FederatedResult, run_site, serve_federation, train_federated
from hidim.federated.sites import Site, sites_from_column, sites_from_stores

__all__ = [
    "FederatedResult",
    "Site",
    "run_site",
    "serve_federation",
    "sites_from_column",
    "sites_from_stores",
    "train_federated",
]
