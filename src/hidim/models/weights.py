"""Pretrained weights without downloads, and 1-channel adaptation of 3-channel stems.

hidim never downloads at run time (hospital machines are often offline, and a silently
fetched checkpoint is an unrecorded input). A backbone's ``weights`` option is one of

* ``None``: random initialisation;
* a **name** the registry entry lists (``"kinetics400"``, ``"imagenet"``): the torchvision
  weight enum's file, read from the torch hub cache (``$TORCH_HOME/hub/checkpoints/`` —
  see :func:`hub_checkpoint_path`) only if it is already there;
* a **path** to a local file: a ``state_dict`` (``torch.save``), a Lightning checkpoint
  (``{"state_dict": ...}``), or ``{"model": ...}``; ``module.``/``net.`` prefixes are
  stripped.

Missing files raise :class:`hidim.errors.ModelError` saying where to put them.

**Stem adaptation.** Echo, CT and MR are single-channel; Kinetics/ImageNet stems take RGB.
:func:`adapt_first_conv` averages the first convolution's weights over its input channels
and rescales by the original channel count, so a 1-channel clip produces exactly the
activations the pretrained model produces on that clip repeated to 3 channels (the usual
grey→RGB practice), at a third of the stem's input cost.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from hidim.errors import ModelError

__all__ = [
    "hub_checkpoint_path",
    "read_state_dict",
    "adapt_first_conv",
    "replace_first_conv",
    "init_backbone_weights",
]

_WRAPPER_PREFIXES = ("module.", "model.", "net.", "_orig_mod.")


def hub_checkpoint_path(url: str) -> Path:
    """Where torch hub caches the file of ``url`` (``torch.hub.get_dir()/checkpoints/<name>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a weights file into a flat ``{name: tensor}`` dict (CPU, ``weights_only``).

    Accepts a plain ``state_dict``, a Lightning checkpoint (``{"state_dict": ...}``) or a
    ``{"model": ...}`` wrapper, and ``.safetensors`` files. Common wrapper prefixes
    (``module.``, ``net.``...) shared by every key are stripped.
    """
    file = Path(path)
    if not file.is_file():
        raise ModelError(
            f"weights file {str(file)!r} does not exist; pass the path of a .pt/.pth/.ckpt "
            "state_dict you saved, or weights: null for random initialisation"
        )
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(file))
        else:
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ModelError(
            f"cannot read weights file {str(file)!r} ({type(exc).__name__}: {exc}); expected a "
            "torch.save'd state_dict of tensors"
        ) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ModelError(
            f"weights file {str(file)!r} does not hold a state_dict of tensors; save one with "
            "torch.save(model.state_dict(), path)"
        )
    state = {str(k): v for k, v in obj.items()}
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def adapt_first_conv(conv: nn.Conv3d | nn.Conv2d, in_channels: int) -> nn.Conv3d | nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels`` inputs, preserving its response to grey input.

    The weights are averaged over the original ``C0`` input channels and rescaled by
    ``C0 / in_channels`` (for ``in_channels = 1`` that is the channel sum), so for an input
    whose channels are all equal the output equals the original conv's output on that
    channel repeated ``C0`` times.
    """
    if in_channels < 1:
        raise ModelError(f"in_channels must be >= 1, got {in_channels}")
    c0 = conv.in_channels
    if c0 == in_channels:
        return conv
    if conv.groups != 1:
        raise ModelError(f"cannot adapt a grouped first conv (groups={conv.groups})")
    new = replace_first_conv(conv, in_channels)
    with torch.no_grad():
        mean = conv.weight.mean(dim=1, keepdim=True)
        expand = [-1, in_channels] + [-1] * (conv.weight.ndim - 2)
        new.weight.copy_(mean.expand(*expand) * (c0 / in_channels))
        if conv.bias is not None and new.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def replace_first_conv(conv: nn.Conv3d | nn.Conv2d, in_channels: int) -> nn.Conv3d | nn.Conv2d:
    """A freshly initialised conv like ``conv`` but with ``in_channels`` inputs."""
    cls = type(conv)
    return cls(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )


def _set_submodule(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _named_weights_state(
    backbone: str, name: str, named: Mapping[str, Any]
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    enum = named[name]
    path = hub_checkpoint_path(enum.url)
    if not path.is_file():
        raise ModelError(
            f"pretrained weights {name!r} for backbone {backbone!r} are not on this machine and "
            f"hidim never downloads at run time. Expected the file {path.name!r} in the torch "
            f"hub cache: {path} (set TORCH_HOME to move the cache). Fix: copy it there from a "
            f"machine with internet access (source: {enum.url}), or pass a local file with "
            "--weights /path/to/weights.pth, or use weights: null."
        )
    state = read_state_dict(path)
    transforms = enum.transforms()
    info = {
        "source": name,
        "enum": str(enum),
        "file": str(path),
        "mean": list(getattr(transforms, "mean", [])),
        "std": list(getattr(transforms, "std", [])),
    }
    return state, info


def init_backbone_weights(
    model: nn.Module,
    *,
    backbone: str,
    stem: str,
    in_channels: int,
    weights: str | os.PathLike[str] | None,
    named: Mapping[str, Any] | None = None,
    drop_prefixes: Iterable[str] = (),
) -> dict[str, Any]:
    """Load ``weights`` into ``model`` (if any), then adapt its first conv to ``in_channels``.

    Args:
        model: The library model (torchvision / MONAI) with its classifier already removed.
        backbone: Registry name, for messages.
        stem: Dotted name of the first convolution in ``model``.
        in_channels: Channels of the data.
        weights: ``None``, a key of ``named``, or a local file path (see module docstring).
        named: ``{weight name: torchvision WeightsEnum member}``.
        drop_prefixes: State-dict key prefixes to ignore (the classifier the checkpoint has
            and the backbone does not).

    Returns:
        Provenance of the weights (``source``, ``file``, ``sha256``, normalisation).
    """
    named = dict(named or {})
    conv = model.get_submodule(stem)
    if not isinstance(conv, (nn.Conv2d, nn.Conv3d)):
        raise ModelError(f"{backbone}: stem {stem!r} is {type(conv).__name__}, not a conv")
    info: dict[str, Any] = {"source": "random"}
    if weights is not None:
        text = str(weights)
        if text in named:
            state, info = _named_weights_state(backbone, text, named)
        elif Path(text).suffix or os.sep in text or Path(text).exists():
            state = read_state_dict(text)
            info = {"source": "file", "file": str(Path(text).resolve())}
        else:
            raise ModelError(
                f"backbone {backbone!r} has no pretrained weights named {text!r}; expected one "
                f"of {sorted(named) or 'none'} or the path of a local weights file"
            )
        from hidim.provenance import file_sha256

        info["sha256"] = file_sha256(info["file"])
        drop = tuple(drop_prefixes)
        state = {k: v for k, v in state.items() if not k.startswith(drop)}
        stem_key = f"{stem}.weight"
        if stem_key not in state:
            raise ModelError(
                f"weights for {backbone!r} have no {stem_key!r}; the file does not belong to "
                f"this architecture (first keys: {list(state)[:3]})"
            )
        file_channels = int(state[stem_key].shape[1])
        if file_channels != conv.in_channels:
            _set_submodule(model, stem, replace_first_conv(conv, file_channels))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(
                f"weights for {backbone!r} do not match the architecture: "
                f"{str(exc).splitlines()[0]} ... Check that the file was saved from {backbone!r}."
            ) from exc
        conv = model.get_submodule(stem)
        info["stem_channels"] = file_channels
        _set_submodule(model, stem, adapt_first_conv(conv, in_channels))  # type: ignore[arg-type]
    elif conv.in_channels != in_channels:
        _set_submodule(model, stem, replace_first_conv(conv, in_channels))  # type: ignore[arg-type]
    info["in_channels"] = in_channels
    return info
