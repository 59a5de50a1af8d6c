"""``HidimNet``: backbone (or multi-view fusion) → optional tabular fusion → features → head.

One network class serves single-clip and multi-view studies, with or without tabular data::

    net = HidimNet(backbone=get_backbone("small3d"), head=head)
    net(clip)                                  # clip [B, C, T, H, W] → head outputs dict
    net(clips, view_mask)                      # clips [B, V, C, T, H, W], mask [B, V]
    net(clip, tabular=x, tabular_missing=m)    # + tabular [B, F], missing [B, F]

The head is any module mapping features ``[B, D]`` to a dict of tensors (a
``hidim.tasks.base.Head``); ``models`` does not import ``tasks``, so it is duck-typed here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hidim.errors import ModelError
from hidim.models.fusion import MultiViewFusion, TabularFusion
from hidim.models.registry import Backbone, BackboneSpec, check_input_shape

__all__ = ["HidimNet"]


class HidimNet(nn.Module):
    """The full model: image encoder, optional tabular fusion, task head.

    Args:
        head: Maps ``[B, D]`` features to a dict of output tensors.
        backbone: A single-clip backbone (exclusive with ``multiview``).
        multiview: A :class:`MultiViewFusion` (exclusive with ``backbone``).
        tabular: A :class:`TabularFusion` joined after the image encoder, or ``None``.
        input_spec: The backbone's registry entry; when given, clip shapes are checked
            against its limits with a helpful error.
    """

    def __init__(
        self,
        *,
        head: nn.Module,
        backbone: Backbone | None = None,
        multiview: MultiViewFusion | None = None,
        tabular: TabularFusion | None = None,
        input_spec: BackboneSpec | None = None,
    ) -> None:
        super().__init__()
        if (backbone is None) == (multiview is None):
            raise ModelError("HidimNet needs exactly one of backbone= or multiview=")
        self.backbone = backbone
        self.multiview = multiview
        image_dim = backbone.out_dim if backbone is not None else multiview.out_dim  # type: ignore[union-attr]
        if tabular is not None and tabular.image_dim != image_dim:
            raise ModelError(
                f"tabular fusion expects image_dim={tabular.image_dim}, the encoder gives {image_dim}"
            )
        self.tabular = tabular
        self.head = head
        self.input_spec = input_spec
        self.feature_dim = tabular.out_dim if tabular is not None else image_dim

    @property
    def gradcam_layer(self) -> str | None:
        """Dotted name (from this module) of the default Grad-CAM layer, or ``None``."""
        if self.backbone is not None and self.backbone.gradcam_layer:
            return f"backbone.{self.backbone.gradcam_layer}"
        mv = self.multiview
        if mv is not None and mv.backbone is not None and mv.backbone.gradcam_layer:
            return f"multiview.backbone.{mv.backbone.gradcam_layer}"
        return None

    def _check(self, shape: torch.Size) -> None:
        if self.input_spec is not None and not torch.compiler.is_compiling():
            check_input_shape(self.input_spec, shape)

    def features(
        self,
        x: Tensor,
        view_mask: Tensor | None = None,
        tabular: Tensor | None = None,
        tabular_missing: Tensor | None = None,
    ) -> Tensor:
        """The embedding the head sees, ``[B, D]``.

        Args:
            x: ``[B, C, T, H, W]`` clips, or ``[B, V, C, T, H, W]`` for a multi-view network.
            view_mask: ``[B, V]`` bool, views present (multi-view; default: all present).
            tabular: ``[B, F]`` tabular features (needed iff the network has tabular fusion).
            tabular_missing: ``[B, F]`` bool, missing entries (default: NaNs in ``tabular``).
        """
        feats = self.image_features(x, view_mask)
        if self.tabular is not None:
            if tabular is None:
                raise ModelError(
                    "this network fuses tabular data: pass tabular= [B, F] (and tabular_missing)"
                )
            feats = self.tabular(feats, tabular, tabular_missing)
        return feats

    @property
    def image_encoder(self) -> nn.Module:
        """The module whose output is the image embedding (backbone or multi-view fusion)."""
        return self.backbone if self.backbone is not None else self.multiview  # type: ignore[return-value]

    def image_features(self, x: Tensor, view_mask: Tensor | None = None) -> Tensor:
        """The image embedding ``[B, D_img]`` before tabular fusion (what OOD checks use).

        Args:
            x: ``[B, C, T, H, W]`` clips, or ``[B, V, C, T, H, W]`` for a multi-view network.
            view_mask: ``[B, V]`` bool, views present (multi-view; default: all present).
        """
        if self.multiview is not None:
            if x.ndim != 6:
                raise ModelError(
                    f"this network is multi-view: expected clips [B, V, C, T, H, W], got "
                    f"{tuple(x.shape)}"
                )
            self._check(torch.Size((x.shape[0], *x.shape[2:])))
            if view_mask is None:
                view_mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            feats = self.multiview(x, view_mask)
        else:
            if x.ndim != 5:
                raise ModelError(
                    f"expected a clip batch [B, C, T, H, W], got shape {tuple(x.shape)}"
                    + ("; this network is single-view" if x.ndim == 6 else "")
                )
            self._check(x.shape)
            feats = self.backbone(x)  # type: ignore[misc]
        return feats

    def forward(
        self,
        x: Tensor,
        view_mask: Tensor | None = None,
        tabular: Tensor | None = None,
        tabular_missing: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Head outputs for a batch (see :meth:`features` for the arguments)."""
        return self.head(self.features(x, view_mask, tabular, tabular_missing))

    def predict_batch(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """The head's predictions (``score``, ``prob``...) for a DataModule batch."""
        return self.head.predict(self.forward_batch(batch))  # type: ignore[operator]

    def forward_batch(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Head outputs for a DataModule batch (``clip`` or ``clips`` + ``view_mask``...)."""
        x = batch["clips"] if self.multiview is not None else batch["clip"]
        return self(
            x,
            batch.get("view_mask"),
            batch.get("tabular") if self.tabular is not None else None,
            batch.get("tabular_missing") if self.tabular is not None else None,
        )
