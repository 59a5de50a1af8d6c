"""``train(config, out_dir)``: one training run, an ensemble, or patient-level cross-validation.

A run directory holds::

    RUN/
      config.yaml            the resolved config
      preprocessing.json     clip length, fps, intensity, tabular encoder, group vocabulary
      checkpoints/           best.ckpt + last.ckpt (Lightning, for resuming) and model.pt
                             (weights + hyper-parameters only: what hidim predict loads)
      logs/                  metrics.csv (CSVLogger) and TensorBoard events
      predictions.parquet    per study (hidim predict on every split, run automatically)
      predictions_clips.parquet
      metrics.json           val + test metrics of the per-study predictions, bootstrap CIs
      run.json               provenance

An interrupted ``hidim train`` re-run with the same arguments resumes: finished members are
kept and the interrupted one continues from its ``last.ckpt``.

With ``ensemble=K`` the members live in ``members/<k>/`` (seeds ``seed + k``) and the
top-level predictions average them (uncertainty = spread across members). With
``folds=K`` the store's train+val patients are split into K patient-level folds, each
trained in ``folds/<k>/``; validation metrics are out-of-fold and test predictions average
the K fold models.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from hidim.errors import TrainingError
from hidim.provenance import atomic_write_text, write_run_json
from hidim.training.config import ExperimentConfig, default_monitor, dump_config
from hidim.training.datamodule import HidimDataModule
from hidim.training.metrics import head_kind
from hidim.training.module import HidimModule, Penalty
from hidim.training.ood_gate import (
    DENSITY_FILE,
    ImageFeatureTap,
    density_from_features,
    save_density,
)
from hidim.training.transfer import init_encoder_from

__all__ = ["RunResult", "train", "train_member", "MODEL_FILE", "PREPROCESSING_FILE", "MEMBER_FILE"]

MODEL_FILE = "model.pt"
MEMBER_FILE = "member.json"
REQUEST_FILE = "request.json"
_OUTPUTS = (
    "checkpoints",
    "members",
    "folds",
    "logs",
    "trials",
    MEMBER_FILE,
    REQUEST_FILE,
    "members.json",
    "metrics.json",
    "run.json",
    "preprocessing.json",
    "config.yaml",
    "predictions.parquet",
    "predictions_clips.parquet",
    "predictions.json",
    "survival_curves.parquet",
    "abstention.json",
)
PREPROCESSING_FILE = "preprocessing.json"
MODEL_FORMAT = "hidim-model/1"


@dataclass(frozen=True)
class RunResult:
    """What :func:`train` produced.

    Attributes:
        run_dir: The run directory.
        metrics: Contents of ``metrics.json``.
        members: Member directories (one for a single run; ``members/<k>`` or ``folds/<k>``).
        seconds: Wall-clock training time.
    """

    run_dir: Path
    metrics: dict[str, Any]
    members: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def _monitor(config: ExperimentConfig) -> tuple[str, str]:
    metric, mode = default_monitor(config.task.head)
    return (config.trainer.monitor or metric, config.trainer.mode or mode)


def _loggers(config: ExperimentConfig, member_dir: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    out: list[Any] = []
    for name in config.trainer.loggers:
        if name == "csv":
            out.append(CSVLogger(save_dir=str(member_dir), name="logs", version=""))
        elif name == "tensorboard":
            out.append(TensorBoardLogger(save_dir=str(member_dir), name="logs", version="tb"))
        elif name == "mlflow":
            try:
                from lightning.pytorch.loggers import MLFlowLogger

                out.append(
                    MLFlowLogger(
                        experiment_name="hidim",
                        tracking_uri=config.trainer.mlflow_tracking_uri,
                        run_name=member_dir.name,
                    )
                )
            except ModuleNotFoundError as exc:
                raise TrainingError(
                    "trainer.loggers lists mlflow but mlflow is not installed; "
                    "pip install mlflow or drop it from the list"
                ) from exc
    return out


def _precision(config: ExperimentConfig) -> str:
    p = config.trainer.precision
    if p == "16-mixed" and not torch.cuda.is_available():
        raise TrainingError(
            "trainer.precision 16-mixed needs a CUDA GPU; on CPU use bf16-mixed or 32-true"
        )
    return p


def _prepare_head(module: HidimModule, dm: HidimDataModule) -> None:
    """Fit the head's data-dependent state (standardisation, prior, time grid) on train."""
    arrays = dm.train_arrays()
    fit_grid = getattr(module.head, "fit_time_grid", None)
    fit_target = getattr(module.head, "fit_target", None)
    if module.kind == "survival":
        if callable(fit_grid):
            ok = np.isfinite(arrays["time"])
            fit_grid(arrays["time"][ok], arrays["event"][ok])
    elif callable(fit_target):
        fit_target(arrays["target"])


def _train_loader(dm: HidimDataModule) -> Any:
    """The training split (training folds in CV) with centre clips, in a fixed order."""
    ds = dm.dataset(
        "train" if dm.fold is None else ["train", "val"],
        sampling="centre",
        patients=None if dm.fold is None else dm.fold[0],
    )
    return dm._loader(ds, shuffle=False)


@torch.no_grad()
def _fit_after_training(
    module: HidimModule, dm: HidimDataModule, density_path: Path | None
) -> None:
    """What is fitted on the training split once the weights are final, in one pass
    (centre clips, eval mode): the Cox head's Breslow baseline (``fit_baseline``), an
    evidential head's feature density (``fit_density``: its buffers are part of the head's
    ``state_dict``, so :func:`save_model` stores them), and the image-density OOD gate
    (:mod:`hidim.training.ood_gate`, saved to ``density_path``; ``None``: not fitted).
    """
    head = module.head
    fit_baseline = getattr(head, "fit_baseline", None)
    fit_density = getattr(head, "fit_density", None)
    if not (callable(fit_baseline) or callable(fit_density) or density_path is not None):
        return
    kind = head_kind(head)
    classes = getattr(head, "n_classes", 2) if kind in ("binary", "multiclass") else None
    cols: dict[str, list[torch.Tensor]] = {}

    def keep(name: str, value: Any) -> None:
        cols.setdefault(name, []).append(torch.as_tensor(value).detach().cpu())

    hook = head.register_forward_hook(lambda _m, inputs, _out: keep("head_in", inputs[0].float()))
    module.eval()
    try:
        with ImageFeatureTap(module.net) as tap:
            for batch in _train_loader(dm):
                tap.clear()
                out = module(batch)
                keep("image", tap.first.float())
                if callable(fit_baseline):
                    keep("log_hazard", out["log_hazard"].float())
                    keep("time", batch["time"])
                    keep("event", batch["event"])
                if callable(fit_density) or classes is not None:
                    keep("target", batch["target"])
    finally:
        hook.remove()
    if not cols:
        raise TrainingError("fitting after training: the training split yielded no batches")
    cat = {k: torch.cat(v) for k, v in cols.items()}
    if callable(fit_baseline):
        fit_baseline(cat["log_hazard"], cat["time"].numpy(), cat["event"].numpy())
    if callable(fit_density):
        fit_density(cat["head_in"], cat["target"])
    if density_path is not None:
        density = density_from_features(cat["image"], cat.get("target"), classes=classes)
        save_density(density, density_path)


def save_model(
    module: L.LightningModule, path: Path, *, state_dict: dict[str, torch.Tensor] | None = None
) -> None:
    """Write ``model.pt`` (``MODEL_FORMAT``: plain hyper-parameters + tensors) atomically.

    The one writer of the format :func:`hidim.training.bundle.load_member` and
    :func:`hidim.training.transfer.init_encoder_from` read; ``hidim pretrain`` and
    ``hidim federated`` use it too. ``state_dict`` replaces the module's (e.g. a site's own
    batch-norm statistics).
    """
    state = module.state_dict() if state_dict is None else state_dict
    payload = {
        "format": MODEL_FORMAT,
        "hparams": json.loads(json.dumps(dict(module.hparams))),
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _preprocessing(dm: HidimDataModule, module: HidimModule) -> dict[str, Any]:
    d = dm.data
    m = dm.store.manifest
    if d.views is not None:
        m = m[m["view"].isin(d.views)]
    fps = sorted({round(float(v), 3) for v in m["fps"].dropna()}) if "fps" in m else []
    norms = sorted({str(v) for v in m["intensity_norm"].dropna()})
    methods = sorted({json.loads(v).get("method", "?") for v in norms if v.startswith("{")})
    backbone = module.net.backbone or getattr(module.net.multiview, "backbone", None)
    enc = dm.encoder
    return {
        "clip_frames": d.clip_frames,
        "short": d.short,
        "views": d.views,
        "fps": fps,
        "intensity_methods": methods,
        "in_channels": int(module.hparams["in_channels"]),
        "weights": getattr(backbone, "weights_info", None),
        "tabular_encoder": asdict(enc) if enc is not None else None,
        "group_vocab": dm.coder.vocab if dm.coder is not None else {},
        "threshold": d.threshold,
        "positive_below": d.positive_below,
    }


def train_member(
    config: ExperimentConfig,
    member_dir: str | os.PathLike[str],
    *,
    seed: int,
    fold: tuple[Sequence[str], Sequence[str]] | None = None,
    penalties: Sequence[Penalty] = (),
    callbacks: Sequence[Any] = (),
    max_epochs: int | None = None,
) -> dict[str, Any]:
    """Train one model into ``member_dir`` (checkpoints, logs, model.pt, preprocessing.json).

    Resumable: a member whose ``member.json`` exists is not retrained, and an interrupted
    one continues from ``checkpoints/last.ckpt`` (weights, optimiser, epoch, RNG-free
    data order since clip starts and batches are seeded per epoch).

    Returns:
        ``{"best_score": float | None, "monitor": str, "epochs": int, "best_checkpoint": str}``
        (also written to ``member.json``).
    """
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar

    out = Path(member_dir).absolute()
    done = out / MEMBER_FILE
    if done.is_file() and (out / "checkpoints" / MODEL_FILE).is_file() and not callbacks:
        return dict(json.loads(done.read_text(encoding="utf-8")))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    L.seed_everything(seed, workers=True, verbose=False)
    dm = HidimDataModule(
        config.data, multiview=config.model.multiview is not None, seed=seed, fold=fold
    )
    dm.setup()
    layout = dm.tabular_layout() if config.model.tabular else None
    module = HidimModule(
        config=config,
        in_channels=config.model.in_channels or dm.in_channels,
        tabular_layout=layout,
        penalties=penalties,
    )
    init_info = None
    if config.model.init_from:
        init_info = init_encoder_from(module.net, config.model.init_from)
    _prepare_head(module, dm)
    monitor, mode = _monitor(config)
    ckpt = ModelCheckpoint(
        dirpath=str(out / "checkpoints"),
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )
    cbs: list[Any] = [ckpt, *callbacks]
    t = config.trainer
    if t.early_stopping_patience > 0:
        cbs.append(
            EarlyStopping(
                monitor=monitor, mode=mode, patience=t.early_stopping_patience, check_finite=False
            )
        )
    if t.progress_bar:
        cbs.append(RichProgressBar(leave=False))
    n_batches = max(1, len(dm.datasets["train"]) // config.data.batch_size)
    trainer = L.Trainer(
        max_epochs=max_epochs or t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=_precision(config),  # type: ignore[arg-type]
        deterministic=t.deterministic,
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val,
        limit_train_batches=t.limit_train_batches,
        log_every_n_steps=min(t.log_every_n_steps, n_batches),
        callbacks=cbs,
        logger=_loggers(config, out) or False,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(out),
    )
    last = out / "checkpoints" / "last.ckpt"
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if last.is_file() else None)
    if not trainer.is_global_zero:  # DDP worker: rank 0 writes everything
        return {"monitor": monitor, "best_score": None, "global_rank": trainer.global_rank}
    best = ckpt.best_model_path or ckpt.last_model_path
    if best:
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    density_path = out / "checkpoints" / DENSITY_FILE if config.uncertainty.ood_gate else None
    _fit_after_training(module, dm, density_path)
    save_model(module, out / "checkpoints" / MODEL_FILE)
    pre = {**_preprocessing(dm, module), "init_from": init_info}
    atomic_write_text(out / PREPROCESSING_FILE, json.dumps(pre, indent=2))
    score = ckpt.best_model_score
    info = {
        "monitor": monitor,
        "mode": mode,
        "best_score": float(score) if score is not None and torch.isfinite(score) else None,
        "epochs": int(trainer.current_epoch),
        "best_checkpoint": str(Path(best).relative_to(out)) if best else None,
        "seed": seed,
        "holdout_patients": sorted(fold[1]) if fold is not None else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_text(done, json.dumps(info, indent=2))
    return info


def _write_common(config: ExperimentConfig, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_config(config))


def train(
    config: ExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    ensemble: int = 1,
    folds: int | None = None,
    penalties: Sequence[Penalty] = (),
    overwrite: bool = False,
    evaluate: bool = True,
) -> RunResult:
    """Train a model (or an ensemble, or K patient folds) and write the run directory.

    Args:
        config: The validated experiment config.
        out_dir: The run directory (created).
        ensemble: Members trained with seeds ``seed, seed + 1, ...``.
        folds: Patient-level cross-validation folds (``None``: use the store's splits).
        penalties: Extra loss terms (see :class:`~hidim.training.module.HidimModule`).
        overwrite: Replace an existing run directory that already holds a trained model.
        evaluate: Run :func:`hidim.training.predict.predict` on every split afterwards and
            write ``metrics.json`` (val + test, bootstrap CIs).

    Returns:
        A :class:`RunResult`.
    """
    if ensemble < 1:
        raise TrainingError(f"ensemble must be >= 1, got {ensemble}")
    if folds is not None and folds < 2:
        raise TrainingError(f"folds must be >= 2, got {folds}")
    if folds is not None and ensemble > 1:
        raise TrainingError("use either --ensemble or --folds, not both (folds already ensemble)")
    run_dir = Path(out_dir)
    store_abs = Path(config.data.store).resolve()
    config = config.model_copy(update={"data": config.data.model_copy(update={"store": store_abs})})
    request = {"ensemble": ensemble, "folds": folds}
    if overwrite and run_dir.exists():
        for name in _OUTPUTS:
            path = run_dir / name
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(
                missing_ok=True
            )
    if (run_dir / "run.json").exists():
        raise TrainingError(
            f"{run_dir} already holds a finished run (run.json); choose a new --out or pass "
            "--overwrite"
        )
    if (run_dir / "config.yaml").exists():
        same = (run_dir / "config.yaml").read_text(encoding="utf-8") == dump_config(config)
        previous = run_dir / REQUEST_FILE
        same = same and previous.is_file() and json.loads(previous.read_text()) == request
        if not same:
            raise TrainingError(
                f"{run_dir} holds an interrupted run with another config or --ensemble/--folds; "
                "re-run with the same arguments to resume it, or pass --overwrite"
            )
    _write_common(config, run_dir)
    atomic_write_text(run_dir / REQUEST_FILE, json.dumps(request))
    start = time.perf_counter()
    seed = config.trainer.seed
    members: list[Path] = []
    infos: list[dict[str, Any]] = []
    if folds is not None:
        from hidim.training.cv import patient_folds_for_config

        for k, (train_p, val_p) in enumerate(patient_folds_for_config(config, folds, seed=seed)):
            member = run_dir / "folds" / str(k)
            infos.append(
                train_member(config, member, seed=seed, fold=(train_p, val_p), penalties=penalties)
            )
            members.append(member)
    elif ensemble > 1:
        for k in range(ensemble):
            member = run_dir / "members" / str(k)
            infos.append(train_member(config, member, seed=seed + k, penalties=penalties))
            members.append(member)
    else:
        infos.append(train_member(config, run_dir, seed=seed, penalties=penalties))
        members.append(run_dir)
    seconds = time.perf_counter() - start
    if any(info.get("global_rank", 0) != 0 for info in infos):
        return RunResult(run_dir=run_dir, metrics={}, members=members, seconds=seconds)
    atomic_write_text(
        run_dir / "members.json",
        json.dumps(
            {
                "kind": "folds" if folds else ("ensemble" if ensemble > 1 else "single"),
                "members": [
                    {"dir": str(m.relative_to(run_dir)) or ".", **info}
                    for m, info in zip(members, infos, strict=True)
                ],
            },
            indent=2,
        ),
    )
    if folds is not None or ensemble > 1:
        shutil.copyfile(members[0] / PREPROCESSING_FILE, run_dir / PREPROCESSING_FILE)
    metrics: dict[str, Any] = {"training": infos, "seconds": round(seconds, 2)}
    if evaluate:
        from hidim.training.predict import predict, predictions_metrics

        result = predict(run_dir, show_progress=config.trainer.progress_bar)
        metrics.update(
            predictions_metrics(
                result.studies, result.task, seed=seed, n_boot=config.trainer.bootstrap_samples
            )
        )
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, default=_plain))
    from hidim.provenance import file_sha256

    hashes = {
        name: file_sha256(store_abs / name)
        for name in ("manifest.parquet", "labels.parquet")
        if (store_abs / name).is_file()
    }
    write_run_json(
        run_dir,
        command="train",
        config=config,
        seed=seed,
        input_hashes=hashes,
        extra={
            "ensemble": ensemble,
            "folds": folds,
            "members": [str(m.relative_to(run_dir)) or "." for m in members],
            "seconds": round(seconds, 2),
            "store": str(store_abs),
        },
    )
    return RunResult(run_dir=run_dir, metrics=metrics, members=members, seconds=seconds)


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
