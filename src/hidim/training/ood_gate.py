"""The image-density OOD gate: "is this input like anything the model was trained on?"

A model's uncertainty about its *answer* (ensemble spread, MC dropout, a head's entropy)
does not reliably say that an *input* is unlike the training data: members of an ensemble
agree confidently on a blank clip, a noise clip or a CT volume fed to an echo model
(measured in ``bench/acceptance_uncertainty.py``: 0 % abstention on those from the member
spread). hidim therefore fits, after training and for every head, a Gaussian density of the
**image embedding** (the backbone's or multi-view fusion's output, before any tabular
fusion) on the training split (:class:`~hidim.tasks.feature_density.FeatureDensity`: tied
covariance with shrinkage, one mean per class for classification heads, a single mean
otherwise; Lee et al. 2018). For a new clip the gate reports

    ood_distance = m2(z) / m2_ref,

the squared Mahalanobis distance of its embedding to the nearest training mean, relative
to the 99th percentile of the training distances: about 1 at the edge of the training
cloud, much larger far outside it. :func:`hidim.training.predict.predict` averages it over
a study's clips and the members and abstains when it exceeds a threshold calibrated on the
validation split (``uncertainty.ood_quantile``), next to the usual uncertainty threshold.

Each member's density is stored in ``<member>/checkpoints/image_density.pt`` (tensors only,
read with ``weights_only=True``); runs trained before the gate existed simply have none.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hidim.errors import TrainingError
from hidim.models.network import HidimNet
from hidim.tasks.feature_density import FeatureDensity

__all__ = [
    "DENSITY_FILE",
    "fit_image_density",
    "density_from_features",
    "save_density",
    "load_density",
    "ood_distance",
    "ImageFeatureTap",
]

DENSITY_FILE = "image_density.pt"
_FORMAT = "hidim-image-density/1"


class ImageFeatureTap:
    """Context manager capturing the image embedding ``[B, D]`` of a network's forward passes.

    Uses a forward hook on :attr:`HidimNet.image_encoder`, so predictions are computed once.
    ``tap.first`` is the embedding of the first forward pass since the last :meth:`clear`
    (MC-dropout passes that follow are ignored).
    """

    def __init__(self, net: HidimNet) -> None:
        self._module = net.image_encoder
        self._handle: Any = None
        self.captured: list[Tensor] = []

    def __enter__(self) -> ImageFeatureTap:
        self._handle = self._module.register_forward_hook(
            lambda _m, _inputs, out: self.captured.append(out.detach())
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def clear(self) -> None:
        """Forget what was captured."""
        self.captured.clear()

    @property
    def first(self) -> Tensor:
        """The embedding of the first forward pass since :meth:`clear`."""
        if not self.captured:
            raise TrainingError("no forward pass went through the image encoder")
        return self.captured[0]


@torch.no_grad()
def fit_image_density(
    net: HidimNet,
    batches: Iterable[Mapping[str, Any]],
    *,
    classes: int | None = None,
    quantile: float = 0.99,
) -> FeatureDensity:
    """Fit the image-embedding density on training ``batches`` (eval mode, no gradients).

    Args:
        net: The trained network.
        batches: DataModule batches of the training split (centre clips).
        classes: Number of classes when the head is a classifier and batches carry integer
            ``target`` (one mean per class); ``None``: one mean for all.
        quantile: Training-distance quantile that sets ``m2_ref``.

    Returns:
        The fitted :class:`FeatureDensity` (CPU, float64 buffers).
    """
    was_training = net.training
    net.eval()
    feats: list[Tensor] = []
    targets: list[Tensor] = []
    try:
        with ImageFeatureTap(net) as tap:
            for batch in batches:
                tap.clear()
                net.forward_batch(dict(batch))
                feats.append(tap.first.float().cpu())
                if classes is not None:
                    targets.append(torch.as_tensor(batch["target"]).reshape(-1).long().cpu())
    finally:
        net.train(was_training)
    if not feats:
        raise TrainingError("image density: the training split yielded no batches")
    return density_from_features(
        torch.cat(feats),
        torch.cat(targets) if classes is not None else None,
        classes=classes,
        quantile=quantile,
    )


def density_from_features(
    features: Tensor,
    targets: Tensor | None,
    *,
    classes: int | None = None,
    quantile: float = 0.99,
) -> FeatureDensity:
    """The image-embedding density of training embeddings ``[N, D]`` (and class ``targets``
    ``[N]`` when ``classes`` is set; a class with < 2 samples falls back to one mean)."""
    z = features.float().cpu()
    n_classes = int(classes) if classes is not None and targets is not None else 1
    y = (
        targets.reshape(-1).long().cpu()
        if n_classes > 1 and targets is not None
        else torch.zeros(z.shape[0], dtype=torch.long)
    )
    if n_classes > 1 and bool((torch.bincount(y, minlength=n_classes) < 2).any()):
        n_classes, y = 1, torch.zeros_like(y)
    density = FeatureDensity(in_features=z.shape[1], n_classes=n_classes, quantile=quantile)
    density.fit(z, y)
    return density


def save_density(density: FeatureDensity, path: str | os.PathLike[str]) -> None:
    """Write ``density`` (its buffers and sizes) atomically to ``path``."""
    file = Path(path)
    payload = {
        "format": _FORMAT,
        "n_classes": int(density.means.shape[0]),
        "in_features": int(density.means.shape[1]),
        "quantile": float(density.quantile),
        "shrinkage": float(density.shrinkage),
        "state_dict": {k: v.detach().cpu() for k, v in density.state_dict().items()},
    }
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, file)


def load_density(path: str | os.PathLike[str]) -> FeatureDensity | None:
    """The density saved at ``path``, or ``None`` if the file does not exist."""
    file = Path(path)
    if not file.is_file():
        return None
    payload = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise TrainingError(
            f"{file} is not a hidim image-density file; delete it and re-run `hidim train` "
            "(the run's members are kept, only the density is refitted)"
        )
    density = FeatureDensity(
        in_features=int(payload["in_features"]),
        n_classes=int(payload["n_classes"]),
        quantile=float(payload["quantile"]),
        shrinkage=float(payload["shrinkage"]),
    )
    density.load_state_dict(payload["state_dict"])
    return density


def ood_distance(density: FeatureDensity, features: Tensor) -> Tensor:
    """``m2(z) / m2_ref`` per row of ``features`` ``[B, D]`` → ``[B]`` (float64).

    1 is the ``quantile`` of the training distances; NaN if the density is not fitted.
    """
    if not bool(density.fitted):
        return torch.full((features.shape[0],), float("nan"), dtype=torch.float64)
    ref = torch.clamp(density.reference, min=torch.finfo(torch.float64).tiny)
    return density.mahalanobis_sq(features.cpu()) / ref
