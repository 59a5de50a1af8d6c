"""Saliency maps for video and 3-D models, one call shape for every method (Captum underneath).

``explain(model, clip, target=None, method="gradcam")`` returns an attribution ``[T, H, W]``
for one clip ``[C, T, H, W]`` (T = frames of a cine loop or slices of a volume), whatever
the method. Methods are registered explicitly with :func:`register_explainer`; each entry
is a plain function ``fn(model, x, target, options) -> [T, H, W]`` on one clip ``x`` of
shape ``[1, C, T, H, W]``.

Registered methods:

* ``gradcam`` — Grad-CAM (Selvaraju et al.) on any layer (``layer=`` a module or its
  dotted name; default: the layer a model names in its ``gradcam_layer`` attribute, else
  the last convolution), ReLU-ed and upsampled trilinearly to ``[T, H, W]``. A layer whose
  output is ``[B·T', K, h, w]`` (2-D-per-frame backbones) gives one CAM per frame.
* ``integrated_gradients`` — Integrated Gradients from a zero (or given) baseline, summed
  over channels (signed); ``internal_batch_size`` bounds memory.
* ``saliency`` — |∂y/∂x|, max over channels (Simonyan et al.).
* ``input_x_gradient`` — x·∂y/∂x summed over channels (signed).
* ``smoothgrad`` — saliency averaged over noisy copies of the input.
* ``guided_backprop`` — Guided Backpropagation (signed; known to fail sanity checks).
* ``occlusion`` — Captum ``Occlusion`` with a (frames, rows, cols) window (signed: drop
  in output when the window is replaced by the clip mean).
* ``edge`` — a *model-independent* Sobel edge map of the input: the negative control of
  the sanity checks (Adebayo et al. 2018 show several methods behave like it).

Long clips: with ``chunk_frames=N`` the clip is explained in overlapping windows of ``N``
frames (the way video models see long loops: each window is one model input), and the
window maps are averaged where they overlap. Peak memory is then that of one ``N``-frame
window, independent of the clip length.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hidim.errors import ExplainError

__all__ = [
    "ExplainOptions",
    "ExplainerSpec",
    "EXPLAINERS",
    "ALIASES",
    "register_explainer",
    "available_explainers",
    "get_explainer",
    "resolve_layer",
    "explain",
    "frame_windows",
]


@dataclass(frozen=True)
class ExplainOptions:
    """Options shared by the explainers (each method reads the ones it needs).

    Attributes:
        layer: Grad-CAM layer: a module of the model, its dotted name, or ``None`` for the
            model's default (``gradcam_layer`` attribute, else the last convolution).
        internal_batch_size: How many perturbed copies of the clip go through the model at
            once (IG steps, SmoothGrad samples, occlusion windows). Bounds memory.
        n_steps: Integrated Gradients integration steps.
        baseline: IG / occlusion baseline: ``None`` (zeros for IG, the clip mean for
            occlusion), a float, or a tensor shaped like the clip ``[C, T, H, W]``.
        nt_samples: SmoothGrad noisy samples.
        noise_level: SmoothGrad noise standard deviation as a fraction of the clip's range.
        window: Occlusion window ``(frames, rows, cols)``; ``None`` = all frames × 1/8 of
            each spatial side.
        seed: Seed for stochastic methods (SmoothGrad).
    """

    layer: nn.Module | str | None = None
    internal_batch_size: int = 8
    n_steps: int = 32
    baseline: float | Tensor | None = None
    nt_samples: int = 8
    noise_level: float = 0.15
    window: tuple[int, int, int] | None = None
    seed: int = 0


ExplainerFn = Callable[[nn.Module, Tensor, int | None, ExplainOptions], Tensor]


@dataclass(frozen=True)
class ExplainerSpec:
    """A registered explainer.

    Attributes:
        name: Registry name (``method=`` of :func:`explain`).
        fn: ``fn(model, x [1,C,T,H,W], target, options) -> [T, H, W]`` float32.
        model_dependent: ``False`` for input-only references (``edge``).
        signed: Whether attributions can be negative.
        uses_layer: Whether the ``layer`` option applies.
    """

    name: str
    fn: ExplainerFn
    model_dependent: bool = True
    signed: bool = False
    uses_layer: bool = False


EXPLAINERS: dict[str, ExplainerSpec] = {}
#: Short names accepted wherever a method name is (``--methods gradcam,ig``).
ALIASES = {"ig": "integrated_gradients", "grad-cam": "gradcam", "gbp": "guided_backprop"}


def register_explainer(
    name: str, *, model_dependent: bool = True, signed: bool = False, uses_layer: bool = False
) -> Callable[[ExplainerFn], ExplainerFn]:
    """Function decorator: register an explainer under ``name`` (explicit, no import magic)."""

    def deco(fn: ExplainerFn) -> ExplainerFn:
        if name in EXPLAINERS and EXPLAINERS[name].fn is not fn:
            raise ExplainError(f"explainer {name!r} is already registered")
        EXPLAINERS[name] = ExplainerSpec(name, fn, model_dependent, signed, uses_layer)
        return fn

    return deco


def available_explainers() -> list[str]:
    """Names of the registered explainers."""
    return sorted(EXPLAINERS)


def get_explainer(name: str) -> ExplainerSpec:
    """The explainer registered as ``name`` (or an alias), else an error naming the nearest."""
    name = ALIASES.get(name, name)
    if name in EXPLAINERS:
        return EXPLAINERS[name]
    close = difflib.get_close_matches(name, EXPLAINERS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ExplainError(
        f"unknown explanation method {name!r}; expected one of {available_explainers()}.{hint}"
    )


# --- layer resolution -------------------------------------------------------------------


def _named_modules(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.named_modules())


def resolve_layer(model: nn.Module, layer: nn.Module | str | None = None) -> nn.Module:
    """The module Grad-CAM attributes to.

    Args:
        model: The model being explained.
        layer: A submodule of ``model``, its dotted name (``"backbone.layer4"``), or
            ``None``: the first ``gradcam_layer`` attribute found on the model or one of its
            submodules (a module, or a name relative to the module that declares it), else
            the last ``Conv3d``/``Conv2d`` registered in the model.

    Raises:
        ExplainError: The layer is not part of the model, or no convolution exists.
    """
    modules = _named_modules(model)
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in modules.values()):
            raise ExplainError(
                f"expected a layer that belongs to the model, got a {type(layer).__name__} "
                "that is not one of its submodules; pass model.<path> or its dotted name"
            )
        return layer
    if isinstance(layer, str):
        if layer in modules:
            return modules[layer]
        close = difflib.get_close_matches(layer, [n for n in modules if n], n=3)
        raise ExplainError(
            f"expected a layer name of the model, got {layer!r}; "
            f"close names: {close or 'none'} (list them with dict(model.named_modules()))"
        )
    if layer is not None:
        raise ExplainError(f"layer must be a module, a name or None, got {type(layer).__name__}")
    for owner in model.modules():
        declared = getattr(owner, "gradcam_layer", None)
        if isinstance(declared, nn.Module):
            return declared
        if isinstance(declared, str) and declared:
            return resolve_layer(owner, declared)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv3d, nn.Conv2d))]
    if not convs:
        raise ExplainError(
            "Grad-CAM needs a convolutional layer and the model has none; pass layer=... "
            "or use method='integrated_gradients'"
        )
    return convs[-1]


# --- helpers ----------------------------------------------------------------------------


def _as_clip(clip: Tensor | np.ndarray) -> Tensor:
    x = torch.as_tensor(clip)
    if x.ndim != 4:
        raise ExplainError(
            f"expected one clip shaped [C, T, H, W], got shape {tuple(x.shape)}; "
            "index the batch (clip = batch['clip'][0]) or add a channel axis"
        )
    if not torch.is_floating_point(x):
        x = x.float()
    return x.to(torch.float32)


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _check_output(out: Any) -> Tensor:
    if not isinstance(out, Tensor):
        raise ExplainError(
            f"expected the model to return a tensor [B] or [B, K], got {type(out).__name__}; "
            "wrap it so it returns one score (RunBundle.scorer(output='score') does)"
        )
    if out.ndim not in (1, 2):
        raise ExplainError(
            f"expected model output [B] or [B, K], got shape {tuple(out.shape)}; "
            "pass a model that maps [B, C, T, H, W] to scores"
        )
    return out


def _resolve_target(out: Tensor, target: int | None) -> int | None:
    if out.ndim == 1:
        if target not in (None, 0):
            raise ExplainError(
                f"the model returns one score per clip, so target must be None, got {target}"
            )
        return None
    k = out.shape[1]
    if target is None:
        return 0 if k == 1 else int(out[0].argmax())
    if not 0 <= int(target) < k:
        raise ExplainError(f"target must be in [0, {k}), got {target}")
    return int(target)


def frame_windows(n_frames: int, chunk_frames: int, overlap: int) -> list[tuple[int, int]]:
    """Start/stop frame indices of overlapping windows covering ``n_frames``.

    The last window is aligned to the clip's end, so every window has ``chunk_frames``
    frames (``min(chunk_frames, n_frames)``).
    """
    if chunk_frames < 1:
        raise ExplainError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if not 0 <= overlap < chunk_frames:
        raise ExplainError(f"overlap must be in [0, chunk_frames), got {overlap}")
    if n_frames <= chunk_frames:
        return [(0, n_frames)]
    stride = chunk_frames - overlap
    starts = list(range(0, n_frames - chunk_frames + 1, stride))
    if starts[-1] + chunk_frames < n_frames:
        starts.append(n_frames - chunk_frames)
    return [(s, s + chunk_frames) for s in starts]


def _to_thw(attr: Tensor, reduce: str) -> Tensor:
    """[1, C, T, H, W] → [T, H, W] (sum or max-abs over channels)."""
    a = attr.detach()[0]
    if reduce == "sum":
        return a.sum(0)
    return a.abs().amax(0)


# --- public entry point -----------------------------------------------------------------


def explain(
    model: nn.Module,
    clip: Tensor | np.ndarray,
    target: int | None = None,
    *,
    method: str = "gradcam",
    layer: nn.Module | str | None = None,
    internal_batch_size: int = 8,
    chunk_frames: int | None = None,
    chunk_overlap: int | None = None,
    options: ExplainOptions | None = None,
) -> Tensor:
    """Attribution map of one clip for one model output.

    Args:
        model: Maps ``[B, C, T, H, W]`` to ``[B]`` scores or ``[B, K]`` outputs.
        clip: One clip ``[C, T, H, W]`` float (a tensor or an array).
        target: Output index for ``[B, K]`` outputs (``None`` = the predicted class, or
            the only output); must be ``None`` for ``[B]`` outputs.
        method: A registered method (:func:`available_explainers`).
        layer: Grad-CAM layer (module or dotted name); only for ``gradcam``.
        internal_batch_size: Perturbed copies per forward pass (memory bound).
        chunk_frames: Explain in windows of this many frames (``None`` = the whole clip).
        chunk_overlap: Frames shared by consecutive windows (default ``chunk_frames // 4``).
        options: Further method options; ``layer``/``internal_batch_size`` override it.

    Returns:
        float32 ``[T, H, W]`` on the CPU (signed for signed methods, see the registry).

    Raises:
        ExplainError: Bad clip shape, unknown method, a layer given to a method without
            layers, or a model whose output is not ``[B]``/``[B, K]``.
    """
    spec = get_explainer(method)
    x = _as_clip(clip)
    if layer is not None and not spec.uses_layer:
        raise ExplainError(
            f"method {method!r} does not take a layer; drop layer= or use method='gradcam'"
        )
    if internal_batch_size < 1:
        raise ExplainError(f"internal_batch_size must be >= 1, got {internal_batch_size}")
    opts = replace(
        options or ExplainOptions(),
        layer=layer if layer is not None else (options.layer if options else None),
        internal_batch_size=internal_batch_size,
    )
    n_frames = x.shape[1]
    windows = [(0, n_frames)]
    if chunk_frames is not None:
        overlap = chunk_frames // 4 if chunk_overlap is None else chunk_overlap
        windows = frame_windows(n_frames, chunk_frames, overlap)
    device = _device(model)
    was_training = model.training
    model.eval()
    total = torch.zeros(x.shape[1:], dtype=torch.float32)
    counts = torch.zeros(n_frames, dtype=torch.float32)
    try:
        with torch.enable_grad():
            for start, stop in windows:
                xw = x[:, start:stop].unsqueeze(0).to(device).requires_grad_(True)
                tgt = target
                if spec.model_dependent:
                    with torch.no_grad():
                        tgt = _resolve_target(_check_output(model(xw)), target)
                attr = spec.fn(model, xw, tgt, opts)
                if attr.shape != xw.shape[2:]:
                    raise ExplainError(
                        f"explainer {method!r} returned shape {tuple(attr.shape)}, "
                        f"expected {tuple(xw.shape[2:])}"
                    )
                total[start:stop] += attr.detach().float().cpu()
                counts[start:stop] += 1
    finally:
        model.train(was_training)
    return total / counts.clamp_min(1)[:, None, None]


# --- registered methods -----------------------------------------------------------------


@register_explainer("gradcam", uses_layer=True)
def _gradcam(model: nn.Module, x: Tensor, target: int | None, opts: ExplainOptions) -> Tensor:
    from captum.attr import LayerGradCam

    layer = resolve_layer(model, opts.layer)
    cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    if isinstance(cam, tuple):
        cam = cam[0]
    cam = cam.detach()
    out_t, out_h, out_w = x.shape[2:]
    if cam.ndim == 5:  # [1, 1, t, h, w]
        pass
    elif cam.ndim == 4:  # [N, 1, h, w]: one CAM per frame (N = frames) or a 2-D model (N = 1)
        cam = cam[:, 0][None, None]  # [1, 1, N, h, w]
    else:
        raise ExplainError(
            f"Grad-CAM needs a layer with spatial output ([B,K,t,h,w] or [B·T,K,h,w]), "
            f"got {type(layer).__name__} output attribution of shape {tuple(cam.shape)}; "
            "pass layer= a convolutional block"
        )
    return F.interpolate(cam, size=(out_t, out_h, out_w), mode="trilinear", align_corners=False)[
        0, 0
    ]


def _baseline(x: Tensor, baseline: float | Tensor | None, default: str) -> Tensor | float:
    if baseline is None:
        return 0.0 if default == "zero" else float(x.detach().mean())
    if isinstance(baseline, Tensor):
        b = baseline.to(x)
        if b.ndim == 4:
            b = b.unsqueeze(0)
        if b.shape[1:] != x.shape[1:]:
            raise ExplainError(
                f"baseline must be shaped like the clip {tuple(x.shape[1:])}, got {tuple(b.shape)}"
            )
        return b
    return float(baseline)


@register_explainer("integrated_gradients", signed=True)
def _integrated_gradients(
    model: nn.Module, x: Tensor, target: int | None, opts: ExplainOptions
) -> Tensor:
    from captum.attr import IntegratedGradients

    attr = IntegratedGradients(model).attribute(
        x,
        baselines=_baseline(x, opts.baseline, "zero"),
        target=target,
        n_steps=opts.n_steps,
        internal_batch_size=opts.internal_batch_size,
    )
    return _to_thw(attr, "sum")


@register_explainer("saliency")
def _saliency(model: nn.Module, x: Tensor, target: int | None, opts: ExplainOptions) -> Tensor:
    from captum.attr import Saliency

    return _to_thw(Saliency(model).attribute(x, target=target, abs=True), "max")


@register_explainer("input_x_gradient", signed=True)
def _input_x_gradient(
    model: nn.Module, x: Tensor, target: int | None, opts: ExplainOptions
) -> Tensor:
    from captum.attr import InputXGradient

    return _to_thw(InputXGradient(model).attribute(x, target=target), "sum")


@register_explainer("smoothgrad")
def _smoothgrad(model: nn.Module, x: Tensor, target: int | None, opts: ExplainOptions) -> Tensor:
    from captum.attr import NoiseTunnel, Saliency

    span = float(x.detach().max() - x.detach().min()) or 1.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed)
        attr = NoiseTunnel(Saliency(model)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=opts.nt_samples,
            nt_samples_batch_size=opts.internal_batch_size,
            stdevs=opts.noise_level * span,
            target=target,
            abs=True,
        )
    return _to_thw(attr, "max")


@register_explainer("guided_backprop", signed=True)
def _guided_backprop(
    model: nn.Module, x: Tensor, target: int | None, opts: ExplainOptions
) -> Tensor:
    import warnings

    from captum.attr import GuidedBackprop

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        return _to_thw(GuidedBackprop(model).attribute(x, target=target), "sum")


@register_explainer("occlusion", signed=True)
def _occlusion(model: nn.Module, x: Tensor, target: int | None, opts: ExplainOptions) -> Tensor:
    from captum.attr import Occlusion

    c, t, h, w = x.shape[1:]
    wt, wh, ww = opts.window or (t, max(1, h // 8), max(1, w // 8))
    window = (c, min(wt, t), min(wh, h), min(ww, w))
    attr = Occlusion(model).attribute(
        x,
        sliding_window_shapes=window,
        strides=window,
        baselines=_baseline(x, opts.baseline, "mean"),
        target=target,
        perturbations_per_eval=opts.internal_batch_size,
    )
    return _to_thw(attr, "sum") / c


@register_explainer("edge", model_dependent=False)
def _edge(model: nn.Module, x: Tensor, target: int | None, opts: ExplainOptions) -> Tensor:
    from skimage.filters import sobel

    frames = x[0].mean(0).detach().cpu().numpy()  # [T, H, W]
    return torch.from_numpy(np.stack([sobel(f) for f in frames]).astype(np.float32))
