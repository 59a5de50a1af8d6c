"""Tiny hand-built models with known behaviour for the explain tests.

* ``RegionModel`` — output depends only on a known spatial region (a fixed gate after a
  convolution), so every faithful attribution concentrates there.
* ``LocalNet`` + ``local_task`` — a small 3-D CNN trained for a few steps on a task whose
  evidence is local (a bright patch in one corner marks positives).
* ``AreaRangeModel`` — a fixed "EF-like" model: max minus min over frames of the dark area,
  so only the frames at the extremes (ED/ES) matter.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

T, H, W = 4, 12, 12


class Gate(nn.Module):
    """Multiply activations by a fixed spatial mask (the Grad-CAM layer of RegionModel)."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask


class RegionModel(nn.Module):
    """``[B, 1, T, H, W] -> [B]``: a positive conv response summed inside ``region`` only."""

    def __init__(self, region: Tensor, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv3d(1, 3, kernel_size=(1, 3, 3), padding=(0, 1, 1))
        with torch.no_grad():
            self.conv.weight.copy_(torch.rand(self.conv.weight.shape, generator=g) + 0.1)
            self.conv.bias.zero_()
        self.relu = nn.ReLU()
        self.gate = Gate(region)
        self.fc = nn.Linear(3, 1)
        with torch.no_grad():
            self.fc.weight.fill_(1.0)
            self.fc.bias.zero_()
        self.gradcam_layer = "gate"

    def forward(self, x: Tensor) -> Tensor:
        h = self.gate(self.relu(self.conv(x)))
        return self.fc(h.sum(dim=(2, 3, 4)))[:, 0]


class LocalNet(nn.Module):
    """A small 3-D CNN ``[B, 1, T, H, W] -> [B]`` logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(1, 4, (1, 3, 3), padding=(0, 1, 1))
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv3d(4, 4, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveMaxPool3d(1)
        self.fc = nn.Linear(4, 1)
        self.gradcam_layer = "conv2"

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(h).flatten(1))[:, 0]


def local_data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Clips with a central bright square everywhere (anatomy-like structure) and a bright
    corner patch on positives only (the local evidence)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, T, H, W, generator=g) * 0.4
    x[:, :, :, 4:8, 4:8] += 0.5
    y = (torch.arange(n) % 2).float()[torch.randperm(n, generator=g)]
    x[y == 1, :, :, 0:3, 0:3] += 1.0
    return x, y


def train_local(*, shuffle_labels: bool = False, seed: int = 0, steps: int = 40) -> LocalNet:
    """Train LocalNet on ``local_data`` (labels permuted when ``shuffle_labels``)."""
    torch.manual_seed(seed)
    x, y = local_data(48, 1)
    if shuffle_labels:
        y = y[torch.from_numpy(np.random.default_rng(seed + 7).permutation(len(y)))]
    net = LocalNet()
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (16,))
        loss = nn.functional.binary_cross_entropy_with_logits(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


class AreaRangeModel(nn.Module):
    """EF-like score: (max − min) over frames of the soft dark area, with a dummy conv so it
    has parameters. Only the frames at the area's extremes influence the output."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        dark = torch.sigmoid((0.5 - x.mean(1)) * 20.0).sum(dim=(2, 3))  # [B, T]
        return self.scale * (dark.amax(1) - dark.amin(1)) / dark.amax(1).clamp_min(1.0)


def pulsating_clip(
    n_frames: int, *, period: float, ef: float, phase: float = 0.0, size: int = 24, seed: int = 0
) -> tuple[Tensor, np.ndarray]:
    """A bright frame with a dark disk whose area follows a cosine cycle.

    Returns the clip ``[1, T, size, size]`` and the true phase labels (systole where the
    area falls).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames)
    u = np.mod(phase + t / period, 1.0)
    area_rel = 1.0 - ef * 0.5 * (1 - np.cos(2 * np.pi * u))  # 1 at ED (u=0), 1-ef at u=0.5
    yy, xx = np.mgrid[:size, :size]
    r2 = (yy - size / 2) ** 2 + (xx - size / 2) ** 2
    r_max = size * 0.35
    frames = []
    for a in area_rel:
        img = 0.8 + 0.05 * rng.standard_normal((size, size))
        img[r2 <= (r_max**2) * a] = 0.1
        frames.append(img)
    clip = torch.tensor(np.stack(frames)[None], dtype=torch.float32)
    labels = np.where(np.mod(u, 1.0) < 0.5, "systole", "diastole")
    return clip, labels


@pytest.fixture(scope="session")
def trained_local() -> LocalNet:
    return train_local()


@pytest.fixture
def corner() -> Tensor:
    m = torch.zeros(H, W)
    m[0:3, 0:3] = 1
    return m


@pytest.fixture(scope="session")
def toys():
    """The toy models and data makers of this folder (test modules cannot import conftest)."""
    import types

    return types.SimpleNamespace(
        T=T,
        H=H,
        W=W,
        Gate=Gate,
        RegionModel=RegionModel,
        LocalNet=LocalNet,
        local_data=local_data,
        train_local=train_local,
        AreaRangeModel=AreaRangeModel,
        pulsating_clip=pulsating_clip,
    )
