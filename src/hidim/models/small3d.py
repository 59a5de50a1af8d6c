"""A small 3-D CNN that trains on a CPU in minutes: the demo's default backbone.

Four ``Conv3d → BatchNorm → ReLU`` stages. Space is downsampled early and hard (factor 16),
time gently (factor 2), because cardiac function lives in how the heart *changes* across the
cycle: a video model must keep enough frames to see end-diastole and end-systole. The 5-D
feature map is pooled over space, then summarised over time by its mean and its max (the
temporal statistics pooling of x-vector speaker models), which lets a linear head compare the
largest and the typical state of each feature — e.g. end-diastolic vs. mean cavity size.

About 0.3 M parameters at the default widths; ~20 clips/s of 32 x 64 x 64 on one CPU core
for training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hidim.errors import ModelError
from hidim.models.registry import Backbone, register_backbone
from hidim.models.weights import init_backbone_weights

__all__ = ["Small3DCNN", "small3d"]


def _stage(
    c_in: int, c_out: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]
) -> nn.Sequential:
    padding = (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
    )


class Small3DCNN(Backbone):
    """Four-stage 3-D CNN with temporal mean+max pooling.

    Args:
        in_channels: Input channels ``C``.
        widths: Channels of the four stages.
        temporal_pool: ``"meanmax"`` (``D = 2 * widths[-1]``) or ``"mean"`` (``D = widths[-1]``).
        dropout: Dropout on the embedding (enables MC-dropout uncertainty).

    Shapes:
        ``[B, C, T, H, W]`` → ``[B, D]``; the ``features`` map is
        ``[B, widths[-1], ceil(T / 2), ceil(H / 16), ceil(W / 16)]``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        widths: Sequence[int] = (16, 32, 64, 128),
        temporal_pool: str = "meanmax",
        dropout: float = 0.0,
    ) -> None:
        if len(widths) != 4 or min(widths) < 1:
            raise ModelError(f"small3d widths must be 4 positive ints, got {list(widths)}")
        if temporal_pool not in ("meanmax", "mean"):
            raise ModelError(
                f"small3d temporal_pool must be 'meanmax' or 'mean', got {temporal_pool!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ModelError(f"small3d dropout must be in [0, 1), got {dropout}")
        w = [int(v) for v in widths]
        super().__init__(
            out_dim=w[-1] * (2 if temporal_pool == "meanmax" else 1),
            gradcam_layer="features",
        )
        self.temporal_pool = temporal_pool
        self.stem = _stage(in_channels, w[0], (3, 5, 5), (1, 2, 2))
        self.body = nn.Sequential(
            _stage(w[0], w[1], (3, 3, 3), (1, 2, 2)),
            _stage(w[1], w[2], (3, 3, 3), (2, 2, 2)),
        )
        self.features = _stage(w[2], w[3], (3, 3, 3), (1, 2, 2))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T, H, W]`` → ``[B, D]``."""
        f = self.features(self.body(self.stem(x)))
        per_frame = f.mean(dim=(3, 4))  # [B, K, T']
        if self.temporal_pool == "meanmax":
            pooled = torch.cat([per_frame.mean(dim=2), per_frame.amax(dim=2)], dim=1)
        else:
            pooled = per_frame.mean(dim=2)
        return self.dropout(pooled)


@register_backbone(
    "small3d",
    summary="small 4-stage 3-D CNN with temporal mean+max pooling; CPU-trainable; D=256",
    kind="video",
    min_frames=2,
    min_size=16,
    notes="No pretrained weights (a local file from a previous run works).",
)
def small3d(
    *,
    in_channels: int = 1,
    weights: str | None = None,
    widths: Sequence[int] = (16, 32, 64, 128),
    temporal_pool: str = "meanmax",
    dropout: float = 0.0,
) -> Backbone:
    """Build :class:`Small3DCNN` (``weights``: ``None`` or a local file)."""
    model = Small3DCNN(
        in_channels=in_channels, widths=widths, temporal_pool=temporal_pool, dropout=dropout
    )
    if weights is not None:
        model.weights_info = init_backbone_weights(
            model, backbone="small3d", stem="stem.0", in_channels=in_channels, weights=weights
        )
    return model
