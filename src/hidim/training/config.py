"""The training configuration: frozen pydantic models loaded from YAML, overridable from the CLI.

A config has the sections ``data``, ``model``, ``task``, ``optim``, ``trainer``,
``uncertainty``, ``fairness`` and ``tune`` (see ``configs/ef_regression.yaml`` for a
documented example). Every model is frozen and forbids unknown keys, so a typo is an error
that names the file, the key and the nearest valid key::

    cfg = load_config("configs/ef_regression.yaml", overrides=["optim.lr=3e-4"])
    cfg.optim.lr            # 0.0003

Overrides are ``dotted.key=value`` with YAML values (``trainer.max_epochs=5``,
``data.views=[A4C,PLAX]``, ``fairness=null``).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hidim.errors import ConfigError, HidimError

__all__ = [
    "DataConfig",
    "ModelConfig",
    "MultiViewConfig",
    "TaskConfig",
    "OptimConfig",
    "TrainerConfig",
    "UncertaintyConfig",
    "FairnessConfig",
    "TuneParam",
    "TuneConfig",
    "ExperimentConfig",
    "load_config",
    "config_from_dict",
    "apply_overrides",
    "parse_override",
    "dump_config",
    "default_monitor",
]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Section):
    """Which data, which target, how clips are sampled and batched.

    Attributes:
        store: Path of a hidim store (``hidim curate`` output).
        views: View labels to use (``[A4C]``); several + ``model.multiview`` → one item per
            study with a clip per view. ``null``: every series.
        target: Label column the head learns (``ef``); ``null`` for survival heads (they
            read ``time``/``event``).
        threshold: Binarise ``target``: positive when ``target < threshold`` (with
            ``positive_below``) or ``>= threshold``. E.g. EF < 40 %.
        positive_below: Direction of ``threshold``.
        clip_frames: Frames per clip ``T`` (at the store's normalised fps).
        sampling: Training clip sampling: ``random`` start or ``centre``.
        eval_sampling: Validation clip sampling during training (``centre``: deterministic).
        eval_stride: Step between clip starts for test-time averaging in ``hidim predict``
            (default ``clip_frames``: non-overlapping clips covering every frame).
        short: Series shorter than ``clip_frames``: ``loop`` (cine) or ``pad`` (volumes).
        tabular: Label columns fused with the image (needs ``model.tabular``).
        group_columns: Label columns exposed as ``group__<col>`` integer codes in each
            batch (fairness penalties, audits).
        batch_size: Clips (or studies) per batch.
        num_workers: DataLoader worker processes.
        balanced_batches: ``none``; ``events`` (every training batch holds at least
            ``min_events`` events — Cox needs them); ``classes`` (stratified by target).
        min_events: See ``balanced_batches``.
    """

    store: Path
    views: list[str] | None = None
    target: str | None = None
    threshold: float | None = None
    positive_below: bool = True
    clip_frames: int = Field(32, ge=1)
    sampling: Literal["random", "centre"] = "random"
    eval_sampling: Literal["random", "centre"] = "centre"
    eval_stride: int | None = Field(None, ge=1)
    short: Literal["loop", "pad"] = "loop"
    tabular: list[str] = []
    group_columns: list[str] = []
    batch_size: int = Field(8, ge=1)
    num_workers: int = Field(0, ge=0)
    balanced_batches: Literal["none", "events", "classes"] = "none"
    min_events: int = Field(2, ge=1)


class MultiViewConfig(_Section):
    """Multi-view fusion: ``shared`` backbone or one per view; ``mean`` or ``attention``."""

    shared: bool = True
    pooling: Literal["mean", "attention"] = "mean"
    view_embedding: bool = True


class ModelConfig(_Section):
    """The network.

    Attributes:
        backbone: Registry name (``hidim.models.registry.available_backbones()``).
        backbone_kwargs: Entry-specific options (e.g. ``{pooling: max}`` for resnet18_2d).
        weights: ``null``, a named pretrained weight (``kinetics400``/``imagenet``, from the
            torch hub cache) or a local weights file.
        in_channels: Input channels; ``null`` takes the store's ``channels``.
        multiview: Multi-view fusion options, or ``null`` for one clip per item.
        tabular: Fuse ``data.tabular`` columns with the image embedding.
        tabular_dim: Width of the tabular encoder.
        fusion_dropout: Dropout after the fusion layer.
        init_from: A finished ``hidim train`` run (or its ``model.pt``) whose image encoder
            initialises this one: supervised pretraining on another task, e.g. EF
            regression before a survival model (:mod:`hidim.training.transfer`).
        freeze_encoder: Keep the image encoder's weights (and batch-norm statistics) fixed;
            only fusion and head train.
    """

    backbone: str = "small3d"
    backbone_kwargs: dict[str, Any] = {}
    weights: str | None = None
    in_channels: int | None = Field(None, ge=1)
    multiview: MultiViewConfig | None = None
    tabular: bool = False
    tabular_dim: int = Field(32, ge=1)
    fusion_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    init_from: str | None = None
    freeze_encoder: bool = False

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        return known_backbone(value)


def known_backbone(value: str) -> str:
    """Pydantic check of a ``model.backbone`` name against the registry (with suggestions)."""
    from hidim.models.registry import backbone_spec

    try:
        backbone_spec(value)
    except HidimError as exc:
        raise ValueError(str(exc)) from None
    return value


class TaskConfig(_Section):
    """The head: a registered name (``binary``, ``multiclass``, ``regression``, ``cox``,
    ``deephit``, ``discrete_hazard``, ``evidential_*``) and its keyword arguments."""

    head: str = "regression"
    params: dict[str, Any] = {}


class OptimConfig(_Section):
    """Optimiser and learning-rate schedule."""

    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    scheduler: Literal["none", "cosine", "onecycle"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)


class TrainerConfig(_Section):
    """Lightning ``Trainer`` settings and run control.

    ``precision``: ``32-true``, ``bf16-mixed`` (CPU and recent GPUs) or ``16-mixed`` (GPU).
    ``strategy``: any Lightning strategy name (``auto``, ``ddp``, ``ddp_spawn``, ``fsdp``).
    ``monitor``/``mode``: the validation metric that selects the best checkpoint and drives
    early stopping (default by task: ``val/r2`` max, ``val/auroc`` max, ``val/cindex`` max).
    ``bootstrap_samples``: replicates for the confidence intervals in ``metrics.json``
    (0 = point estimates only).
    """

    max_epochs: int = Field(20, ge=1)
    seed: int = 0
    deterministic: bool = True
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "64-true"] = "32-true"
    accumulate_grad_batches: int = Field(1, ge=1)
    gradient_clip_val: float | None = Field(None, gt=0)
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    monitor: str | None = None
    mode: Literal["min", "max"] | None = None
    early_stopping_patience: int = Field(10, ge=0)
    limit_train_batches: float | int = 1.0
    log_every_n_steps: int = Field(10, ge=1)
    bootstrap_samples: int = Field(1000, ge=0)
    loggers: list[Literal["csv", "tensorboard", "mlflow"]] = ["csv", "tensorboard"]
    mlflow_tracking_uri: str | None = None
    progress_bar: bool = True


class UncertaintyConfig(_Section):
    """Uncertainty at prediction time.

    ``mc_dropout_samples``: stochastic forward passes with dropout on (0 = off).
    ``coverage``: share of validation studies the model should answer; the abstention
    threshold on ``uncertainty`` is calibrated on the validation split for it.
    ``ood_gate``: fit the image-embedding density after training and abstain on inputs far
    outside it (:mod:`hidim.training.ood_gate`); ``ood_quantile``: share of validation
    studies inside the gate (its threshold on ``ood_distance``). ``coverage`` counts both
    rules together.
    """

    mc_dropout_samples: int = Field(0, ge=0)
    coverage: float = Field(0.9, gt=0, le=1)
    ood_gate: bool = True
    ood_quantile: float = Field(0.99, ge=0.5, lt=1)


class FairnessConfig(BaseModel):
    """A fairness penalty added to the loss (``hidim.training.fairness.build_penalty``).

    ``kind`` (e.g. ``demographic_parity``), ``group`` (a ``data.group_columns`` entry),
    ``weight``; further keys are passed to the penalty builder, which validates them.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    kind: str
    group: str
    weight: float = Field(1.0, ge=0)

    def extra_kwargs(self) -> dict[str, Any]:
        """The penalty-specific keys beyond ``kind``, ``group`` and ``weight``."""
        return dict(self.model_extra or {})


class TuneParam(_Section):
    """One search-space dimension: a float/int range (``low``, ``high``, ``log``) or ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    type: Literal["float", "int", "categorical"] = "float"
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _complete(self) -> TuneParam:
        if self.type == "categorical" or self.choices is not None:
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError("a numeric parameter needs low < high")
        return self


class TuneConfig(_Section):
    """Optuna search: ``space`` maps dotted config keys to :class:`TuneParam`."""

    space: dict[str, TuneParam] = {}
    metric: str | None = None
    direction: Literal["minimize", "maximize"] | None = None
    pruner: Literal["median", "hyperband", "none"] = "median"
    sampler: Literal["tpe", "random"] = "tpe"
    startup_trials: int = Field(3, ge=0)
    max_epochs: int | None = Field(None, ge=1)


class ExperimentConfig(_Section):
    """A whole training run (``hidim train CONFIG``)."""

    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    uncertainty: UncertaintyConfig = Field(default_factory=UncertaintyConfig)
    fairness: FairnessConfig | None = None
    tune: TuneConfig = Field(default_factory=TuneConfig)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        d, m = self.data, self.model
        if m.tabular and not d.tabular:
            raise ValueError("model.tabular is true but data.tabular lists no columns")
        if m.multiview is not None and (not d.views or len(d.views) < 1):
            raise ValueError("model.multiview needs data.views (the view slots, e.g. [A4C, PLAX])")
        if self.fairness is not None and self.fairness.group not in d.group_columns:
            raise ValueError(
                f"fairness.group {self.fairness.group!r} must be listed in data.group_columns "
                f"(got {d.group_columns})"
            )
        if d.threshold is not None and d.target is None:
            raise ValueError("data.threshold needs data.target (the column to binarise)")
        return self


def default_monitor(head: str) -> tuple[str, Literal["min", "max"]]:
    """The validation metric (and direction) that selects checkpoints for a head name."""
    if head in ("binary", "multiclass") or head.startswith("evidential_class"):
        return ("val/auroc", "max")
    if head == "regression" or head.startswith("evidential_reg"):
        return ("val/r2", "max")
    if head in ("cox", "deephit", "discrete_hazard") or "surv" in head:
        return ("val/cindex", "max")
    return ("val/loss", "min")


# ---- loading --------------------------------------------------------------------------------


def _field_names(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Valid keys at ``loc`` (the parent of an offending key) for suggestions."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        args = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)]
        nxt = next((a for a in args if issubclass(a, BaseModel)), None)
        if nxt is None:
            return []
        current = nxt
    return list(getattr(current, "model_fields", {}))


def format_config_errors(
    exc: ValidationError, source: str, *, model: type[BaseModel], what: str = "training config"
) -> str:
    """One message listing every offending key of a config with the reason, and for an
    unknown key the nearest valid one (shared by every hidim YAML config)."""
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            names = _field_names(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {names}"
            msg = f"unknown key{hint}"
        elif "input" in err and err["type"] not in ("missing",):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"  - {key}: {msg}")
    return f"invalid {what} {source}:\n" + "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-3"`` → ``(["optim", "lr"], 0.001)`` (values parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(
            f"expected an override like section.key=value (e.g. optim.lr=3e-4), got {text!r}"
        )
    key, _, raw = text.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass
    return parts, value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of the raw config dict with ``key=value`` overrides applied."""
    import copy

    out: dict[str, Any] = copy.deepcopy(dict(raw))
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def config_from_dict(
    raw: Mapping[str, Any], *, overrides: Sequence[str] = (), source: str = "<dict>"
) -> ExperimentConfig:
    """Validate a config mapping (plus overrides) into an :class:`ExperimentConfig`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"invalid training config {source}: expected a mapping of sections, got "
            f"{type(raw).__name__}"
        )
    merged = apply_overrides(raw, overrides)
    try:
        return ExperimentConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_config_errors(exc, source, model=ExperimentConfig)) from None


def load_config(path: str | os.PathLike[str], *, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load and validate a YAML training config.

    Relative ``data.store``, ``model.init_from`` and ``model.weights`` paths are resolved against the config
    file's folder when they exist there, otherwise against the working directory.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid (the message lists every
            offending key with the reason and the nearest valid key).
    """
    merged = read_yaml_config(
        path, overrides, what="config file", example="configs/ef_regression.yaml"
    )
    return config_from_dict(merged, source=repr(str(path)))


_RELATIVE_PATHS = (("data", "store"), ("model", "init_from"), ("model", "weights"))


def read_yaml_config(
    path: str | os.PathLike[str], overrides: Sequence[str], *, what: str, example: str
) -> Any:
    """Read a YAML config, apply ``key=value`` overrides and resolve relative paths.

    ``data.store``, ``model.init_from`` and ``model.weights`` given relative are resolved
    against the config file's folder when they exist there (otherwise left for the working
    directory). Shared by the training and pretraining configs.

    Raises:
        ConfigError: the file is missing, not YAML, or empty (naming ``example``).
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{what} {str(file)!r} not found; pass the path of a YAML config")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {str(file)!r} is not valid YAML: {exc}") from exc
    if raw is None:
        raise ConfigError(f"{what} {str(file)!r} is empty; start from {example}")
    merged = apply_overrides(raw, overrides) if isinstance(raw, Mapping) else raw
    if isinstance(merged, dict):
        for section, key in _RELATIVE_PATHS:
            part = merged.get(section)
            value = part.get(key) if isinstance(part, dict) else None
            if isinstance(value, str) and not Path(value).is_absolute():
                candidate = file.parent / value
                if candidate.exists():
                    part[key] = str(candidate.resolve())  # type: ignore[index]
    return merged


def dump_config(config: ExperimentConfig) -> str:
    """The config as YAML text (what ``config.yaml`` in a run directory holds)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
