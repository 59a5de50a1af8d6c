"""``pretrain(config, out_dir)``: one self-supervised pretraining run.

The run directory is laid out so that ``model.init_from: RUN`` in a training config works
unchanged::

    RUN/
      config.yaml           the resolved pretraining config
      checkpoints/          best.ckpt + last.ckpt (Lightning, for resuming) and model.pt
                            (format hidim-model/1: hparams + state dict with net.backbone.*)
      logs/metrics.csv      per-step and per-epoch SSL loss, top-1, spread
      initial_metrics.json  the SSL loss etc. before training (kept for resuming)
      pretrain.json         method, epochs, loss curve (epoch 0 = before training), the SSL
                            loss of one fixed set of training pairs before and after
                            (``fixed_pairs``: free of the epoch-to-epoch draw noise), data
                            counts, seconds, and the model/data keys a downstream config needs
      run.json              provenance

The best checkpoint is the one with the lowest held-out SSL loss (``data.holdout_fraction``
of the patients, always the same pairs); without a hold-out the last epoch is kept. A re-run
with the same config resumes from ``last.ckpt``; a finished run is not overwritten without
``overwrite=True``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from hidim.errors import ModelError, TrainingError
from hidim.models.registry import backbone_spec, check_input_shape
from hidim.pretrain.config import SSLConfig, dump_ssl_config
from hidim.pretrain.data import PairDataset, build_pair_datasets
from hidim.pretrain.losses import embedding_spread, pair_top1
from hidim.pretrain.module import SSLModule, ssl_objective
from hidim.provenance import atomic_write_text, file_sha256, write_run_json
from hidim.training.train import MODEL_FILE, save_model

__all__ = ["PretrainResult", "pretrain", "save_ssl_model", "eval_batches", "PRETRAIN_FILE"]

PRETRAIN_FILE = "pretrain.json"
_INITIAL_FILE = "initial_metrics.json"
_OUTPUTS = ("checkpoints", "logs", "config.yaml", _INITIAL_FILE, PRETRAIN_FILE, "run.json")


@dataclass(frozen=True)
class PretrainResult:
    """What :func:`pretrain` produced.

    Attributes:
        run_dir: The run directory (pass it to ``model.init_from``).
        model_file: ``checkpoints/model.pt``.
        summary: Contents of ``pretrain.json``.
        seconds: Wall-clock time of this call.
    """

    run_dir: Path
    model_file: Path
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def save_ssl_model(module: SSLModule, path: Path) -> None:
    """Write ``model.pt`` in the training format (``hidim-model/1``), atomically."""
    save_model(module, path)


def _in_channels(config: SSLConfig, train: PairDataset) -> int:
    if config.model.in_channels is not None:
        return config.model.in_channels
    rows = train.base.rows
    channels = sorted({int(c) for c in rows["channels"].dropna()}) if "channels" in rows else []
    if len(channels) != 1:
        raise TrainingError(
            f"the selected series have channel counts {channels}; set model.in_channels and "
            "curate to one channel count"
        )
    return channels[0]


def _check_shape(config: SSLConfig, train: PairDataset) -> None:
    clip = train[0]["view1"]
    spec = backbone_spec(config.model.backbone)
    try:
        check_input_shape(spec, (config.data.batch_size, *clip.shape))
    except ModelError as exc:
        raise TrainingError(f"pretraining clips do not fit the backbone: {exc}") from exc


def eval_batches(n: int, batch_size: int) -> list[list[int]]:
    """Consecutive batches of ``range(n)`` with no batch of one (a lone tail joins the last).

    A contrastive loss needs at least two series per batch; nothing is left out.
    """
    batches = [list(range(i, min(n, i + batch_size))) for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2].extend(batches.pop())
    return batches


def _loader(ds: PairDataset, *, batch_size: int, shuffle: bool, seed: int, workers: int) -> Any:
    """Training: shuffled full batches (NT-Xent needs its negatives). Otherwise: fixed order,
    every series once, no batch of one."""
    if not shuffle:
        return DataLoader(
            ds,
            batch_sampler=eval_batches(len(ds), batch_size),
            num_workers=workers,
            persistent_workers=False,
        )
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )


@torch.no_grad()
def _pair_metrics(module: SSLModule, loader: Any, *, train_mode: bool) -> dict[str, float]:
    """Mean SSL loss / top-1 / spread of the pairs of ``loader``, without training.

    ``train_mode`` uses batch statistics in batch norm, as training does (on a copy, so the
    module's running statistics are untouched); otherwise eval mode, as validation does.
    """
    net = copy.deepcopy(module.net)
    net.train(train_mode)
    sums = {"loss": 0.0, "top1": 0.0, "spread": 0.0}
    n = 0
    for batch in loader:
        b = int(batch["view1"].shape[0])
        if b < 2:
            continue
        h, z = net(torch.cat([batch["view1"], batch["view2"]]))
        z1, z2 = z.chunk(2)
        h1, h2 = h.chunk(2)
        sums["loss"] += float(ssl_objective(module.config, z1, z2)) * b
        sums["top1"] += float(pair_top1(h1, h2)) * b
        sums["spread"] += float(embedding_spread(h)) * b
        n += b
    return {k: round(v / n, 6) for k, v in sums.items()} if n else {}


class _EpochRecorder(L.Callback):
    """Closes the history row when there is no validation loop (runs before checkpointing)."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if isinstance(pl_module, SSLModule):
            pl_module.finish_epoch()


def _make_trainer(
    config: SSLConfig, run_dir: Path, *, monitor: str | None, n_batches: int
) -> tuple[L.Trainer, Any]:
    """The Lightning trainer (checkpoints, early stopping, progress, loggers)."""
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    t = config.trainer
    ckpt = ModelCheckpoint(
        dirpath=str(run_dir / "checkpoints"),
        filename="best",
        monitor=monitor,
        mode="min",
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )
    callbacks: list[Any] = [_EpochRecorder(), ckpt]
    if t.early_stopping_patience > 0 and monitor is not None:
        callbacks.append(
            EarlyStopping(monitor=monitor, mode="min", patience=t.early_stopping_patience)
        )
    if t.progress_bar:
        callbacks.append(RichProgressBar(leave=False))
    loggers: list[Any] = []
    if "csv" in t.loggers:
        loggers.append(CSVLogger(save_dir=str(run_dir), name="logs", version=""))
    if "tensorboard" in t.loggers:
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="logs", version="tb"))
    trainer = L.Trainer(
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        precision=t.precision,  # type: ignore[arg-type]
        deterministic=t.deterministic,
        log_every_n_steps=min(t.log_every_n_steps, n_batches),
        callbacks=callbacks,
        logger=loggers or False,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(run_dir),
    )
    if trainer.world_size > 1:
        raise TrainingError(
            f"hidim pretrain runs on one device, the trainer has {trainer.world_size}: NT-Xent "
            "across devices would need negatives gathered from every device; set "
            "trainer.devices=1"
        )
    return trainer, ckpt


def _prepare_dir(config: SSLConfig, run_dir: Path, overwrite: bool) -> None:
    if overwrite and run_dir.exists():
        for name in _OUTPUTS:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    if (run_dir / "run.json").exists():
        raise TrainingError(
            f"{run_dir} already holds a finished pretraining run (run.json); choose a new --out "
            "or pass --overwrite"
        )
    previous = run_dir / "config.yaml"
    if previous.exists() and previous.read_text(encoding="utf-8") != dump_ssl_config(config):
        raise TrainingError(
            f"{run_dir} holds an interrupted run with another config; re-run with the same "
            "config to resume it, or pass --overwrite"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(previous, dump_ssl_config(config))


def pretrain(
    config: SSLConfig, out_dir: str | os.PathLike[str], *, overwrite: bool = False
) -> PretrainResult:
    """Pretrain ``config.model``'s encoder self-supervised and write the run directory.

    Args:
        config: The validated pretraining config.
        out_dir: The run directory (created; resumed when it holds an interrupted run).
        overwrite: Replace a finished run in ``out_dir``.

    Returns:
        A :class:`PretrainResult`.

    Raises:
        TrainingError: too few series, clips that do not fit the backbone, a non-finite
            loss, or an existing run in ``out_dir``.
    """
    started = time.perf_counter()
    run_dir = Path(out_dir).absolute()
    store = Path(config.data.store).resolve()
    config = config.model_copy(update={"data": config.data.model_copy(update={"store": store})})
    _prepare_dir(config, run_dir, overwrite)
    seed = config.trainer.seed
    L.seed_everything(seed, workers=True, verbose=False)
    train_ds, held_ds, data_info = build_pair_datasets(config, seed=seed)
    in_channels = _in_channels(config, train_ds)
    _check_shape(config, train_ds)
    if len(train_ds) < 2:
        raise TrainingError(
            f"only {len(train_ds)} training series after the hold-out; lower "
            "data.holdout_fraction or add series"
        )
    if config.trainer.early_stopping_patience > 0 and held_ds is None:
        raise TrainingError(
            f"trainer.early_stopping_patience needs held-out series, but the hold-out of "
            f"{config.data.holdout_fraction:.0%} of {data_info['patients']} patients gave fewer "
            "than 2; raise data.holdout_fraction or set the patience to 0"
        )
    batch_size = min(config.data.batch_size, len(train_ds))
    workers = config.data.num_workers
    train_loader = _loader(
        train_ds, batch_size=batch_size, shuffle=True, seed=seed, workers=workers
    )
    held_loader = (
        _loader(held_ds, batch_size=batch_size, shuffle=False, seed=seed, workers=workers)
        if held_ds is not None
        else None
    )
    module = SSLModule(config=config, in_channels=in_channels)
    last = run_dir / "checkpoints" / "last.ckpt"
    initial: dict[str, Any] = {}
    if not last.is_file():
        fixed = _loader(train_ds, batch_size=batch_size, shuffle=False, seed=seed, workers=workers)
        initial["train"] = _pair_metrics(module, fixed, train_mode=True)
        if held_loader is not None:
            initial["val"] = _pair_metrics(module, held_loader, train_mode=False)
        L.seed_everything(seed, workers=True, verbose=False)  # same state as without it
        atomic_write_text(run_dir / _INITIAL_FILE, json.dumps(initial))
    else:
        initial = json.loads((run_dir / _INITIAL_FILE).read_text())
    monitor = "val/ssl_loss" if held_loader is not None else None
    trainer, ckpt = _make_trainer(
        config, run_dir, monitor=monitor, n_batches=max(1, len(train_ds) // batch_size)
    )
    trainer.fit(
        module,
        train_dataloaders=train_loader,
        val_dataloaders=held_loader,
        ckpt_path=str(last) if last.is_file() else None,
    )
    best = ckpt.best_model_path or ckpt.last_model_path
    history = list(module.history)
    if best and Path(best).is_file():
        state = torch.load(best, map_location="cpu", weights_only=False)
        module.load_state_dict(state["state_dict"])
        best_epoch = int(state.get("epoch", trainer.current_epoch - 1)) + 1
    else:
        best_epoch = int(trainer.current_epoch)
    model_file = run_dir / "checkpoints" / MODEL_FILE
    save_ssl_model(module, model_file)
    train_ds.set_epoch(0)  # the pairs "before" was measured on
    fixed = _loader(train_ds, batch_size=batch_size, shuffle=False, seed=seed, workers=workers)
    after = _pair_metrics(module, fixed, train_mode=True)
    seconds = round(time.perf_counter() - started, 1)
    curve = [{"epoch": 0, **_prefixed(initial)}, *history]
    summary: dict[str, Any] = {
        "method": config.ssl.method,
        "head": config.head_name,
        "backbone": config.model.backbone,
        "epochs": len(history),
        "best_epoch": best_epoch,
        "monitor": monitor,
        "batch_size": batch_size,
        "in_channels": in_channels,
        "clip_frames": config.data.clip_frames,
        "data": data_info,
        "curve": curve,
        "fixed_pairs": {"before": initial.get("train", {}), "after": after},
        "seconds": seconds,
        "model_file": str(model_file),
        "model_sha256": file_sha256(model_file),
        "downstream": {
            "data": {"views": config.data.views, "clip_frames": config.data.clip_frames},
            "model": {
                "backbone": config.model.backbone,
                "backbone_kwargs": dict(config.model.backbone_kwargs),
                "init_from": str(run_dir),
            },
        },
    }
    atomic_write_text(run_dir / PRETRAIN_FILE, json.dumps(summary, indent=2))
    hashes = {
        name: file_sha256(store / name)
        for name in ("manifest.parquet",)
        if (store / name).is_file()
    }
    write_run_json(
        run_dir,
        command="pretrain",
        config=config,
        seed=seed,
        input_hashes=hashes,
        extra={"method": config.ssl.method, "epochs": len(history), "seconds": seconds},
    )
    return PretrainResult(run_dir=run_dir, model_file=model_file, summary=summary, seconds=seconds)


def _prefixed(initial: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for stage, values in initial.items():
        for key, value in (values or {}).items():
            out[f"{stage}_{key}"] = value
    return out
