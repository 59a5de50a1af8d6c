"""``HidimModule``: the one LightningModule (network + head + loss + penalties + metrics).

The network is built from the config (:func:`build_network`): a registered backbone (or a
multi-view fusion of backbones), optional tabular fusion, and a registered head. The loss is
the head's own loss plus any *penalties*: callables ``penalty(outputs, batch) -> Tensor``
receiving the head's raw outputs merged with its (differentiable) predictions — ``score``,
``prob``, ``risk`` — and the batch (with ``group__<col>`` codes). A ``fairness`` config
section adds the penalty built by :func:`hidim.training.fairness.build_penalty`.

Validation collects every prediction of the epoch and logs ``val/<metric>`` for the task
(``val/r2``, ``val/auroc``, ``val/cindex`` ...) and ``val/loss``.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from hidim.errors import ConfigError, HidimError, TrainingError
from hidim.models.fusion import MultiViewFusion, TabularFusion
from hidim.models.network import HidimNet
from hidim.models.registry import backbone_spec, get_backbone
from hidim.tasks.base import Head, get_head
from hidim.training.config import ExperimentConfig, config_from_dict
from hidim.training.metrics import compute_metrics, head_kind

__all__ = ["HidimModule", "build_network", "load_task_modules", "Penalty"]

Penalty = Callable[[Mapping[str, Tensor], Mapping[str, Any]], Tensor]

_TASK_MODULES = (
    "hidim.tasks.classification",
    "hidim.tasks.regression",
    "hidim.tasks.survival",
    "hidim.tasks.evidential",
)


def load_task_modules() -> None:
    """Import the modules whose ``@register_head`` entries the config may name."""
    for name in _TASK_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a task module not shipped in this build
            if exc.name != name:
                raise


def _make_head(name: str, in_features: int, params: Mapping[str, Any]) -> Head:
    load_task_modules()
    try:
        cls = get_head(name)
    except HidimError as exc:
        raise ConfigError(f"task.head: {exc}") from exc
    try:
        return cls(in_features=in_features, **dict(params))
    except TypeError as exc:
        sig = inspect.signature(cls.__init__)
        allowed = [p for p in sig.parameters if p not in ("self", "in_features")]
        raise ConfigError(
            f"task.params for head {name!r}: {exc}; the head takes {allowed}"
        ) from exc


def build_network(
    config: ExperimentConfig,
    *,
    in_channels: int,
    tabular_layout: tuple[int, Sequence[tuple[int, int]]] | None = None,
) -> HidimNet:
    """Build the network a config describes.

    Args:
        config: The experiment config.
        in_channels: Channels of the data (``model.in_channels`` overrides it).
        tabular_layout: ``(F, one-hot groups)`` of the tabular features (needed when
            ``model.tabular`` is set; see :func:`hidim.training.datamodule.tabular_layout`).
    """
    m = config.model
    channels = m.in_channels or in_channels
    spec = backbone_spec(m.backbone)

    def make() -> Any:
        return get_backbone(
            m.backbone, in_channels=channels, weights=m.weights, **m.backbone_kwargs
        )

    backbone = None
    multiview = None
    if m.multiview is not None:
        n_views = len(config.data.views or ())
        nets = make() if m.multiview.shared else [make() for _ in range(n_views)]
        multiview = MultiViewFusion(
            backbones=nets,
            n_views=n_views,
            pooling=m.multiview.pooling,
            view_embedding=m.multiview.view_embedding,
        )
        image_dim = multiview.out_dim
    else:
        backbone = make()
        image_dim = backbone.out_dim
    tabular = None
    if m.tabular:
        if tabular_layout is None:
            raise TrainingError("model.tabular needs the tabular layout from the DataModule")
        n_features, groups = tabular_layout
        tabular = TabularFusion(
            image_dim=image_dim,
            n_features=int(n_features),
            categorical=[tuple(g) for g in groups],  # type: ignore[misc]
            tabular_dim=m.tabular_dim,
            dropout=m.fusion_dropout,
        )
    feature_dim = tabular.out_dim if tabular is not None else image_dim
    head = _make_head(config.task.head, feature_dim, config.task.params)
    return HidimNet(
        head=head, backbone=backbone, multiview=multiview, tabular=tabular, input_spec=spec
    )


def _fairness_penalty(config: ExperimentConfig) -> Penalty:
    from hidim.training import fairness  # written by the fairness helper; imported lazily

    f = config.fairness
    if f is None:
        raise TrainingError("no fairness section in the config")
    return fairness.build_penalty(kind=f.kind, group=f.group, weight=f.weight, **f.extra_kwargs())


class HidimModule(L.LightningModule):
    """Network + head loss + penalties + validation metrics.

    Args:
        config: The experiment config (or its ``model_dump`` dict, as stored in checkpoints).
        in_channels: Channels of the input clips.
        tabular_layout: ``(F, one-hot groups)`` when ``model.tabular`` is set.
        penalties: Extra loss terms ``penalty(outputs, batch) -> scalar`` (added as given).
    """

    def __init__(
        self,
        *,
        config: ExperimentConfig | Mapping[str, Any],
        in_channels: int,
        tabular_layout: tuple[int, Sequence[tuple[int, int]]] | None = None,
        penalties: Sequence[Penalty] = (),
    ) -> None:
        super().__init__()
        cfg = config if isinstance(config, ExperimentConfig) else config_from_dict(config)
        self.save_hyperparameters(
            {
                "config": cfg.model_dump(mode="json"),
                "in_channels": int(in_channels),
                "tabular_layout": (
                    [int(tabular_layout[0]), [list(g) for g in tabular_layout[1]]]
                    if tabular_layout is not None
                    else None
                ),
            }
        )
        self.config = cfg
        self.net = build_network(cfg, in_channels=in_channels, tabular_layout=tabular_layout)
        if cfg.model.freeze_encoder:
            from hidim.training.transfer import freeze_encoder

            freeze_encoder(self.net)
        self.kind = head_kind(self.net.head)
        self.penalties: list[Penalty] = list(penalties)
        if cfg.fairness is not None:
            self.penalties.append(_fairness_penalty(cfg))
        self._collected: dict[str, list[dict[str, np.ndarray]]] = {"val": [], "test": []}

    @property
    def head(self) -> Head:
        """The task head."""
        return self.net.head  # type: ignore[return-value]

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Head outputs for a batch."""
        return self.net.forward_batch(dict(batch))

    # ---- training ---------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        """New random clip starts / batch order for this epoch (reproducible)."""
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "set_epoch"):
            dm.set_epoch(self.current_epoch)
        if self.config.model.freeze_encoder:  # keep pretrained batch-norm statistics
            self.net.image_encoder.eval()
        set_epoch = getattr(self.head, "set_epoch", None)
        if callable(set_epoch):  # e.g. KL annealing of evidential heads
            set_epoch(self.current_epoch)

    def _loss(
        self, batch: Mapping[str, Any], outputs: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        loss = self.head.loss(outputs, batch)
        penalty = loss.new_zeros(())
        if self.penalties:
            merged = {**self.head.predict(outputs), **outputs}
            for fn in self.penalties:
                penalty = penalty + fn(merged, batch)
        return loss, penalty

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """Head loss + penalties."""
        outputs = self(batch)
        loss, penalty = self._loss(batch, outputs)
        total = loss + penalty
        if not torch.isfinite(total):
            raise TrainingError(
                f"training loss became {total.item()} at epoch {self.current_epoch}, batch "
                f"{batch_idx}; lower optim.lr or check the targets"
            )
        bs = _batch_size(batch)
        self.log(
            "train/loss",
            loss,
            prog_bar=True,
            batch_size=bs,
            on_step=True,
            on_epoch=True,
            sync_dist=True,
        )
        if self.penalties:
            self.log(
                "train/penalty",
                penalty,
                batch_size=bs,
                on_step=False,
                on_epoch=True,
                sync_dist=True,
            )
        return total

    # ---- evaluation ---------------------------------------------------------------------------
    def _eval_step(self, batch: Mapping[str, Any], stage: str) -> None:
        outputs = self(batch)
        loss, _ = self._loss(batch, outputs) if self._has_targets(batch) else (None, None)
        preds = self.head.predict(outputs)
        row: dict[str, np.ndarray] = {"score": preds["score"].detach().float().cpu().numpy()}
        if "prob" in preds:
            row["prob"] = preds["prob"].detach().float().cpu().numpy()
        for key in ("target", "time", "event"):
            if key in batch and isinstance(batch[key], Tensor) and batch[key].ndim == 1:
                row[key] = batch[key].detach().cpu().numpy()
        self._collected[stage].append(row)
        if loss is not None:
            self.log(
                f"{stage}/loss", loss, batch_size=_batch_size(batch), on_epoch=True, sync_dist=True
            )

    def _has_targets(self, batch: Mapping[str, Any]) -> bool:
        if self.kind == "survival":
            t = batch.get("time")
            return isinstance(t, Tensor) and bool(torch.isfinite(t).all())
        t = batch.get("target")
        return isinstance(t, Tensor) and t.ndim == 1

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Loss and predictions (metrics at epoch end)."""
        self._eval_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """As validation, on the test split."""
        self._eval_step(batch, "test")

    def _epoch_metrics(self, stage: str) -> None:
        rows = self._collected[stage]
        self._collected[stage] = []
        if not rows:
            return
        cat = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
        if self.trainer.world_size > 1:  # DDP: every rank scores the whole split
            cat = {k: self._gather(v) for k, v in cat.items()}
        try:
            values = compute_metrics(
                self.kind,
                score=cat["score"],
                target=cat.get("target"),
                prob=cat.get("prob"),
                time=cat.get("time"),
                event=cat.get("event"),
            )
        except HidimError:
            values = {}
        for name, value in values.items():
            # identical on every rank (predictions were gathered): no reduction needed
            self.log(
                f"{stage}/{name}",
                float(value) if math.isfinite(value) else math.nan,
                sync_dist=True,
            )

    def _gather(self, values: np.ndarray) -> np.ndarray:
        """All ranks' values concatenated (DistributedSampler pads ranks to equal length)."""
        t = torch.as_tensor(values.astype(np.float64), device=self.device)
        gathered = self.all_gather(t).reshape(-1, *values.shape[1:]).cpu().numpy()
        return gathered.astype(values.dtype) if values.dtype != bool else gathered > 0.5

    def on_validation_epoch_end(self) -> None:
        """Log ``val/<metric>``."""
        self._epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        """Log ``test/<metric>``."""
        self._epoch_metrics("test")

    # ---- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """AdamW/Adam/SGD without weight decay on biases and norms; cosine or one-cycle."""
        o = self.config.optim
        decay: list[torch.nn.Parameter] = []
        no_decay: list[torch.nn.Parameter] = []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": o.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if o.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                groups, lr=o.lr, momentum=o.momentum, nesterov=True
            )
        elif o.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=o.lr)
        else:
            opt = torch.optim.AdamW(groups, lr=o.lr)
        if o.scheduler == "none":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched: torch.optim.lr_scheduler.LRScheduler
        if o.scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o.lr, total_steps=total)
        else:
            steps_per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
            warmup = o.warmup_epochs * steps_per_epoch

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                progress = (step - warmup) / max(1, total - warmup)
                return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _batch_size(batch: Mapping[str, Any]) -> int:
    x = batch.get("clip", batch.get("clips"))
    return int(x.shape[0]) if isinstance(x, Tensor) else 1
