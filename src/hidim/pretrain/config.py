"""The self-supervised pretraining config: frozen pydantic sections loaded from YAML.

The sections mirror the training config (``data``, ``model``, ``optim``, ``trainer``) so that
the ``model`` section of a pretraining config can be pasted into the downstream training
config unchanged — ``model.init_from`` needs the *same* backbone and ``backbone_kwargs``.
Two sections are specific to pretraining: ``ssl`` (the objective and projection head) and
``augment`` (the video-consistent augmentations). See ``configs/ssl_pretrain.yaml``::

    cfg = load_ssl_config("configs/ssl_pretrain.yaml", overrides=["ssl.method=vicreg"])

Every model forbids unknown keys; a typo is a :class:`~hidim.errors.ConfigError` naming the
file, the dotted key and the nearest valid key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hidim.errors import ConfigError
from hidim.training.config import (
    apply_overrides,
    format_config_errors,
    known_backbone,
    read_yaml_config,
)

__all__ = [
    "SSLDataConfig",
    "SSLModelConfig",
    "SSLObjectiveConfig",
    "AugmentConfig",
    "SSLOptimConfig",
    "SSLTrainerConfig",
    "SSLConfig",
    "ssl_config_from_dict",
    "load_ssl_config",
    "dump_ssl_config",
    "ALL_SPLITS",
]

ALL_SPLITS: tuple[str, ...] = ("train", "val", "test")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SSLDataConfig(_Section):
    """Which series, how clips are cut and batched.

    Attributes:
        store: A hidim store (``hidim curate`` output); labels are not needed.
        views: View labels to use (``[A4C]``); ``null``: every series.
        splits: Store splits whose series are used. Default ``[train, val]``: no labels are
            read, but test patients stay unseen so that a downstream evaluation on them is
            clean. ``[train, val, test]`` (``--all-splits``) only when the downstream test
            set is another store.
        clip_frames: Frames per view ``T`` at the store's normalised fps (the downstream
            ``data.clip_frames`` should match).
        short: Series shorter than a view's span: ``loop`` (periodic cine) or ``pad``.
        holdout_fraction: Share of the selected *patients* held out for the validation SSL
            loss (checkpoint selection, early stopping); ``0`` trains on all of them for
            ``trainer.max_epochs``.
        batch_size: Series per batch (each gives two views, so ``2 * batch_size`` clips).
        num_workers: DataLoader worker processes.
    """

    store: Path
    views: list[str] | None = None
    splits: list[Literal["train", "val", "test"]] = ["train", "val"]
    clip_frames: int = Field(16, ge=2)
    short: Literal["loop", "pad"] = "loop"
    holdout_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    batch_size: int = Field(16, ge=2)
    num_workers: int = Field(0, ge=0)

    @field_validator("splits")
    @classmethod
    def _some_split(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value):
            raise ValueError(f"expected one or more distinct splits from {ALL_SPLITS}")
        return value


class SSLModelConfig(_Section):
    """The encoder being pretrained: the keys of the training config's ``model`` section.

    Attributes:
        backbone: Registry name (``hidim.models.registry.available_backbones()``).
        backbone_kwargs: Entry options (e.g. ``{widths: [16, 32, 64, 128]}``).
        weights: ``null`` (random init), a named pretrained weight (``kinetics400``) or a
            local file: self-supervised pretraining then *adapts* those weights to echo.
        in_channels: Input channels; ``null`` takes the store's ``channels``.
    """

    backbone: str = "small3d"
    backbone_kwargs: dict[str, Any] = {}
    weights: str | None = None
    in_channels: int | None = Field(None, ge=1)

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        return known_backbone(value)


class SSLObjectiveConfig(_Section):
    """The self-supervised objective and projection head.

    Attributes:
        method: ``simclr`` (NT-Xent: the two views of a series are positives, every other
            clip of the batch a negative) or ``vicreg`` (invariance + variance + covariance,
            no negatives).
        temperature: NT-Xent temperature ``tau`` (SimCLR).
        projection_hidden: Hidden width of the projection MLP.
        projection_dim: Output width of the projection MLP (where the loss is computed; the
            encoder embedding before it is what downstream models use).
        sim_weight, var_weight, cov_weight: VICReg's ``lambda``, ``mu``, ``nu``.
    """

    method: Literal["simclr", "vicreg"] = "simclr"
    temperature: float = Field(0.2, gt=0.0, le=10.0)
    projection_hidden: int = Field(256, ge=1)
    projection_dim: int = Field(64, ge=2)
    sim_weight: float = Field(25.0, ge=0.0)
    var_weight: float = Field(25.0, ge=0.0)
    cov_weight: float = Field(1.0, ge=0.0)


class AugmentConfig(_Section):
    """Video-consistent augmentations of each view (one draw per view, shared by its frames).

    Intensities are in the store's normalised units; brightness and noise are relative to
    the view's own standard deviation, so the strengths mean the same for z-scored and
    0..1-scaled stores. Set a strength to 0 to switch that augmentation off.

    Attributes:
        crop_scale: Area fraction ``[low, high]`` of the random resized crop.
        crop_ratio: Aspect-ratio range ``[low, high]`` of the crop.
        flip_p: Probability of a left-right flip (echo A4C is displayed both ways).
        brightness: Additive shift ``~ U(-b, b)`` view SDs.
        contrast: Factor ``~ U(1 - c, 1 + c)`` around the view mean.
        gamma: ``log(gamma) ~ U(-g, g)``, applied on the view's min..max range.
        noise_std: Gaussian noise SD in view SDs (drawn per pixel and frame).
        max_stride: Temporal stride ``~ U{1..max_stride}`` per view (frame skipping: the
            same beat at another apparent heart rate).
    """

    crop_scale: tuple[float, float] = (0.7, 1.0)
    crop_ratio: tuple[float, float] = (0.8, 1.25)
    flip_p: float = Field(0.5, ge=0.0, le=1.0)
    brightness: float = Field(0.2, ge=0.0, le=5.0)
    contrast: float = Field(0.3, ge=0.0, lt=1.0)
    gamma: float = Field(0.3, ge=0.0, le=2.0)
    noise_std: float = Field(0.1, ge=0.0, le=5.0)
    max_stride: int = Field(2, ge=1, le=8)

    @model_validator(mode="after")
    def _ranges(self) -> AugmentConfig:
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {[lo, hi]}")
        rlo, rhi = self.crop_ratio
        if not 0.0 < rlo <= rhi:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {[rlo, rhi]}")
        return self


class SSLOptimConfig(_Section):
    """AdamW with linear warm-up then cosine decay (per step)."""

    lr: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    warmup_epochs: int = Field(2, ge=0)


class SSLTrainerConfig(_Section):
    """Lightning settings and run control.

    ``early_stopping_patience`` (epochs without a lower held-out SSL loss; ``0`` = run all
    ``max_epochs``) needs ``data.holdout_fraction > 0``.
    """

    max_epochs: int = Field(40, ge=1)
    seed: int = 0
    deterministic: bool = True
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "64-true"] = "32-true"
    accelerator: str = "auto"
    devices: int | str = "auto"
    early_stopping_patience: int = Field(0, ge=0)
    log_every_n_steps: int = Field(10, ge=1)
    loggers: list[Literal["csv", "tensorboard"]] = ["csv"]
    progress_bar: bool = True


class SSLConfig(_Section):
    """A whole self-supervised pretraining run (``hidim pretrain CONFIG``)."""

    data: SSLDataConfig
    model: SSLModelConfig = Field(default_factory=SSLModelConfig)
    ssl: SSLObjectiveConfig = Field(default_factory=SSLObjectiveConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    optim: SSLOptimConfig = Field(default_factory=SSLOptimConfig)
    trainer: SSLTrainerConfig = Field(default_factory=SSLTrainerConfig)

    @model_validator(mode="after")
    def _consistent(self) -> SSLConfig:
        if self.trainer.early_stopping_patience > 0 and self.data.holdout_fraction == 0:
            raise ValueError(
                "trainer.early_stopping_patience needs held-out patients: set "
                "data.holdout_fraction > 0 (e.g. 0.1) or the patience to 0"
            )
        return self

    @property
    def head_name(self) -> str:
        """What the run's ``model.pt`` records as its task head (``ssl_simclr``...)."""
        return f"ssl_{self.ssl.method}"


# ---- loading --------------------------------------------------------------------------------


def ssl_config_from_dict(
    raw: Mapping[str, Any], *, overrides: Sequence[str] = (), source: str = "<dict>"
) -> SSLConfig:
    """Validate a config mapping (plus ``dotted.key=value`` overrides) into an :class:`SSLConfig`.

    Raises:
        ConfigError: every offending key with the reason and the nearest valid key.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"invalid pretraining config {source}: expected a mapping of sections, got "
            f"{type(raw).__name__}; start from configs/ssl_pretrain.yaml"
        )
    merged = apply_overrides(raw, overrides)
    try:
        return SSLConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(
            format_config_errors(exc, source, model=SSLConfig, what="pretraining config")
        ) from None


def load_ssl_config(path: str | os.PathLike[str], *, overrides: Sequence[str] = ()) -> SSLConfig:
    """Load and validate a YAML pretraining config.

    A relative ``data.store`` or ``model.weights`` is resolved against the config file's
    folder when it exists there, otherwise against the working directory.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid.
    """
    merged = read_yaml_config(
        path, overrides, what="pretraining config", example="configs/ssl_pretrain.yaml"
    )
    return ssl_config_from_dict(merged, source=repr(str(path)))


def dump_ssl_config(config: SSLConfig) -> str:
    """The config as YAML text (what ``config.yaml`` in a pretraining run holds)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
