"""What a site computes on its own data with a given model: local training, evaluation,
and the post-training aggregates (Cox baseline, feature densities).

Everything here runs *at the site*; the returned values are what may leave it: a loss and
metrics (scalars), counts, and the aggregates of :mod:`hidim.federated.aggregates`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import lightning as L
import numpy as np
import torch

from hidim.errors import FederatedError, HidimError
from hidim.federated.aggregates import (
    DensityMoments,
    density_moments,
    pem_statistics,
    site_quantiles,
)
from hidim.federated.site_data import SiteDataModule
from hidim.tasks.feature_density import FeatureDensity
from hidim.training.config import ExperimentConfig
from hidim.training.metrics import compute_metrics, head_kind
from hidim.training.module import HidimModule
from hidim.training.ood_gate import ImageFeatureTap

__all__ = [
    "local_fit",
    "evaluate_split",
    "finalise_aggregates",
    "reference_quantiles",
    "collect_training_features",
    "density_classes",
    "refine_grid",
    "PEM_REFINE",
]

#: Each interval of a Cox head's output grid is split into this many for the baseline.
PEM_REFINE = 20


def local_fit(
    module: HidimModule, dm: SiteDataModule, config: ExperimentConfig, *, epochs: int
) -> dict[str, float]:
    """Train ``module`` for ``epochs`` epochs on the site's training split (in place).

    A fresh Lightning ``Trainer`` (and so a fresh optimiser and learning-rate schedule over
    these ``epochs``) per call — plain FedAvg/FedProx local training; no validation,
    checkpoints or logs (the server evaluates every round).

    Returns:
        ``{"train_loss": mean training loss of the last epoch}``.
    """
    t = config.trainer
    if t.precision == "16-mixed" and not torch.cuda.is_available():
        raise FederatedError(
            "trainer.precision 16-mixed needs a CUDA GPU; use bf16-mixed or 32-true"
        )
    n_batches = max(1, len(dm.datasets["train"]) // config.data.batch_size)
    with _quiet_lightning():
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator=t.accelerator,
            devices=1,
            precision=t.precision,  # type: ignore[arg-type]
            deterministic=t.deterministic,
            accumulate_grad_batches=t.accumulate_grad_batches,
            gradient_clip_val=t.gradient_clip_val,
            limit_train_batches=t.limit_train_batches,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            log_every_n_steps=min(t.log_every_n_steps, n_batches),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    module.train()  # Lightning keeps the mode it finds; evaluation left the module in eval
    with _quiet_lightning():
        trainer.fit(module, datamodule=dm)
    loss = trainer.callback_metrics.get("train/loss_epoch")
    return {"train_loss": float(loss) if loss is not None else math.nan}


@torch.no_grad()
def evaluate_split(module: HidimModule, dm: SiteDataModule, split: str) -> dict[str, float]:
    """Loss and hidim's metrics of ``module`` on one split of the site (centre clips).

    Returns:
        ``{"n": items, "loss": mean head loss, <metric>: value, ...}`` (NaN where undefined,
        e.g. an empty split or one class only).
    """
    dm.setup()
    if len(dm.datasets[split]) == 0:
        return {"n": 0, "loss": math.nan}
    module.eval()
    head = module.head
    kind = head_kind(head)
    cols: dict[str, list[np.ndarray]] = {}
    losses: list[tuple[float, int]] = []
    for batch in dm.eval_loader(split):
        outputs = module(batch)
        preds = head.predict(outputs)
        n = int(preds["score"].shape[0])
        if _has_targets(kind, batch):
            losses.append((float(head.loss(outputs, batch)), n))
        cols.setdefault("score", []).append(preds["score"].float().cpu().numpy())
        if "prob" in preds:
            cols.setdefault("prob", []).append(preds["prob"].float().cpu().numpy())
        for key in ("target", "time", "event"):
            value = batch.get(key)
            if isinstance(value, torch.Tensor) and value.ndim == 1:
                cols.setdefault(key, []).append(value.cpu().numpy())
    cat = {k: np.concatenate(v) for k, v in cols.items()}
    try:
        values = compute_metrics(
            kind,
            score=cat["score"],
            target=cat.get("target"),
            prob=cat.get("prob"),
            time=cat.get("time"),
            event=cat.get("event"),
        )
    except HidimError:
        values = {}
    total = sum(n for _, n in losses)
    loss = sum(v * n for v, n in losses) / total if total else math.nan
    return {"n": int(cat["score"].shape[0]), "loss": float(loss), **values}


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's per-``Trainer`` banners (devices, tips) would repeat every round."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # Lightning's own deprecation inside its pytree helper, once per round otherwise
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        logger.setLevel(level)


def _has_targets(kind: str, batch: Mapping[str, Any]) -> bool:
    key = "time" if kind == "survival" else "target"
    value = batch.get(key)
    return (
        isinstance(value, torch.Tensor)
        and value.ndim == 1
        and bool(torch.isfinite(value.float()).all())
    )


def density_classes(module: HidimModule) -> int | None:
    """Classes of the image density (classifiers: one mean per class; else ``None``)."""
    kind = head_kind(module.head)
    return int(getattr(module.head, "n_classes", 2)) if kind in ("binary", "multiclass") else None


@torch.no_grad()
def collect_training_features(
    module: HidimModule, dm: SiteDataModule, *, image: bool, head_inputs: bool
) -> dict[str, np.ndarray]:
    """One eval-mode pass over the training split (centre clips, fixed order).

    Returns:
        ``eta`` (Cox ``log_hazard``, if the head has it), ``target``, ``time``, ``event``,
        and optionally ``image`` ``[N, D]`` embeddings and ``head`` ``[N, D_h]`` head inputs.
    """
    module.eval()
    net = module.net
    head_feats: list[torch.Tensor] = []
    hook = (
        net.head.register_forward_hook(
            lambda _m, inputs, _out: head_feats.append(inputs[0].detach().float().cpu())
        )
        if head_inputs
        else None
    )
    out: dict[str, list[np.ndarray]] = {}
    try:
        with ImageFeatureTap(net) as tap:
            for batch in dm.eval_loader("train"):
                tap.clear()
                outputs = module(batch)
                if image:
                    out.setdefault("image", []).append(tap.first.float().cpu().numpy())
                if "log_hazard" in outputs:
                    out.setdefault("eta", []).append(outputs["log_hazard"].float().cpu().numpy())
                for key in ("target", "time", "event"):
                    value = batch.get(key)
                    if isinstance(value, torch.Tensor) and value.ndim == 1:
                        out.setdefault(key, []).append(value.cpu().numpy())
    finally:
        if hook is not None:
            hook.remove()
    arrays = {k: np.concatenate(v) for k, v in out.items()}
    if head_inputs and head_feats:
        arrays["head"] = torch.cat(head_feats).numpy()
    return arrays


def refine_grid(edges: np.ndarray, factor: int = PEM_REFINE) -> np.ndarray:
    """Split every interval of ``edges`` into ``factor`` equal parts."""
    e = np.asarray(edges, dtype=np.float64)
    parts = [np.linspace(a, b, factor + 1)[:-1] for a, b in zip(e[:-1], e[1:], strict=True)]
    return np.r_[np.concatenate(parts), e[-1]]


def _classes_of(target: np.ndarray | None, n: int, classes: int | None) -> tuple[np.ndarray, int]:
    if classes is None or target is None:
        return np.zeros(n, dtype=np.int64), 1
    y = np.nan_to_num(np.asarray(target, dtype=np.float64), nan=-1.0).astype(np.int64)
    return y, classes


def finalise_aggregates(
    module: HidimModule,
    dm: SiteDataModule,
    config: ExperimentConfig,
    time_edges: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """The site's post-training aggregates with the final global model.

    * Cox heads: ``pem_deaths``, ``pem_exposure`` on :func:`refine_grid` of the time grid;
    * ``uncertainty.ood_gate``: ``image_n`` / ``image_mean`` / ``image_scatter``;
    * heads with ``fit_density`` (evidential): ``head_n`` / ``head_mean`` / ``head_scatter``.
    """
    head = module.head
    want_head = callable(getattr(head, "fit_density", None))
    feats = collect_training_features(
        module, dm, image=config.uncertainty.ood_gate, head_inputs=want_head
    )
    out: dict[str, np.ndarray] = {}
    if callable(getattr(head, "fit_baseline", None)):
        if time_edges is None or "eta" not in feats:
            raise FederatedError("Cox baseline: no time grid or log hazards at this site")
        deaths, exposure = pem_statistics(
            feats["eta"], feats["time"], feats["event"], refine_grid(time_edges)
        )
        out["pem_deaths"], out["pem_exposure"] = deaths, exposure
    if "image" in feats:
        y, k = _classes_of(feats.get("target"), feats["image"].shape[0], density_classes(module))
        out.update(_pack_moments("image", density_moments(feats["image"], y, k)))
    if want_head and "head" in feats:
        density: FeatureDensity = getattr(head, "density")  # noqa: B009 - typed access
        k = int(density.means.shape[0])
        y, k = _classes_of(feats.get("target"), feats["head"].shape[0], k)
        out.update(_pack_moments("head", density_moments(feats["head"], y, k)))
    return out


def _pack_moments(prefix: str, m: DensityMoments) -> dict[str, np.ndarray]:
    return {f"{prefix}_n": m.n, f"{prefix}_mean": m.mean, f"{prefix}_scatter": m.scatter}


def reference_quantiles(
    module: HidimModule,
    dm: SiteDataModule,
    densities: Mapping[str, FeatureDensity],
) -> dict[str, np.ndarray]:
    """The site's quantile function of training Mahalanobis distances, per density.

    Args:
        densities: ``{"image": ..., "head": ...}`` fitted means and whiteners (no reference).

    Returns:
        ``{"<name>_quantiles": [201], "<name>_count": [1]}`` per density.
    """
    feats = collect_training_features(
        module, dm, image="image" in densities, head_inputs="head" in densities
    )
    out: dict[str, Any] = {}
    for name, density in densities.items():
        z = torch.as_tensor(feats[name], dtype=torch.float64)
        m2 = density.mahalanobis_sq(z).numpy()
        out[f"{name}_quantiles"] = site_quantiles(m2)
        out[f"{name}_count"] = np.array([m2.shape[0]])
    return out
