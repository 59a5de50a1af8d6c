"""Serial occlusion tests: mask a region in every frame of every test clip, re-evaluate, and
report the performance drop with a paired bootstrap CI and p-value.

Heat maps say where a model *looks*; occlusion says what it *needs* (Shad et al. 2021,
"serial occlusion tests"). A region is a function of one dataset item (a ``ClipDataset``
dict with ``clip`` ``[C, T, H, W]`` and keys) returning a boolean mask that broadcasts to
``[T, H, W]`` — ``[H, W]`` (every frame), ``[T, H, W]``, or ``[T]`` (whole frames, used by
:mod:`hidim.explain.temporal`) — or ``None`` when the region is absent from that clip
(the clip is then scored unoccluded). Sources:

* :func:`mask_region` — explicit masks per item key (an annotation import, MD.ai...).
* :func:`grid_regions` — the cells of a ``rows × cols`` grid (:func:`grid_occlusion_map`
  turns their drops into a map).
* :func:`outside_sector_region` — everything outside the ultrasound scan sector,
  estimated from the clip (:func:`estimate_sector`) when no truth is given.
* :func:`hidim.explain.regions.phantom_region` — a named region of the phantom's truth.

Occluded pixels are replaced by ``fill``: the clip's per-channel mean (default), zero, the
per-pixel temporal mean, or a heavy Gaussian blur of the frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from hidim.errors import ExplainError
from hidim.explain._metrics import paired_bootstrap_drop, task_metric, task_metrics

__all__ = [
    "FILLS",
    "Region",
    "MaskFn",
    "occlude",
    "estimate_sector",
    "grid_cell_mask",
    "grid_regions",
    "mask_region",
    "outside_sector_region",
    "occlusion_scores",
    "performance_drop",
    "occlusion_test",
    "OcclusionResult",
    "grid_occlusion_map",
]

FILLS = ("mean", "zero", "temporal_mean", "blur")
Item = Mapping[str, Any]
MaskFn = Callable[[Item], "np.ndarray | Tensor | None"]
LABEL_KEYS = ("target", "time", "event")


@dataclass(frozen=True)
class Region:
    """A named region to occlude.

    Attributes:
        name: Column/row name in the results (e.g. ``"shortcut_marker"``, ``"grid_1_2"``).
        mask_fn: Item → bool mask broadcastable to ``[T, H, W]``, or ``None`` if absent.
        anatomical: Whether the region is anatomy (``False`` for markers, text, outside
            the sector); ``None`` = unknown. The report flags a significant drop at a
            non-anatomical region as a shortcut.
        fill: Fill for this region (``None`` = the test's default).
    """

    name: str
    mask_fn: MaskFn
    anatomical: bool | None = None
    fill: str | None = None


# --- masks and filling ------------------------------------------------------------------


def _as_mask(mask: np.ndarray | Tensor, shape: tuple[int, int, int]) -> Tensor:
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask).bool()
    t, h, w = shape
    if m.ndim == 1:
        if m.shape[0] != t:
            raise ExplainError(f"a frame mask needs {t} entries (one per frame), got {m.shape[0]}")
        m = m[:, None, None]
    elif m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ExplainError(f"expected a mask [H, W], [T, H, W] or [T], got shape {tuple(m.shape)}")
    try:
        return torch.broadcast_to(m, shape)
    except RuntimeError as exc:
        raise ExplainError(
            f"mask of shape {tuple(m.shape)} does not fit a clip of [T, H, W] = {shape}; "
            "build the mask at the clip's (stored) resolution"
        ) from exc


def occlude(clip: Tensor, mask: np.ndarray | Tensor, *, fill: str = "mean") -> Tensor:
    """Replace the masked voxels of every channel of a clip.

    Args:
        clip: ``[C, T, H, W]`` float.
        mask: Bool, broadcastable to ``[T, H, W]`` (``[H, W]``, ``[T, H, W]`` or ``[T]``).
        fill: ``mean`` (per-channel clip mean), ``zero``, ``temporal_mean`` (per-pixel mean
            over frames: removes motion, keeps anatomy) or ``blur`` (Gaussian, sigma = 1/8
            of the shorter side).

    Returns:
        A new ``[C, T, H, W]`` tensor.
    """
    if clip.ndim != 4:
        raise ExplainError(f"expected a clip [C, T, H, W], got shape {tuple(clip.shape)}")
    m = _as_mask(mask, tuple(clip.shape[1:]))  # type: ignore[arg-type]
    if fill == "mean":
        value = clip.mean(dim=(1, 2, 3), keepdim=True).expand_as(clip)
    elif fill == "zero":
        value = torch.zeros_like(clip)
    elif fill == "temporal_mean":
        value = clip.mean(dim=1, keepdim=True).expand_as(clip)
    elif fill == "blur":
        from scipy.ndimage import gaussian_filter

        sigma = max(1.0, min(clip.shape[-2:]) / 8)
        arr = gaussian_filter(clip.detach().cpu().numpy(), sigma=(0, 0, sigma, sigma))
        value = torch.from_numpy(arr).to(clip)
    else:
        raise ExplainError(f"unknown fill {fill!r}; expected one of {list(FILLS)}")
    return torch.where(m[None], value, clip)


def estimate_sector(clip: Tensor | np.ndarray, *, rel_threshold: float = 0.02) -> np.ndarray:
    """Estimate the ultrasound scan sector of a clip: bool ``[H, W]``.

    Inside the sector, speckle changes from frame to frame; outside it pixels are constant
    (background, burned-in text). A pixel is in the sector when its temporal standard
    deviation exceeds ``rel_threshold`` of the clip's intensity range; the largest connected
    component is kept and its holes filled. A single-frame input uses intensity instead.
    """
    from scipy import ndimage

    a = clip.detach().cpu().numpy() if isinstance(clip, Tensor) else np.asarray(clip)
    if a.ndim != 4:
        raise ExplainError(f"expected a clip [C, T, H, W], got shape {a.shape}")
    span = float(a.max() - a.min()) or 1.0
    signal = a.std(axis=1).max(axis=0) if a.shape[1] > 1 else np.abs(a - a.min()).max(axis=(0, 1))
    inside = signal > rel_threshold * span
    labels, n = ndimage.label(inside)
    if n == 0:
        return np.zeros(a.shape[2:], bool)
    sizes = ndimage.sum(inside, labels, index=np.arange(1, n + 1))
    largest = labels == (1 + int(np.argmax(sizes)))
    closed = ndimage.binary_closing(largest, iterations=2)
    return ndimage.binary_fill_holes(closed)


def grid_cell_mask(
    shape_hw: tuple[int, int], grid: tuple[int, int], cell: tuple[int, int]
) -> np.ndarray:
    """Bool ``[H, W]`` mask of cell ``(row, col)`` of a ``grid = (rows, cols)`` tiling."""
    h, w = shape_hw
    rows, cols = grid
    r, c = cell
    if not (0 <= r < rows and 0 <= c < cols):
        raise ExplainError(f"cell {cell} is outside a {rows}x{cols} grid")
    if rows > h or cols > w:
        raise ExplainError(f"a {rows}x{cols} grid does not fit a {h}x{w} frame")
    ys = np.linspace(0, h, rows + 1).round().astype(int)
    xs = np.linspace(0, w, cols + 1).round().astype(int)
    m = np.zeros((h, w), bool)
    m[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = True
    return m


def grid_regions(grid: tuple[int, int] = (4, 4)) -> list[Region]:
    """One region per grid cell, named ``grid_<row>_<col>`` (sized to each clip)."""
    rows, cols = grid
    if rows < 1 or cols < 1:
        raise ExplainError(f"grid must be at least 1x1, got {grid}")

    def cell_fn(r: int, c: int) -> MaskFn:
        return lambda item: grid_cell_mask(tuple(item["clip"].shape[-2:]), grid, (r, c))

    return [Region(f"grid_{r}_{c}", cell_fn(r, c)) for r in range(rows) for c in range(cols)]


def mask_region(
    name: str,
    masks: Mapping[str, np.ndarray | Tensor],
    *,
    key: str = "series_key",
    anatomical: bool | None = None,
) -> Region:
    """A region from explicit masks (e.g. imported annotations), looked up by ``item[key]``.

    Items whose key has no mask are scored unoccluded (the region is absent there).
    """

    def fn(item: Item) -> np.ndarray | Tensor | None:
        return masks.get(str(item.get(key)))

    return Region(name, fn, anatomical)


def outside_sector_region(
    sectors: Mapping[str, np.ndarray] | None = None, *, key: str = "series_key"
) -> Region:
    """Everything outside the scan sector (non-anatomical): from ``sectors[item[key]]``
    (bool ``[H, W]``, True inside) when given, else estimated with :func:`estimate_sector`."""

    def fn(item: Item) -> np.ndarray:
        sector = sectors.get(str(item.get(key))) if sectors is not None else None
        if sector is None:
            sector = estimate_sector(item["clip"])
        return ~np.asarray(sector, bool)

    return Region("outside_sector", fn, anatomical=False)


# --- scoring ----------------------------------------------------------------------------


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _score(scorer: nn.Module, batch: list[Tensor], device: torch.device) -> np.ndarray:
    with torch.no_grad():
        out = scorer(torch.stack(batch).to(device))
    if not isinstance(out, Tensor):
        raise ExplainError(
            f"expected the scorer to return a tensor [B], got {type(out).__name__}; "
            "use RunBundle.scorer(output='score')"
        )
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim != 1:
        raise ExplainError(f"expected scorer output [B], got shape {tuple(out.shape)}")
    return out.detach().float().cpu().numpy()


def occlusion_scores(
    scorer: nn.Module | Callable[[Item], nn.Module],
    items: Iterable[Item],
    regions: Sequence[Region],
    *,
    fill: str = "mean",
    batch_size: int = 8,
    id_keys: Sequence[str] = ("series_key", "study_uid", "patient_key"),
    progress: bool = False,
    total: int | None = None,
) -> pd.DataFrame:
    """Score every item unoccluded and with each region occluded.

    Items are streamed (one clip and its variants in memory at a time, in batches of
    ``batch_size``).

    Args:
        scorer: Maps ``[B, C, T, H, W]`` → ``[B]``; or a function of the item returning the
            module for it (e.g. one that fuses that case's tabular data).
        items: Dataset items with ``clip`` ``[C, T, H, W]``, labels and id keys.
        regions: Regions to occlude (unique names).
        fill: Default fill (see :func:`occlude`).
        batch_size: Clips per forward pass.
        id_keys: Item keys copied into the table when present.
        progress: Show a progress bar.
        total: Number of items, for the progress bar.

    Returns:
        One row per item: id keys, label keys, ``original``, one column per region with the
        occluded score, and ``masked__<region>`` with the masked fraction of voxels (0 when
        the region is absent).
    """
    names = [r.name for r in regions]
    if len(set(names)) != len(names):
        raise ExplainError(f"region names must be unique, got {names}")
    reserved = {"original", *LABEL_KEYS, *id_keys} & set(names)
    if reserved:
        raise ExplainError(f"region names {sorted(reserved)} are reserved; rename the regions")
    if fill not in FILLS:
        raise ExplainError(f"unknown fill {fill!r}; expected one of {list(FILLS)}")
    if batch_size < 1:
        raise ExplainError(f"batch_size must be >= 1, got {batch_size}")
    from hidim.parallel import progress_bar

    fixed = scorer if isinstance(scorer, nn.Module) else None
    was_training = fixed.training if fixed is not None else False
    if fixed is not None:
        fixed.eval()
    rows: list[dict[str, Any]] = []
    try:
        with progress_bar(disable=not progress, transient=True) as bar:
            task = bar.add_task("occlusion", total=total)
            for item in items:
                model = fixed if fixed is not None else scorer(item)  # type: ignore[operator]
                model.eval()
                device = _device(model)
                clip = torch.as_tensor(item["clip"], dtype=torch.float32)
                row: dict[str, Any] = {k: _plain(item[k]) for k in id_keys if k in item}
                row.update({k: _plain(item[k]) for k in LABEL_KEYS if k in item})
                variants, fractions = [clip], {}
                for region in regions:
                    mask = region.mask_fn({**item, "clip": clip})
                    if mask is None:
                        variants.append(clip)
                        fractions[f"masked__{region.name}"] = 0.0
                        continue
                    m = _as_mask(mask, tuple(clip.shape[1:]))  # type: ignore[arg-type]
                    fractions[f"masked__{region.name}"] = float(m.float().mean())
                    variants.append(occlude(clip, m, fill=region.fill or fill))
                scores = np.concatenate(
                    [
                        _score(model, variants[i : i + batch_size], device)
                        for i in range(0, len(variants), batch_size)
                    ]
                )
                row["original"] = float(scores[0])
                row.update({n: float(s) for n, s in zip(names, scores[1:], strict=True)})
                row.update(fractions)
                rows.append(row)
                bar.advance(task)
    finally:
        if fixed is not None:
            fixed.train(was_training)
    if not rows:
        raise ExplainError("no items to occlude; is the test split empty?")
    return pd.DataFrame(rows)


def _plain(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _labels(scores: pd.DataFrame, keys: Sequence[str]) -> dict[str, np.ndarray]:
    missing = [k for k in keys if k not in scores.columns]
    if missing:
        raise ExplainError(
            f"the occlusion scores lack label columns {missing}; items must carry them "
            "(ClipDataset(..., targets=...) does)"
        )
    return {k: scores[k].to_numpy() for k in keys}


def performance_drop(
    scores: pd.DataFrame,
    regions: Sequence[Region | str],
    *,
    task: str,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    all_metrics: bool = True,
) -> pd.DataFrame:
    """Performance drop per region from :func:`occlusion_scores` output.

    Args:
        scores: The table of :func:`occlusion_scores`.
        regions: Regions (or their names) to summarise.
        task: ``binary`` (AUROC, + Brier for probabilities), ``survival`` (C-index) or
            ``regression`` (MAE).
        n_boot: Paired bootstrap replicates.
        alpha: 1 - confidence level.
        seed: Bootstrap seed (the same resamples for every region).
        all_metrics: Every metric of :func:`~hidim.explain._metrics.task_metrics`; ``False``:
            the primary metric only.

    Returns:
        One row per region and metric (primary first): ``region, anatomical, metric,
        original, occluded, drop, drop_lower, drop_upper, p_value, significant, n,
        n_present, masked_fraction``. ``significant`` = the interval excludes 0 with a
        positive drop.
    """
    primary = task_metric(task)
    labels = _labels(scores, primary.label_keys)
    keep = np.ones(len(scores), bool)
    for v in labels.values():
        keep &= pd.notna(v)
    labels = {k: v[keep] for k, v in labels.items()}
    original = scores["original"].to_numpy(float)[keep]
    metrics = task_metrics(task, original) if all_metrics else [primary]
    out = []
    for region in regions:
        name = region if isinstance(region, str) else region.name
        if name not in scores.columns:
            raise ExplainError(f"no scores for region {name!r}; run occlusion_scores with it")
        frac = scores.get(f"masked__{name}", pd.Series(np.nan, index=scores.index))[keep]
        for metric in metrics:
            est = paired_bootstrap_drop(
                metric, labels, original, scores[name].to_numpy(float)[keep],
                n_boot=n_boot, alpha=alpha, seed=seed,
            )  # fmt: skip
            out.append(
                {
                    "region": name,
                    "anatomical": None if isinstance(region, str) else region.anatomical,
                    "metric": metric.name,
                    "original": est.original,
                    "occluded": est.occluded,
                    "drop": est.drop,
                    "drop_lower": est.lower,
                    "drop_upper": est.upper,
                    "p_value": est.p_value,
                    "significant": bool(est.lower is not None and est.lower > 0),
                    "n": int(keep.sum()),
                    "n_present": int((frac > 0).sum()),
                    "masked_fraction": float(frac[frac > 0].mean()) if (frac > 0).any() else 0.0,
                }
            )
    return pd.DataFrame(out)


@dataclass(frozen=True)
class OcclusionResult:
    """Per-item scores and the per-region drop table of an occlusion test."""

    scores: pd.DataFrame
    table: pd.DataFrame


def occlusion_test(
    scorer: nn.Module | Callable[[Item], nn.Module],
    items: Iterable[Item],
    regions: Sequence[Region],
    *,
    task: str,
    fill: str = "mean",
    batch_size: int = 8,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    progress: bool = False,
    total: int | None = None,
) -> OcclusionResult:
    """Occlude each region in every frame of every item and report the performance drop.

    See :func:`occlusion_scores` and :func:`performance_drop` for the arguments.
    """
    task_metric(task)  # fail before the expensive part
    scores = occlusion_scores(
        scorer, items, regions, fill=fill, batch_size=batch_size, progress=progress, total=total
    )
    table = performance_drop(scores, regions, task=task, n_boot=n_boot, alpha=alpha, seed=seed)
    return OcclusionResult(scores, table)


def grid_occlusion_map(
    scorer: nn.Module,
    items: Iterable[Item],
    *,
    task: str,
    grid: tuple[int, int] = (4, 4),
    fill: str = "mean",
    batch_size: int = 8,
    n_boot: int = 200,
    seed: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Population-level occlusion map: the performance drop when each grid cell is masked.

    Returns:
        ``(drops [rows, cols], table)`` where ``table`` is the :func:`performance_drop` table
        of the cells for the task's primary metric (with CIs and p-values).
    """
    regions = grid_regions(grid)
    res = occlusion_test(
        scorer, items, regions, task=task, fill=fill, batch_size=batch_size,
        n_boot=n_boot, seed=seed, progress=progress,
    )  # fmt: skip
    table = res.table[res.table["metric"] == task_metric(task).name].reset_index(drop=True)
    drops = table["drop"].to_numpy(dtype=float).reshape(grid)
    return drops, table
