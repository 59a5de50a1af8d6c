"""The federated model as a normal hidim run directory (``load_run``/``predict`` read it as is).

Written by the server (which holds no data)::

    RUN/
      config.yaml            the federation's config (data.store = the reference store)
      checkpoints/model.pt   hidim-model/1: hyper-parameters + the global state_dict
      checkpoints/image_density.pt   the OOD gate, fitted from site aggregates
      preprocessing.json     clip length, fps, intensity, the merged tabular encoder and vocabulary
      members.json           one member (".") marked federated
      federated.json         strategy, rounds, per-round per-site losses/metrics, weights,
                             what the server received, timings
      sites/<name>/          FedBN only: the site's personal model (global weights + its own
                             batch norm) as a run directory of its own

``run.json`` is written last by the caller (:mod:`hidim.federated.run`), after optional
per-site prediction, so its presence marks a finished run.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hidim.federated.server import FederationOutcome
from hidim.provenance import atomic_write_text
from hidim.store import TabularEncoder
from hidim.training.config import ExperimentConfig, dump_config
from hidim.training.module import HidimModule
from hidim.training.ood_gate import DENSITY_FILE, save_density
from hidim.training.train import MODEL_FILE, PREPROCESSING_FILE, save_model

__all__ = ["write_model", "write_federated_run", "clean_json", "FEDERATED_FILE", "SITES_DIR"]

FEDERATED_FILE = "federated.json"
#: Per-site outputs: FedBN personal models, predictions on a site's own store.
SITES_DIR = "sites"


def write_model(
    module: HidimModule, path: Path, *, replace: dict[str, np.ndarray] | None = None
) -> None:
    """``model.pt`` in :mod:`hidim.training.train`'s format (weights + plain hyper-parameters).

    Args:
        module: The network.
        path: Output file.
        replace: ``state_dict`` entries to write instead of the module's (a site's BN).
    """
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    for key, value in (replace or {}).items():
        ref = state[key]
        state[key] = torch.as_tensor(np.asarray(value)).to(ref.dtype).reshape(ref.shape)
    save_model(module, path, state_dict=state)


def _preprocessing(config: ExperimentConfig, outcome: FederationOutcome) -> dict[str, Any]:
    d = config.data
    module = outcome.module
    stats = outcome.statistics
    backbone = module.net.backbone or getattr(module.net.multiview, "backbone", None)
    return {
        "clip_frames": d.clip_frames,
        "short": d.short,
        "views": d.views,
        "fps": stats.fps,
        "intensity_methods": stats.intensity_methods,
        "in_channels": int(module.hparams["in_channels"]),
        "weights": getattr(backbone, "weights_info", None),
        "tabular_encoder": stats.encoder if stats.encoder is not None else asdict(TabularEncoder()),
        "group_vocab": stats.vocab,
        "threshold": d.threshold,
        "positive_below": d.positive_below,
        "init_from": outcome.init_from,
        "federated": True,
    }


def clean_json(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and NaN/inf as ``None`` (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, np.ndarray):
        return clean_json(value.tolist())
    return value


def write_federated_run(
    run_dir: str | os.PathLike[str],
    *,
    config: ExperimentConfig,
    outcome: FederationOutcome,
    federated: dict[str, Any],
) -> Path:
    """Write the run directory files listed in the module docstring (not ``run.json``).

    Args:
        run_dir: The run directory (created).
        config: The federation's config (as the server ran it).
        outcome: The server's :class:`~hidim.federated.server.FederationOutcome`.
        federated: The contents of ``federated.json``.

    Returns:
        ``run_dir`` as a path.
    """
    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "config.yaml", dump_config(config))
    write_model(outcome.module, root / "checkpoints" / MODEL_FILE)
    if outcome.image_density is not None:
        save_density(outcome.image_density, root / "checkpoints" / DENSITY_FILE)
    atomic_write_text(
        root / PREPROCESSING_FILE, json.dumps(_preprocessing(config, outcome), indent=2)
    )
    epochs = int(federated.get("rounds", 0)) * int(federated.get("local_epochs", 0))
    members = {
        "kind": "single",
        "members": [
            {
                "dir": ".",
                "monitor": None,
                "best_score": None,
                "epochs": epochs,
                "seed": config.trainer.seed,
                "holdout_patients": None,
                "federated": True,
            }
        ],
    }
    atomic_write_text(root / "members.json", json.dumps(members, indent=2))
    for site, batchnorm in sorted(outcome.site_batchnorm.items()):
        _write_site_model(root, root / SITES_DIR / site, batchnorm, outcome)
    atomic_write_text(
        root / FEDERATED_FILE, json.dumps(clean_json(federated), indent=2, default=str)
    )
    return root


def _write_site_model(
    root: Path, site_dir: Path, batchnorm: dict[str, np.ndarray], outcome: FederationOutcome
) -> None:
    """FedBN: a site's personal model — the global weights with the site's own batch norm.

    A run directory of its own (``load_run``/``predict`` accept it); no OOD density, which
    was fitted for the global model.
    """
    site_dir.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", PREPROCESSING_FILE, "members.json"):
        shutil.copyfile(root / name, site_dir / name)
    write_model(outcome.module, site_dir / "checkpoints" / MODEL_FILE, replace=batchnorm)
