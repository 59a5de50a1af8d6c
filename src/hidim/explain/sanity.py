"""Sanity checks for saliency maps (Adebayo et al., "Sanity checks for saliency maps", 2018).

A saliency method that explains a *model* must change its maps when what the model learned
is destroyed. Two tests do the destroying:

* **Model-parameter randomisation (cascading)** — re-initialise the model's parameterised
  layers one at a time from the output layer down (the cascade), recomputing the maps
  after each step. :func:`model_randomisation_test`.
* **Data (label) randomisation** — retrain a small copy of the model on permuted labels and
  compare its maps with those of the same recipe on the true labels (or with the given
  model). :func:`data_randomisation_test`; the caller supplies ``train_fn``.

Similarity between an original map and its randomised counterpart, per clip, then the
median over clips (:func:`map_similarity`):

* ``spearman_abs`` / ``spearman`` — Spearman rank correlation of the maps with / without
  the absolute value (Adebayo et al. report both; the absolute value hides sign flips).
* ``ssim_abs`` / ``ssim`` — structural similarity (scikit-image), frame by frame on maps
  scaled to [0, 1], averaged over frames.

**Verdict (documented threshold).** A method *passes* a test when the median over clips of
``spearman_abs`` between the original and the (fully) randomised maps is **below 0.5**
(``DEFAULT_THRESHOLD``): after the whole model is re-initialised, or trained on noise, fewer
than half of the pixels' importance ranks may survive. A map constant over the clip shares
no ranking with anything and scores 0. The model-independent ``edge`` method is the
negative control that must fail (similarity 1 by construction).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hidim.errors import ExplainError
from hidim.explain.saliency import explain, get_explainer

__all__ = [
    "DEFAULT_THRESHOLD",
    "SIMILARITY_METRICS",
    "SanityStep",
    "SanityResult",
    "map_similarity",
    "randomisation_units",
    "randomise_",
    "model_randomisation_test",
    "data_randomisation_test",
]

DEFAULT_THRESHOLD = 0.5
SIMILARITY_METRICS = ("spearman_abs", "spearman", "ssim_abs", "ssim")
TrainFn = Callable[..., nn.Module]


@dataclass(frozen=True)
class SanityStep:
    """Similarity after one randomisation step (medians over clips).

    Attributes:
        step: Number of units randomised so far (cascade) or 1 (data randomisation).
        layer: Name of the last unit randomised (``"labels"`` for data randomisation).
        similarity: ``{metric: median over clips}`` for :data:`SIMILARITY_METRICS`.
        constant_maps: Share of clips whose randomised map is constant (e.g. an all-zero
            Grad-CAM once the head is random): such maps score 0 similarity — they changed,
            but carry no information either.
    """

    step: int
    layer: str
    similarity: dict[str, float]
    constant_maps: float = 0.0


@dataclass(frozen=True)
class SanityResult:
    """Verdict of one sanity test for one method.

    Attributes:
        method: Explanation method.
        test: ``"model_randomisation"`` or ``"data_randomisation"``.
        metric: Similarity metric of the verdict (``spearman_abs``).
        similarity: That metric at the final (fully randomised) step.
        threshold: Pass when ``similarity < threshold``.
        passed: The verdict.
        n_clips: Clips compared.
        steps: The similarity after each step (the cascade curve).
    """

    method: str
    test: str
    metric: str
    similarity: float
    threshold: float
    passed: bool
    n_clips: int
    steps: tuple[SanityStep, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the report reads ``method/test/similarity/threshold/passed``)."""
        return asdict(self)


# --- similarity ------------------------------------------------------------------------


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def _unit(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    a, b = _unit(a), _unit(b)
    side = min(a.shape[-2:])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        raise ExplainError(f"SSIM needs frames of at least 3x3 pixels, got {a.shape[-2:]}")
    vals = [
        structural_similarity(fa, fb, data_range=1.0, win_size=win)
        for fa, fb in zip(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]), strict=True)
    ]
    return float(np.mean(vals))


def map_similarity(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> dict[str, float]:
    """Similarity of two attribution maps of the same clip.

    Args:
        a: ``[T, H, W]`` (or ``[H, W]``) map.
        b: Same shape.

    Returns:
        ``{"spearman_abs", "spearman", "ssim_abs", "ssim"}``; each 0 when a map is constant.
    """
    x = a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)
    y = b.detach().cpu().numpy() if isinstance(b, Tensor) else np.asarray(b)
    if x.shape != y.shape:
        raise ExplainError(f"maps must have the same shape, got {x.shape} and {y.shape}")
    x, y = x.astype(np.float64), y.astype(np.float64)
    return {
        "spearman_abs": _spearman(np.abs(x), np.abs(y)),
        "spearman": _spearman(x, y),
        "ssim_abs": _ssim(np.abs(x), np.abs(y)),
        "ssim": _ssim(x, y),
    }


# --- randomisation ---------------------------------------------------------------------


def randomisation_units(model: nn.Module, layers: Sequence[str] | None = None) -> list[str]:
    """Names of the units the cascade randomises, output side first.

    Args:
        model: The model.
        layers: Explicit unit names (modules; each is randomised with all its submodules),
            output side first. ``None``: every module that owns parameters directly, in
            reverse registration order (registration order follows the forward pass in
            torchvision/MONAI networks).
    """
    named = dict(model.named_modules())
    if layers is not None:
        missing = [n for n in layers if n not in named]
        if missing:
            raise ExplainError(
                f"cascade layers {missing} are not modules of the model; "
                "use names from dict(model.named_modules())"
            )
        return list(layers)
    units = [n for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    if not units:
        raise ExplainError("the model has no parameters to randomise")
    return units[::-1]


def randomise_(module: nn.Module, *, seed: int) -> None:
    """Re-initialise ``module`` and its submodules in place (seeded; global RNG untouched).

    Modules with ``reset_parameters`` use their own default initialisation; other direct
    parameters are redrawn from a normal with the parameter's standard deviation.
    """
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for m in module.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
                continue
            for p in m.parameters(recurse=False):
                std = float(p.std()) if p.numel() > 1 else 0.02
                p.normal_(0.0, std or 0.02)


def _layer_name(model: nn.Module, layer: nn.Module | str | None) -> str | None:
    if layer is None or isinstance(layer, str):
        return layer
    for name, m in model.named_modules():
        if m is layer:
            return name
    raise ExplainError("the Grad-CAM layer is not a submodule of the model")


def _maps(
    model: nn.Module,
    clips: Sequence[Tensor],
    targets: Sequence[int | None],
    method: str,
    explain_kwargs: Mapping[str, Any],
) -> list[np.ndarray]:
    return [
        explain(model, c, t, method=method, **explain_kwargs).numpy()
        for c, t in zip(clips, targets, strict=True)
    ]


def _step(step: int, layer: str, orig: list[np.ndarray], new: list[np.ndarray]) -> SanityStep:
    sims = [map_similarity(a, b) for a, b in zip(orig, new, strict=True)]
    medians = {k: float(np.median([s[k] for s in sims])) for k in SIMILARITY_METRICS}
    constant = float(np.mean([np.ptp(b) == 0 for b in new]))
    return SanityStep(step=step, layer=layer, similarity=medians, constant_maps=constant)


def _prepare(
    clips: Sequence[Tensor | np.ndarray], targets: Sequence[int | None] | None
) -> tuple[list[Tensor], list[int | None]]:
    cl = [torch.as_tensor(c, dtype=torch.float32) for c in clips]
    if not cl:
        raise ExplainError("sanity checks need at least one clip; pass a few test clips")
    tg: list[int | None] = list(targets) if targets is not None else [None] * len(cl)
    if len(tg) != len(cl):
        raise ExplainError(f"expected one target per clip ({len(cl)}), got {len(tg)}")
    return cl, tg


def _cascade_steps(n_units: int, max_steps: int) -> list[int]:
    if max_steps < 1:
        raise ExplainError(f"max_steps must be >= 1, got {max_steps}")
    return sorted({int(round(s)) for s in np.linspace(1, n_units, min(max_steps, n_units))})


def model_randomisation_test(
    model: nn.Module,
    clips: Sequence[Tensor | np.ndarray],
    *,
    methods: Sequence[str] = ("gradcam",),
    targets: Sequence[int | None] | None = None,
    layers: Sequence[str] | None = None,
    max_steps: int = 6,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    explain_kwargs: Mapping[str, Any] | None = None,
) -> list[SanityResult]:
    """Cascading model-parameter randomisation, output layer first.

    Args:
        model: The trained model (left unchanged: a deep copy is randomised).
        clips: Test clips ``[C, T, H, W]`` (a handful suffices).
        methods: Explanation methods to test.
        targets: Output index per clip for ``[B, K]`` models.
        layers: Units to randomise, output side first (default:
            :func:`randomisation_units`).
        max_steps: Cascade steps at which maps are recomputed (evenly spaced; the last is
            always "everything randomised").
        threshold: Pass when the final ``spearman_abs`` median is below it.
        seed: Randomisation seed.
        explain_kwargs: Passed to :func:`hidim.explain.explain` (``layer``,
            ``chunk_frames``...). A ``layer`` module is mapped to its name in the copy.

    Returns:
        One :class:`SanityResult` per method (``test="model_randomisation"``).
    """
    cl, tg = _prepare(clips, targets)
    for m in methods:
        get_explainer(m)
    kwargs = dict(explain_kwargs or {})
    if "layer" in kwargs:
        kwargs["layer"] = _layer_name(model, kwargs["layer"])
    units = randomisation_units(model, layers)
    original = {m: _maps(model, cl, tg, m, kwargs) for m in methods}
    copy_ = copy.deepcopy(model)
    named = dict(copy_.named_modules())
    record = set(_cascade_steps(len(units), max_steps))
    steps: dict[str, list[SanityStep]] = {m: [] for m in methods}
    for i, name in enumerate(units, start=1):
        randomise_(named[name], seed=seed + i)
        if i not in record:
            continue
        for m in methods:
            steps[m].append(_step(i, name, original[m], _maps(copy_, cl, tg, m, kwargs)))
    return [_verdict(m, "model_randomisation", steps[m], threshold, len(cl)) for m in methods]


def data_randomisation_test(
    train_fn: TrainFn,
    clips: Sequence[Tensor | np.ndarray],
    *,
    methods: Sequence[str] = ("gradcam",),
    targets: Sequence[int | None] | None = None,
    reference_model: nn.Module | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    explain_kwargs: Mapping[str, Any] | None = None,
) -> list[SanityResult]:
    """Data randomisation: maps of a model trained on permuted labels vs. true labels.

    Args:
        train_fn: ``train_fn(shuffle_labels: bool, seed: int) -> nn.Module`` trains a small
            copy of the model (same architecture and recipe) on the training data, with the
            labels randomly permuted (seeded) when ``shuffle_labels`` is true.
        clips: Test clips ``[C, T, H, W]``.
        methods: Explanation methods to test.
        targets: Output index per clip for ``[B, K]`` models.
        reference_model: Compare against this model; ``None`` trains the reference with
            ``train_fn(shuffle_labels=False, seed=seed)`` so both share the same budget.
        threshold: Pass when the median ``spearman_abs`` is below it.
        seed: Seed handed to ``train_fn``.
        explain_kwargs: Passed to :func:`hidim.explain.explain`.

    Returns:
        One :class:`SanityResult` per method (``test="data_randomisation"``).
    """
    cl, tg = _prepare(clips, targets)
    for m in methods:
        get_explainer(m)
    kwargs = dict(explain_kwargs or {})
    if reference_model is None:
        reference_model = train_fn(shuffle_labels=False, seed=seed)
    if "layer" in kwargs:
        kwargs["layer"] = _layer_name(reference_model, kwargs["layer"])
    shuffled = train_fn(shuffle_labels=True, seed=seed)
    if not isinstance(shuffled, nn.Module):
        raise ExplainError(f"train_fn must return an nn.Module, got {type(shuffled).__name__}")
    out = []
    for m in methods:
        step = _step(
            1,
            "labels",
            _maps(reference_model, cl, tg, m, kwargs),
            _maps(shuffled, cl, tg, m, kwargs),
        )
        out.append(_verdict(m, "data_randomisation", [step], threshold, len(cl)))
    return out


def _verdict(
    method: str, test: str, steps: list[SanityStep], threshold: float, n: int
) -> SanityResult:
    final = steps[-1].similarity["spearman_abs"]
    if not np.isfinite(final):
        warnings.warn(f"{method}: similarity is not finite; verdict is 'fail'", stacklevel=3)
    return SanityResult(
        method=method,
        test=test,
        metric="spearman_abs",
        similarity=final,
        threshold=threshold,
        passed=bool(np.isfinite(final) and final < threshold),
        n_clips=n,
        steps=tuple(steps),
    )
