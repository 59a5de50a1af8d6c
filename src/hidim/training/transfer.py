"""Supervised pretraining inside hidim: start a model from another hidim run's image encoder.

Echo outcome models are data-starved where imaging labels are plentiful: every echo has an
ejection fraction, few patients have years of follow-up. The usual remedy (paper §
"Pretraining"; Ouyang et al. 2020, Ghorbani et al. 2020) is to pretrain the video encoder on
the plentiful task and fine-tune it on the scarce one. ``model.init_from: RUN`` does that:

* ``RUN`` is a ``hidim train`` or ``hidim pretrain`` (self-supervised) run directory (its
  first member) or a ``model.pt`` file; a single-clip encoder also initialises the shared
  backbone of a multi-view model;
* the parameters and buffers of the **image encoder** (``backbone.*`` or ``multiview.*``)
  are copied into the new network, after checking that every one exists with the same
  shape (a different backbone or width is an error naming the first mismatch); heads and
  tabular fusion are never copied (they belong to the other task);
* ``model.freeze_encoder`` keeps those weights fixed (a linear/MLP probe on the pretrained
  embedding: the safe choice with few events), otherwise they are fine-tuned;
* the source's path, SHA-256 and pretraining task go into the run's ``preprocessing.json``
  (``init_from``), so the report's model card can name the pretraining.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hidim.errors import TrainingError
from hidim.models.network import HidimNet
from hidim.provenance import file_sha256

__all__ = ["ENCODER_PREFIXES", "resolve_model_file", "init_encoder_from", "freeze_encoder"]

ENCODER_PREFIXES = ("backbone.", "multiview.")
_MODEL_FILE = "model.pt"


def resolve_model_file(source: str | os.PathLike[str]) -> Path:
    """The ``model.pt`` of a run directory (first member), member directory or file."""
    path = Path(source)
    if path.is_file():
        return path
    candidates = [
        path / "checkpoints" / _MODEL_FILE,
        path / "members" / "0" / "checkpoints" / _MODEL_FILE,
        path / "folds" / "0" / "checkpoints" / _MODEL_FILE,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise TrainingError(
        f"model.init_from: found no trained model in {str(path)!r} (looked for "
        f"checkpoints/{_MODEL_FILE}, members/0/... and folds/0/...); pass the --out folder of "
        "a finished `hidim train` run or its checkpoints/model.pt"
    )


def init_encoder_from(net: HidimNet, source: str | os.PathLike[str]) -> dict[str, Any]:
    """Copy the image encoder of the model at ``source`` into ``net`` (in place).

    Args:
        net: The freshly built network.
        source: A run directory, member directory or ``model.pt`` file.

    Returns:
        Provenance: ``{"file", "sha256", "tensors", "task", "target", "backbone"}``.

    Raises:
        TrainingError: no model at ``source``, an unreadable file, or encoders that differ.
    """
    file = resolve_model_file(source)
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise TrainingError(
            f"model.init_from: cannot read {file} ({type(exc).__name__}: {exc}); expected a "
            "model.pt written by `hidim train`"
        ) from exc
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise TrainingError(f"model.init_from: {file} is not a hidim model.pt (no state_dict)")
    source_state = {
        k.removeprefix("net."): v
        for k, v in payload["state_dict"].items()
        if k.removeprefix("net.").startswith(ENCODER_PREFIXES)
    }
    target = {k: v for k, v in net.state_dict().items() if k.startswith(ENCODER_PREFIXES)}
    shared = getattr(net.multiview, "backbone", None) is not None
    if shared and not any(k.startswith("multiview.") for k in source_state):
        # a single-clip encoder (e.g. `hidim pretrain`) into a shared multi-view backbone:
        # the fusion's own parameters (attention, view embeddings) keep their initialisation
        source_state = {f"multiview.{k}": v for k, v in source_state.items()}
        target = {k: v for k, v in target.items() if k.startswith("multiview.backbone.")}
    missing = sorted(set(target) - set(source_state))
    extra = sorted(set(source_state) - set(target))
    if missing or extra:
        raise TrainingError(
            f"model.init_from: the image encoder in {file} differs from this config's "
            f"(missing {missing[:3]}, unexpected {extra[:3]}); use the same model.backbone, "
            "model.backbone_kwargs and model.multiview settings as the pretraining run"
        )
    for key, value in target.items():
        if tuple(source_state[key].shape) != tuple(value.shape):
            raise TrainingError(
                f"model.init_from: {key} has shape {tuple(source_state[key].shape)} in {file} "
                f"but {tuple(value.shape)} here; use the pretraining run's model.backbone, "
                "model.backbone_kwargs and in_channels"
            )
    net.load_state_dict(source_state, strict=False)
    config = (payload.get("hparams") or {}).get("config") or {}
    return {
        "file": str(file.resolve()),
        "sha256": file_sha256(file),
        "tensors": len(source_state),
        "task": (config.get("task") or {}).get("head"),
        "target": (config.get("data") or {}).get("target"),
        "backbone": (config.get("model") or {}).get("backbone"),
    }


def freeze_encoder(net: HidimNet) -> int:
    """Stop gradients through the image encoder; returns the number of frozen parameters.

    Batch-norm layers of a frozen encoder are also kept in eval mode by
    :class:`hidim.training.module.HidimModule` (their running statistics stay pretrained).
    """
    encoder: nn.Module = net.image_encoder
    n = 0
    for param in encoder.parameters():
        param.requires_grad_(False)
        n += param.numel()
    return n
