"""Fusion: several echo views per study, and tabular data joined to the image embedding.

* :class:`MultiViewFusion` — ``[B, V, C, T, H, W]`` clips + ``[B, V]`` bool mask through a
  shared backbone (one set of weights for every view, plus a learned per-view embedding so
  the pooled vector knows which view said what) or one backbone per view; the per-view
  embeddings are pooled by a masked mean or gated attention (Ilse et al., ICML 2018).
  Missing views are never computed and carry zero weight, so they cannot change the output.
* :class:`TabularFusion` — the paper's "fusion network": continuous features with
  missing-value indicators and categorical features through embeddings (one extra
  "missing" row per table) are encoded by a small MLP and concatenated with the image
  embedding in the final layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hidim.errors import ModelError
from hidim.models.registry import Backbone

__all__ = ["MultiViewFusion", "TabularFusion", "masked_mean", "masked_softmax"]

_POOLINGS = ("mean", "attention")


def masked_mean(features: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``features`` ``[B, V, D]`` over the views where ``mask`` ``[B, V]`` is true."""
    m = mask.to(features.dtype).unsqueeze(-1)
    return (features * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax of ``scores`` ``[B, V]`` over present views; missing views get exactly 0."""
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=1)
    return torch.nan_to_num(weights, nan=0.0) * mask.to(weights.dtype)


class MultiViewFusion(nn.Module):
    """Embed every present view, then pool to one study embedding ``[B, D]``.

    Args:
        backbones: One backbone (shared by all views) or ``n_views`` backbones (one per view,
            same ``out_dim``).
        n_views: ``V``, the number of view slots (e.g. ``["A4C", "PLAX"]`` → 2).
        pooling: ``"mean"`` (masked mean) or ``"attention"`` (gated attention over views).
        view_embedding: Add a learned vector per view slot to a shared backbone's output.
    """

    def __init__(
        self,
        *,
        backbones: Backbone | Sequence[Backbone],
        n_views: int,
        pooling: str = "mean",
        view_embedding: bool = True,
    ) -> None:
        super().__init__()
        if n_views < 1:
            raise ModelError(f"multi-view fusion needs n_views >= 1, got {n_views}")
        if pooling not in _POOLINGS:
            raise ModelError(f"view pooling must be one of {_POOLINGS}, got {pooling!r}")
        if isinstance(backbones, Backbone):
            self.shared = True
            self.backbone: Backbone | None = backbones
            self.per_view = None
            dim = backbones.out_dim
        else:
            nets = list(backbones)
            if len(nets) != n_views:
                raise ModelError(
                    f"per-view fusion needs one backbone per view: {n_views} views, "
                    f"{len(nets)} backbones"
                )
            dims = {b.out_dim for b in nets}
            if len(dims) != 1:
                raise ModelError(f"per-view backbones must share out_dim, got {sorted(dims)}")
            self.shared = False
            self.backbone = None
            self.per_view = nn.ModuleList(nets)
            dim = dims.pop()
        self.n_views = int(n_views)
        self.out_dim = int(dim)
        self.pooling = pooling
        self.view_embed = (
            nn.Parameter(torch.zeros(n_views, dim)) if self.shared and view_embedding else None
        )
        if pooling == "attention":
            hidden = max(16, dim // 4)
            self.attn_v = nn.Linear(dim, hidden)
            self.attn_u = nn.Linear(dim, hidden)
            self.attn_w = nn.Linear(hidden, 1)

    def view_features(self, clips: Tensor, view_mask: Tensor) -> Tensor:
        """Per-view embeddings ``[B, V, D]``; rows of missing views are zero."""
        if clips.ndim != 6 or clips.shape[1] != self.n_views:
            raise ModelError(
                f"multi-view input must be [B, {self.n_views}, C, T, H, W], got {tuple(clips.shape)}"
            )
        mask = view_mask.to(torch.bool)
        if tuple(mask.shape) != tuple(clips.shape[:2]):
            raise ModelError(
                f"view_mask must be [B, V] = {tuple(clips.shape[:2])}, got {tuple(mask.shape)}"
            )
        if not bool(mask.any(dim=1).all()):
            raise ModelError(
                "a study in the batch has no view present (all-false view_mask row); drop "
                "studies without any of the configured views before batching"
            )
        b, v = mask.shape
        if self.shared:
            out = self.backbone(clips[mask])  # type: ignore[misc]
            feats = out.new_zeros(b, v, self.out_dim).index_put(mask.nonzero(as_tuple=True), out)
        else:
            outs: dict[int, Tensor] = {}
            for i, net in enumerate(self.per_view):  # type: ignore[arg-type]
                if bool(mask[:, i].any()):
                    outs[i] = net(clips[mask[:, i], i])
            ref = next(iter(outs.values()))
            cols = []
            for i in range(v):
                col = ref.new_zeros(b, self.out_dim)
                if i in outs:
                    col = col.index_put((mask[:, i].nonzero(as_tuple=True)[0],), outs[i])
                cols.append(col)
            feats = torch.stack(cols, dim=1)
        if self.view_embed is not None:
            feats = feats + self.view_embed.unsqueeze(0) * mask.unsqueeze(-1).to(feats.dtype)
        return feats

    def view_weights(self, feats: Tensor, view_mask: Tensor) -> Tensor:
        """Pooling weights ``[B, V]`` (rows sum to 1 over present views, 0 for missing)."""
        mask = view_mask.to(torch.bool)
        if self.pooling == "mean":
            m = mask.to(feats.dtype)
            return m / m.sum(dim=1, keepdim=True).clamp(min=1.0)
        scores = self.attn_w(torch.tanh(self.attn_v(feats)) * torch.sigmoid(self.attn_u(feats)))
        return masked_softmax(scores.squeeze(-1), mask)

    def forward(self, clips: Tensor, view_mask: Tensor) -> Tensor:
        """``[B, V, C, T, H, W]`` + ``[B, V]`` → ``[B, D]``."""
        feats = self.view_features(clips, view_mask)
        weights = self.view_weights(feats, view_mask)
        return (weights.unsqueeze(-1) * feats).sum(dim=1)


def _embedding_dim(cardinality: int) -> int:
    # fastai's rule of thumb, capped: enough capacity for a handful of categories.
    return int(min(16, round(1.6 * (cardinality + 1) ** 0.56)))


class TabularFusion(nn.Module):
    """Join tabular features to the image embedding (late fusion).

    The tabular tensor ``[B, F]`` is what ``hidim.store`` encodes: continuous columns
    (z-scored) and categorical columns as one-hot groups; ``missing`` ``[B, F]`` (bool) marks
    missing entries. Continuous inputs are zeroed where missing and flagged by indicator
    inputs; each one-hot group becomes an integer code looked up in a learned embedding with
    one extra row for "missing or unseen category". The tabular vector is encoded by a
    small MLP and concatenated with the image embedding in the final layer.

    Args:
        image_dim: ``D`` of the image embedding.
        n_features: ``F``.
        categorical: ``(start, n_categories)`` of each one-hot group inside ``F``; every
            other column is continuous.
        tabular_dim: Width of the tabular encoder.
        out_dim: Width of the fused embedding (default ``image_dim``).
        dropout: Dropout after the fusion layer.

    Shapes:
        ``forward(image [B, D], tabular [B, F], missing [B, F]) -> [B, out_dim]``.
    """

    continuous_index: Tensor

    def __init__(
        self,
        *,
        image_dim: int,
        n_features: int,
        categorical: Sequence[tuple[int, int]] = (),
        tabular_dim: int = 32,
        out_dim: int | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        groups = [(int(a), int(k)) for a, k in categorical]
        taken: set[int] = set()
        for start, k in groups:
            cols = set(range(start, start + k))
            if k < 1 or start < 0 or start + k > n_features or cols & taken:
                raise ModelError(
                    f"categorical one-hot groups must be disjoint (start, n) ranges inside "
                    f"the {n_features} tabular features, got {groups}"
                )
            taken |= cols
        if n_features < 1:
            raise ModelError(f"tabular fusion needs >= 1 feature, got n_features={n_features}")
        self.image_dim = int(image_dim)
        self.n_features = int(n_features)
        self.categorical = groups
        cont = [j for j in range(n_features) if j not in taken]
        self.register_buffer("continuous_index", torch.tensor(cont, dtype=torch.long))
        self.embeddings = nn.ModuleList(nn.Embedding(k + 1, _embedding_dim(k)) for _, k in groups)
        tab_in = 2 * len(cont) + sum(_embedding_dim(k) for _, k in groups)
        self.encoder = nn.Sequential(nn.Linear(tab_in, tabular_dim), nn.ReLU(inplace=True))
        self.out_dim = int(out_dim or image_dim)
        self.fuse = nn.Sequential(
            nn.Linear(self.image_dim + tabular_dim, self.out_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )

    def category_codes(self, tabular: Tensor, missing: Tensor) -> list[Tensor]:
        """Integer code per one-hot group ``[B]`` (``n_categories`` = missing/unseen)."""
        codes = []
        for start, k in self.categorical:
            group = tabular[:, start : start + k]
            absent = missing[:, start : start + k].any(dim=1) | (group.amax(dim=1) <= 0.5)
            codes.append(
                torch.where(absent, torch.full_like(group[:, 0], k).long(), group.argmax(1))
            )
        return codes

    def encode_tabular(self, tabular: Tensor, missing: Tensor | None = None) -> Tensor:
        """The tabular encoder's output ``[B, tabular_dim]``."""
        if tabular.ndim != 2 or tabular.shape[1] != self.n_features:
            raise ModelError(
                f"tabular input must be [B, {self.n_features}], got {tuple(tabular.shape)}; the "
                "model was trained with a different data.tabular column list"
            )
        nan = torch.isnan(tabular)
        missing = nan if missing is None else (missing.to(torch.bool) | nan)
        tabular = torch.where(nan, torch.zeros_like(tabular), tabular)
        idx = self.continuous_index
        cont_missing = missing[:, idx]
        cont = torch.where(cont_missing, torch.zeros_like(tabular[:, idx]), tabular[:, idx])
        parts = [cont, cont_missing.to(tabular.dtype)]
        codes = self.category_codes(tabular, missing)
        parts += [emb(c) for emb, c in zip(self.embeddings, codes, strict=True)]
        return self.encoder(torch.cat(parts, dim=1))

    def forward(self, image: Tensor, tabular: Tensor, missing: Tensor | None = None) -> Tensor:
        """Fuse ``image`` ``[B, D]`` with ``tabular`` ``[B, F]`` → ``[B, out_dim]``."""
        if image.ndim != 2 or image.shape[1] != self.image_dim:
            raise ModelError(
                f"image embedding must be [B, {self.image_dim}], got {tuple(image.shape)}"
            )
        tab = self.encode_tabular(tabular.to(image.dtype), missing)
        return self.fuse(torch.cat([image, tab.to(image.dtype)], dim=1))
