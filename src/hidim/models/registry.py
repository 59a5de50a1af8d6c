"""The backbone registry: explicit ``@register_backbone`` entries with documented input limits.

A backbone maps a batch of clips or volumes ``[B, C, T, H, W]`` (float32; T = frames for a
cine loop, slices for a volume) to an embedding ``[B, D]``. Every entry declares

* its **input limits**: the smallest ``T`` and ``H = W`` it accepts, or a fixed ``(T, H, W)``
  when the architecture has fixed positional encodings (``mvit_v2_s``: 16 x 224 x 224);
* whether it compiles with ``torch.export`` (every built-in does; TorchScript is deprecated
  in torch 2.x and not used);
* the named pretrained weights it can load (``kinetics400``, ``imagenet``).

Each built backbone carries ``out_dim`` (``D``), ``gradcam_layer`` (the dotted name, relative
to the backbone, of the layer whose 5-D activations ``[B, K, T', H', W']`` Grad-CAM should
use) and ``weights_info`` (where its initial weights came from, with their SHA-256 and the
input normalisation they expect).

Usage::

    from hidim.models.registry import get_backbone
    net = get_backbone("r3d_18", in_channels=1, weights="kinetics400")
    features = net(clips)        # [B, 512]
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from hidim.errors import ModelError

__all__ = [
    "Backbone",
    "BackboneSpec",
    "BACKBONES",
    "register_backbone",
    "get_backbone",
    "backbone_spec",
    "available_backbones",
    "check_input_shape",
]

ExportMode = Literal["export", "none"]

# Modules whose import registers the built-in entries; loaded on first registry lookup so
# that importing hidim.models stays cheap and free of side effects beyond registration.
_BUILTIN_MODULES = (
    "hidim.models.small3d",
    "hidim.models.video",
    "hidim.models.volume",
    "hidim.models.frame2d",
)


class Backbone(nn.Module):
    """Base class of every registered backbone: ``[B, C, T, H, W]`` → ``[B, out_dim]``.

    Attributes:
        out_dim: Embedding size ``D``.
        gradcam_layer: Dotted name (relative to this module) of the default Grad-CAM target
            layer; its output is 5-D ``[B, K, T', H', W']``. ``None`` if there is none.
        weights_info: Provenance of the initial weights (``{"source": "random"}`` or the
            weight name, file, SHA-256 and expected normalisation).
    """

    out_dim: int
    gradcam_layer: str | None

    def __init__(self, *, out_dim: int, gradcam_layer: str | None) -> None:
        super().__init__()
        if out_dim < 1:
            raise ModelError(f"backbone out_dim must be >= 1, got {out_dim}")
        self.out_dim = int(out_dim)
        self.gradcam_layer = gradcam_layer
        self.weights_info: dict[str, Any] = {"source": "random"}

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


Builder = Callable[..., Backbone]


@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry: how to build a backbone and what input it accepts.

    Attributes:
        name: Registry name.
        build: ``build(*, in_channels, weights, **kwargs) -> Backbone``.
        summary: One line for ``available_backbones`` listings and docs.
        kind: ``"video"`` (cine loops), ``"volume"`` (CT/MR) or ``"frames"`` (2-D per frame).
        min_frames: Smallest ``T`` accepted.
        min_size: Smallest ``H`` and ``W`` accepted (pixels).
        fixed_shape: ``(T, H, W)`` the model requires exactly, or ``None``.
        export: ``"export"`` if ``torch.export.export`` handles it (checked by the contract
            test), ``"none"`` otherwise.
        heavy: Seconds to export or run on a CPU even at the minimum size: the contract test
            does a single batch-of-one forward and skips the export check (export of these
            entries is verified by ``bench/export_backbones.py``).
        weights: Names of the pretrained weights it can load (besides a local file).
        notes: Anything else a user must know (recommended sizes for pretrained weights...).
    """

    name: str
    build: Builder
    summary: str
    kind: Literal["video", "volume", "frames"]
    min_frames: int
    min_size: int
    fixed_shape: tuple[int, int, int] | None = None
    export: ExportMode = "export"
    heavy: bool = False
    weights: tuple[str, ...] = ()
    notes: str = ""

    def min_shape(self) -> tuple[int, int, int]:
        """The smallest ``(T, H, W)`` this backbone accepts (the fixed shape, if any)."""
        if self.fixed_shape is not None:
            return self.fixed_shape
        return (self.min_frames, self.min_size, self.min_size)


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(
    name: str,
    *,
    summary: str,
    kind: Literal["video", "volume", "frames"],
    min_frames: int,
    min_size: int,
    fixed_shape: tuple[int, int, int] | None = None,
    export: ExportMode = "export",
    heavy: bool = False,
    weights: Sequence[str] = (),
    notes: str = "",
) -> Callable[[Builder], Builder]:
    """Decorator: register a builder function under ``name`` with its input limits.

    The builder is called as ``build(in_channels=..., weights=..., **kwargs)`` and must return
    a :class:`Backbone`.
    """
    if min_frames < 1 or min_size < 1:
        raise ModelError(
            f"backbone {name!r}: min_frames and min_size must be >= 1, got {min_frames}, {min_size}"
        )

    def deco(fn: Builder) -> Builder:
        if name in BACKBONES and BACKBONES[name].build is not fn:
            raise ModelError(f"backbone name {name!r} is already registered; pick another name")
        BACKBONES[name] = BackboneSpec(
            name=name,
            build=fn,
            summary=summary,
            kind=kind,
            min_frames=min_frames,
            min_size=min_size,
            fixed_shape=fixed_shape,
            export=export,
            heavy=heavy,
            weights=tuple(weights),
            notes=notes,
        )
        return fn

    return deco


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def available_backbones() -> list[str]:
    """Sorted names of every registered backbone (built-ins included)."""
    _load_builtins()
    return sorted(BACKBONES)


def backbone_spec(name: str) -> BackboneSpec:
    """The registry entry for ``name``, or a :class:`ModelError` suggesting the nearest name."""
    _load_builtins()
    if name in BACKBONES:
        return BACKBONES[name]
    close = difflib.get_close_matches(name, BACKBONES, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ModelError(
        f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}.{hint} "
        "Fix the model.backbone setting."
    )


def get_backbone(
    name: str,
    *,
    in_channels: int = 1,
    weights: str | None = None,
    **kwargs: Any,
) -> Backbone:
    """Build the backbone registered as ``name``.

    Args:
        name: Registry name (see :func:`available_backbones`).
        in_channels: Channels ``C`` of the input clips (1 for greyscale echo/CT/MR).
        weights: ``None`` (random init), a named pretrained weight the entry lists
            (``"kinetics400"``, ``"imagenet"``) read from the torch hub cache, or the path of a
            local weights file. Nothing is ever downloaded.
        **kwargs: Entry-specific options (e.g. ``pooling`` for ``resnet18_2d``).

    Returns:
        A :class:`Backbone` mapping ``[B, in_channels, T, H, W]`` → ``[B, out_dim]``.
    """
    spec = backbone_spec(name)
    if in_channels < 1:
        raise ModelError(f"in_channels must be >= 1, got {in_channels}; grey clips have 1")
    try:
        model = spec.build(in_channels=in_channels, weights=weights, **kwargs)
    except TypeError as exc:
        raise ModelError(
            f"backbone {name!r} got an option it does not take ({exc}); check model.backbone_kwargs"
        ) from exc
    if not isinstance(model, Backbone):
        raise ModelError(f"builder of {name!r} returned {type(model).__name__}, not a Backbone")
    return model


def check_input_shape(spec: BackboneSpec, shape: Sequence[int]) -> None:
    """Raise :class:`ModelError` unless ``shape`` (``[B, C, T, H, W]``) fits ``spec``'s limits."""
    if len(shape) != 5:
        raise ModelError(
            f"backbone {spec.name!r} expects a 5-D batch [B, C, T, H, W], got shape {tuple(shape)}"
        )
    t, h, w = (int(s) for s in shape[2:])
    if spec.fixed_shape is not None:
        if (t, h, w) != spec.fixed_shape:
            raise ModelError(
                f"backbone {spec.name!r} needs clips of exactly (T, H, W) = {spec.fixed_shape}, "
                f"got {(t, h, w)}; set data.clip_frames and data.resize to match"
            )
        return
    if t < spec.min_frames or h < spec.min_size or w < spec.min_size:
        raise ModelError(
            f"backbone {spec.name!r} needs T >= {spec.min_frames} and H, W >= {spec.min_size}, "
            f"got (T, H, W) = {(t, h, w)}; use longer clips (data.clip_frames) or larger frames"
        )
