"""``SSLModule``: encoder + projection head trained with a self-supervised objective.

The network (:class:`SSLNet`) is a registered backbone (``[B, C, T, H, W] → [B, D]``, the
embedding downstream models use) followed by a projection MLP (``[B, D] → [B, P]``, where the
loss is computed and which is thrown away afterwards, as in SimCLR: the layer before the
projection transfers better). Both views of a batch go through the network in **one**
forward pass, so batch normalisation sees ``2B`` clips and cannot tell the views apart by
their batch statistics.

The module is laid out like :class:`hidim.training.module.HidimModule` — the network lives
in ``self.net`` with its encoder at ``self.net.backbone`` — so the state dict has
``net.backbone.*`` keys and the run's ``model.pt`` is read unchanged by
``model.init_from`` (:func:`hidim.training.transfer.init_encoder_from`). ``hparams.config``
is a training-shaped config whose ``task.head`` is ``ssl_<method>``.

Logged: ``train/ssl_loss``, ``train/top1`` (partner retrieval accuracy, chance ``1/B``),
``train/spread`` (collapse monitor, ~1 healthy, ~0 collapsed) and the ``val/`` equivalents
on held-out patients; ``self.history`` keeps one row per epoch (also in checkpoints).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from hidim.errors import TrainingError
from hidim.models.registry import Backbone, get_backbone
from hidim.pretrain.config import SSLConfig
from hidim.pretrain.losses import embedding_spread, nt_xent, pair_top1, vicreg
from hidim.training.config import DataConfig, ExperimentConfig, ModelConfig, TaskConfig

__all__ = ["ProjectionHead", "SSLNet", "SSLModule", "downstream_config", "ssl_objective"]


class ProjectionHead(nn.Module):
    """``Linear → BatchNorm → ReLU → Linear``: ``[B, D] → [B, out_dim]`` (SimCLR v2 style).

    Args:
        in_dim: Encoder embedding width ``D``.
        hidden: Hidden width.
        out_dim: Projection width ``P``.
    """

    def __init__(self, *, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        if min(in_dim, hidden, out_dim) < 1:
            raise TrainingError(
                f"projection widths must be >= 1, got in {in_dim}, hidden {hidden}, out {out_dim}"
            )
        self.layers = nn.Sequential(
            nn.Linear(in_dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, h: Tensor) -> Tensor:
        """``[B, D] → [B, out_dim]``."""
        return self.layers(h)


class SSLNet(nn.Module):
    """Encoder + projection head; ``forward(x) -> (h [B, D], z [B, P])``.

    Args:
        backbone: A registered :class:`~hidim.models.registry.Backbone`.
        projector: Maps ``[B, D]`` to ``[B, P]``.
    """

    def __init__(self, *, backbone: Backbone, projector: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Embedding and projection of clips ``[B, C, T, H, W]``."""
        h = self.backbone(x)
        return h, self.projector(h)


def ssl_objective(config: SSLConfig, z1: Tensor, z2: Tensor) -> Tensor:
    """The configured loss of a batch of projection pairs ``[N, P]``."""
    s = config.ssl
    if s.method == "simclr":
        return nt_xent(z1, z2, temperature=s.temperature)
    return vicreg(
        z1, z2, sim_weight=s.sim_weight, var_weight=s.var_weight, cov_weight=s.cov_weight
    )["loss"]


def downstream_config(config: SSLConfig, *, in_channels: int) -> dict[str, Any]:
    """A training-shaped config (``data``, ``model``, ``task``...) describing the encoder.

    Stored as ``hparams.config`` in ``model.pt`` so that ``model.init_from`` provenance and
    the model card read the backbone, and ``task.head`` names the pretraining
    (``ssl_simclr`` / ``ssl_vicreg``).
    """
    exp = ExperimentConfig(
        data=DataConfig(
            store=config.data.store,
            views=config.data.views,
            target=None,
            clip_frames=config.data.clip_frames,
            short=config.data.short,
        ),
        model=ModelConfig(
            backbone=config.model.backbone,
            backbone_kwargs=dict(config.model.backbone_kwargs),
            weights=config.model.weights,
            in_channels=in_channels,
        ),
        task=TaskConfig(head=config.head_name, params={"self_supervised": True}),
    )
    return exp.model_dump(mode="json")


class _Accumulator:
    """Batch-size-weighted means of a few scalars over an epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, values: Mapping[str, float], n: int) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value) * n
        self.n += n

    def means(self) -> dict[str, float]:
        return {k: v / self.n for k, v in self.sums.items()} if self.n else {}


class SSLModule(L.LightningModule):
    """Self-supervised pretraining of a backbone on pairs of views.

    Args:
        config: The pretraining config (or its ``model_dump`` dict).
        in_channels: Channels of the input clips.
    """

    def __init__(self, *, config: SSLConfig | Mapping[str, Any], in_channels: int) -> None:
        super().__init__()
        cfg = config if isinstance(config, SSLConfig) else SSLConfig.model_validate(config)
        if in_channels < 1:
            raise TrainingError(f"in_channels must be >= 1, got {in_channels}")
        self.save_hyperparameters(
            {
                "config": downstream_config(cfg, in_channels=in_channels),
                "pretrain": cfg.model_dump(mode="json"),
                "in_channels": int(in_channels),
                "tabular_layout": None,
            }
        )
        self.config = cfg
        m = cfg.model
        backbone = get_backbone(
            m.backbone, in_channels=in_channels, weights=m.weights, **m.backbone_kwargs
        )
        projector = ProjectionHead(
            in_dim=backbone.out_dim,
            hidden=cfg.ssl.projection_hidden,
            out_dim=cfg.ssl.projection_dim,
        )
        self.net = SSLNet(backbone=backbone, projector=projector)
        self.history: list[dict[str, float]] = []
        self._acc = {"train": _Accumulator(), "val": _Accumulator()}

    # ---- steps ------------------------------------------------------------------------------
    def pair_step(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """Loss and monitors of one batch of pairs (both views in one forward pass)."""
        v1, v2 = batch["view1"], batch["view2"]
        h, z = self.net(torch.cat([v1, v2]))
        z1, z2 = z.chunk(2)
        loss = ssl_objective(self.config, z1, z2)
        h1, h2 = h.detach().chunk(2)
        monitors = {
            "top1": float(pair_top1(h1, h2)),
            "spread": float(embedding_spread(h.detach())),
        }
        return loss, monitors

    def on_train_epoch_start(self) -> None:
        """New clip starts, strides and augmentations for this epoch (reproducible)."""
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if dataset is not None and hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)
        self._acc["train"] = _Accumulator()
        self._acc["val"] = _Accumulator()

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """The SSL loss of a batch of pairs."""
        loss, monitors = self.pair_step(batch)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the self-supervised loss became {loss.item()} at epoch {self.current_epoch}, "
                f"batch {batch_idx}; lower optim.lr or raise ssl.temperature"
            )
        n = int(batch["view1"].shape[0])
        self._acc["train"].add({"loss": float(loss.detach()), **monitors}, n)
        self.log("train/ssl_loss", loss, prog_bar=True, batch_size=n, on_step=True, on_epoch=True)
        self.log("train/top1", monitors["top1"], batch_size=n, on_step=False, on_epoch=True)
        self.log("train/spread", monitors["spread"], batch_size=n, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """The SSL loss on held-out patients (a batch of one series is skipped)."""
        n = int(batch["view1"].shape[0])
        if n < 2:
            return
        loss, monitors = self.pair_step(batch)
        self._acc["val"].add({"loss": float(loss), **monitors}, n)
        self.log("val/ssl_loss", loss, prog_bar=True, batch_size=n, on_epoch=True)
        self.log("val/top1", monitors["top1"], batch_size=n, on_epoch=True)

    # ---- history ----------------------------------------------------------------------------
    def finish_epoch(self) -> None:
        """Append this epoch's means to :attr:`history` (once per epoch)."""
        epoch = int(self.current_epoch) + 1
        if self.history and self.history[-1]["epoch"] >= epoch:
            return
        row: dict[str, float] = {"epoch": epoch}
        for stage, acc in self._acc.items():
            for key, value in acc.means().items():
                row[f"{stage}_{key}"] = round(value, 6)
        self.history.append(row)

    def on_validation_epoch_end(self) -> None:
        """Close the epoch's history row before the checkpoint is written."""
        if not self.trainer.sanity_checking and self._acc["train"].n:
            self.finish_epoch()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the loss curve across an interrupted run."""
        checkpoint["ssl_history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the loss curve when resuming."""
        self.history = list(checkpoint.get("ssl_history", []))

    # ---- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """AdamW (no decay on biases and norms); linear warm-up then cosine decay per step."""
        o = self.config.optim
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": o.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=o.lr,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        warmup = min(o.warmup_epochs * per_epoch, total // 2)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
