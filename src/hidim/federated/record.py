"""The federation's record and evaluation: ``federated.json``, ``metrics.json``, ``run.json``.

* :func:`federated_record` — the contents of ``federated.json`` from the server's state;
* :func:`evaluate_sites` — ``hidim predict`` on every site's store (all clips, per study)
  and metrics pooled and per site, with bootstrap CIs (only where the stores are
  reachable: :func:`~hidim.federated.run.train_federated`);
* :func:`write_federated_run_json` — provenance, written last.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hidim.errors import FederatedError
from hidim.federated.export import SITES_DIR
from hidim.federated.server import HidimServer
from hidim.federated.sites import Site
from hidim.provenance import file_sha256, write_run_json
from hidim.training.config import ExperimentConfig

__all__ = ["federated_record", "evaluate_sites", "write_federated_run_json"]


def federated_record(
    server: HidimServer,
    *,
    sites: Sequence[dict[str, Any]],
    strategy: str,
    mu: float,
    bn: str,
    rounds: int,
    local_epochs: int,
    transport: str,
    seconds: float,
) -> dict[str, Any]:
    outcome = server.outcome
    if outcome is None:
        raise FederatedError("the federation ended without a model")
    record = server.strategy.record  # type: ignore[attr-defined]
    last = record.round(rounds) if record.rounds else {"sites": {}}
    return {
        "strategy": strategy,
        "proximal_mu": mu if strategy == "fedprox" else None,
        "bn": bn,
        "rounds": rounds,
        "local_epochs": local_epochs,
        "transport": transport,
        "sites": list(sites),
        "aggregation": "example-weighted mean (Flower FedAvg), weights n_train / sum n_train",
        "layout": {
            "digest": outcome.layout.digest,
            "n_tensors": len(outcome.layout.keys),
            "n_values": outcome.layout.n_values,
            "batchnorm_tensors": len(outcome.layout.batchnorm),
            "keys": list(outcome.layout.keys),
        },
        "statistics": {
            "n_train": outcome.statistics.n_train,
            "target": outcome.statistics.target,
            "class_counts": outcome.statistics.class_counts,
            "time_edges": outcome.statistics.time_edges,
            "tabular_encoder": outcome.statistics.encoder,
        },
        "cox_baseline": "piecewise-exponential on a 20x refined grid, pooled from site aggregates"
        if callable(getattr(outcome.module.head, "fit_baseline", None))
        else None,
        "history": record.rounds,
        "final": last["sites"],
        "received": record.received,
        "seconds": {
            "total": round(seconds, 2),
            "rounds": round(outcome.seconds_rounds, 2),
            "per_round": [r.get("seconds") for r in record.rounds],
        },
    }


def evaluate_sites(
    run_dir: Path, sites: Sequence[Site], reference: Path, config: ExperimentConfig
) -> dict[str, Any]:
    """Predict every site's store; ``metrics.json`` pooled (reference store) and per site.

    The pooled metrics are the exported global model's on the reference store. Per site,
    the model a site would deploy is scored on its own patients: the global model, or
    under FedBN the site's personal model (``sites/<name>/``).
    """
    from hidim.training.predict import predict, predictions_metrics

    seed, n_boot = config.trainer.seed, config.trainer.bootstrap_samples
    show = config.trainer.progress_bar
    top = predict(run_dir, show_progress=show)
    metrics: dict[str, Any] = predictions_metrics(top.studies, top.task, seed=seed, n_boot=n_boot)
    per_site: dict[str, Any] = {}
    personal = False
    for site in sites:
        site_dir = run_dir / SITES_DIR / site.name
        if (site_dir / "checkpoints").is_dir():  # FedBN personal model
            personal = True
            studies = predict(site_dir, site.store, out=site_dir, show_progress=show).studies
        elif Path(site.store).resolve() == reference:
            studies = top.studies
        else:
            studies = predict(run_dir, site.store, out=site_dir, show_progress=show).studies
        if site.patients is not None:
            studies = studies[studies["patient_key"].astype(str).isin(site.patients)]
        per_site[site.name] = predictions_metrics(studies, top.task, seed=seed, n_boot=n_boot)
    metrics["sites"] = per_site
    metrics["site_models"] = (
        "personal (FedBN: global weights + the site's batch norm)" if personal else "global"
    )
    return metrics


def write_federated_run_json(
    run_dir: Path,
    config: ExperimentConfig,
    sites: Sequence[Site],
    record: dict[str, Any],
    seconds: float,
) -> None:
    hashes: dict[str, str] = {}
    for site in sites:
        for name in ("manifest.parquet", "labels.parquet"):
            path = Path(site.store) / name
            if path.is_file():
                hashes[f"{site.name}/{name}"] = file_sha256(path)
    write_run_json(
        run_dir,
        command="federated",
        config=config,
        seed=config.trainer.seed,
        input_hashes=hashes,
        extra={
            "store": str(config.data.store),
            "strategy": record["strategy"],
            "rounds": record["rounds"],
            "local_epochs": record["local_epochs"],
            "bn": record["bn"],
            "sites": record["sites"],
            "seconds": round(seconds, 2),
        },
    )
