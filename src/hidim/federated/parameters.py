"""What a site sends to the server: the exchanged part of a model's ``state_dict``, in order.

:class:`ParameterLayout` fixes, for one network, the list of ``state_dict`` keys that travel
as Flower ``NDArrays`` and their shapes. Both ends build the same network from the same
config, so the layout (and its :attr:`~ParameterLayout.digest`) is identical; a mismatch is
an error naming the first differing key.

Exchanged (in ``state_dict`` order):

* every ``nn.Parameter`` (trainable or frozen) — the weights FedAvg averages;
* the running statistics of batch-norm layers (``running_mean``, ``running_var``), which
  are averaged like weights (example-weighted) unless BN is kept local.

Not exchanged: integer and boolean buffers (``num_batches_tracked``, ``grid_fitted``...)
and every other buffer (the head's target standardisation, time grid, Breslow baseline,
feature densities). Those are fitted once from aggregated site statistics
(:mod:`hidim.federated.statistics`) and are identical everywhere, so averaging them would
only add rounding.

Batch norm, two modes:

* ``bn="global"`` (default, plain FedAvg): BN weights, biases and running statistics are
  averaged like everything else; the exported model carries the average.
* ``bn="local"`` (FedBN, Li et al. ICLR 2021): a site never loads the server's BN weights,
  biases or running statistics in training or evaluation rounds — it keeps its own, so
  each hospital's scanner-specific feature statistics stay in its normalisation, and the
  per-site metrics are those of its *personal* model (global weights + its own BN), which
  the run directory keeps in ``sites/<name>/``. Sites still *report* their BN tensors, so
  the server can also export one global model whose BN state is the example-weighted
  average (for new sites); the post-training statistics phases use that global model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hidim.errors import FederatedError

__all__ = ["ParameterLayout", "BN_MODES", "batchnorm_keys"]

BN_MODES = ("global", "local")
_BN_STATS = ("running_mean", "running_var")


def batchnorm_keys(model: nn.Module) -> frozenset[str]:
    """``state_dict`` keys of every batch-norm layer (weights, biases, running statistics)."""
    keys: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            prefix = f"{name}." if name else ""
            for key in module.state_dict():
                keys.add(prefix + key)
    return frozenset(keys)


@dataclass(frozen=True)
class ParameterLayout:
    """The exchanged ``state_dict`` entries of one network, in a fixed order.

    Attributes:
        keys: ``state_dict`` keys, in the module's registration order.
        shapes: Shape of each entry.
        batchnorm: The subset of ``keys`` that belongs to batch-norm layers.
    """

    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    batchnorm: frozenset[str]

    @classmethod
    def of(cls, model: nn.Module) -> ParameterLayout:
        """The layout of ``model`` (parameters + BN running statistics, float only)."""
        param_names = {name for name, _ in model.named_parameters()}
        bn = batchnorm_keys(model)
        keys: list[str] = []
        shapes: list[tuple[int, ...]] = []
        for key, value in model.state_dict().items():
            is_stat = key in bn and key.rsplit(".", 1)[-1] in _BN_STATS
            if (key in param_names or is_stat) and value.is_floating_point():
                keys.append(key)
                shapes.append(tuple(int(s) for s in value.shape))
        return cls(keys=tuple(keys), shapes=tuple(shapes), batchnorm=bn & frozenset(keys))

    @property
    def digest(self) -> str:
        """SHA-256 (16 hex) of the keys and shapes: equal layouts have equal digests."""
        text = "\n".join(f"{k}:{list(s)}" for k, s in zip(self.keys, self.shapes, strict=True))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def n_values(self) -> int:
        """Total number of scalars exchanged."""
        return int(sum(int(np.prod(s)) for s in self.shapes))

    def get(self, model: nn.Module) -> list[np.ndarray]:
        """The exchanged tensors of ``model`` as float32 numpy arrays (copies), in order."""
        state = model.state_dict()
        return [state[k].detach().cpu().to(torch.float32).numpy().copy() for k in self.keys]

    def check(self, arrays: Sequence[np.ndarray], *, source: str = "received parameters") -> None:
        """Raise unless ``arrays`` match this layout (count and shapes)."""
        if len(arrays) != len(self.keys):
            raise FederatedError(
                f"{source}: expected {len(self.keys)} arrays (layout {self.digest}), received "
                f"{len(arrays)}; server and sites must run the same config and hidim version"
            )
        for key, shape, arr in zip(self.keys, self.shapes, arrays, strict=True):
            if tuple(np.shape(arr)) != shape:
                raise FederatedError(
                    f"{source}: {key} should have shape {list(shape)}, received "
                    f"{list(np.shape(arr))}; server and sites must build the same network"
                )

    def set(
        self,
        model: nn.Module,
        arrays: Sequence[np.ndarray],
        *,
        skip: Iterable[str] = (),
    ) -> None:
        """Load ``arrays`` into ``model`` in place, leaving the keys in ``skip`` untouched.

        Args:
            model: A network with this layout.
            arrays: One array per key, in order (float; cast to each tensor's dtype).
            skip: Keys to keep (e.g. :attr:`batchnorm` for FedBN).
        """
        self.check(arrays)
        keep = set(skip)
        state = model.state_dict()
        with torch.no_grad():
            for key, arr in zip(self.keys, arrays, strict=True):
                if key in keep:
                    continue
                target = state[key]
                target.copy_(torch.as_tensor(np.asarray(arr)).to(target.dtype))

    def local_keys(self, bn: str) -> frozenset[str]:
        """Keys a site keeps local in BN mode ``bn`` (``global``: none; ``local``: BN)."""
        if bn not in BN_MODES:
            raise FederatedError(f"bn must be one of {BN_MODES}, received {bn!r}")
        return self.batchnorm if bn == "local" else frozenset()
