"""``explain_run``: every explanation test on a trained run, written as ``explain/summary.json``.

For a run directory (``hidim train``) and its store it runs, on the test split:

1. **occlusion** — the performance drop when each region is masked in every frame
   (phantom truth regions when ``truth`` is given, else the area outside the estimated scan
   sector), overall and per acquisition site, with a shortcut flag for non-anatomical
   regions; plus a population grid-occlusion map;
2. **temporal** — the drop per cardiac-phase window (truth phases or estimated);
3. **saliency cases** — overlay GIF, key-frame panel and per-frame importance curve for
   correctly and incorrectly predicted cases, per method; attribution localisation against
   truth regions;
4. **sanity checks** — cascading parameter randomisation per method (and label
   randomisation when asked: retrains a short copy on permuted labels);
5. **input streams** — Shapley values of image vs tabular inputs for fusion models.

``summary.json`` keys ``methods``, ``sanity_checks``, ``occlusion``, ``phases``,
``frame_importance``, ``cases``, ``shapley`` follow the report's explanation-section
fields exactly; ``details`` holds the full tables (cascade curves, CIs, grid, localisation).
Image paths are relative to the run directory.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hidim.errors import ExplainError
from hidim.explain._metrics import TASKS
from hidim.explain.occlusion import Region, outside_sector_region
from hidim.explain.regions import LAYOUT_REGIONS, TruthIndex, phantom_region, truth_path
from hidim.explain.saliency import get_explainer

__all__ = ["ExplainRunOptions", "DEFAULT_TRUTH_REGIONS", "explain_run", "truth_regions"]

DEFAULT_TRUTH_REGIONS = ("lv_cavity", "myocardium", "shortcut_marker", "outside_sector")
SCHEMA = "hidim.explain/1"


@dataclass(frozen=True, kw_only=True)
class ExplainRunOptions:
    """What :func:`explain_run` does (every field has a working default).

    Attributes:
        methods: Saliency methods (registry names or aliases such as ``ig``).
        n_cases: Explained cases: half correct, half incorrect (most confident first).
        regions: Occlusion region names (phantom truth names, ``outside_sector``); ``None``
            = the defaults (truth: :data:`DEFAULT_TRUTH_REGIONS` present in the phantom).
        split: Store split evaluated.
        max_items: Cap on evaluated clips (``None``: all of the split).
        n_boot: Bootstrap replicates of every CI.
        alpha: 1 - confidence level.
        grid: Grid of the population occlusion map, or ``None`` to skip it.
        min_shortcut_drop: Smallest significant drop (metric units) at a non-anatomical
            region that raises the shortcut flag.
        temporal: Run the phase-window test.
        sanity_clips: Clips used by the sanity checks.
        sanity_steps: Cascade steps recorded.
        label_randomisation: Also run the data-randomisation test (retrains a copy).
        retrain_epochs: Epochs of that copy.
        streams: Shapley input-stream importance for tabular-fusion models.
        chunk_frames: Explain long clips in windows of this many frames.
        batch_size: Clips per forward pass.
        seed: Seed of the bootstrap, the randomisation and the data order.
        progress: Show progress bars.
    """

    methods: tuple[str, ...] = ("gradcam", "integrated_gradients")
    n_cases: int = 4
    regions: tuple[str, ...] | None = None
    split: str = "test"
    max_items: int | None = None
    n_boot: int = 1000
    alpha: float = 0.05
    grid: tuple[int, int] | None = (4, 4)
    min_shortcut_drop: float = 0.02
    temporal: bool = True
    sanity_clips: int = 4
    sanity_steps: int = 6
    label_randomisation: bool = False
    retrain_epochs: int = 2
    streams: bool = True
    chunk_frames: int | None = None
    batch_size: int = 8
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.methods:
            raise ExplainError("give at least one explanation method, e.g. methods=('gradcam',)")
        object.__setattr__(self, "methods", tuple(get_explainer(m).name for m in self.methods))
        for name, value, low in (
            ("n_cases", self.n_cases, 0),
            ("n_boot", self.n_boot, 2),
            ("sanity_clips", self.sanity_clips, 0),
            ("sanity_steps", self.sanity_steps, 1),
            ("batch_size", self.batch_size, 1),
            ("retrain_epochs", self.retrain_epochs, 1),
        ):
            if value < low:
                raise ExplainError(f"{name} must be >= {low}, got {value}")
        if self.max_items is not None and self.max_items < 1:
            raise ExplainError(f"max_items must be >= 1, got {self.max_items}")


class _Items:
    """Re-iterable view of a dataset's first ``limit`` items, with their dataset index."""

    def __init__(self, dataset: Any, limit: int | None) -> None:
        self.dataset = dataset
        self.n = len(dataset) if limit is None else min(limit, len(dataset))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.dataset[i])
        item["_index"] = i
        return item

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(self.n))


def _plain(v: Any) -> Any:
    """JSON-safe value (NaN/inf → None, numpy → Python)."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def explain_run(
    run_dir: str | os.PathLike[str],
    *,
    store: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    truth: str | os.PathLike[str] | None = None,
    reid_table: str | os.PathLike[str] | None = None,
    options: ExplainRunOptions | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Run the explanation tests on a trained run and write ``explain/summary.json``.

    Args:
        run_dir: A ``hidim train`` run directory.
        store: The store to evaluate (default: the run's training store).
        out_dir: Output folder (default ``RUN/explain``).
        truth: A phantom's ``truth.json`` (or folder): named regions and true phases.
        reid_table: The ``hidim deid`` re-identification table, to match a de-identified
            store's series to the truth (without it, only layout regions — sector, marker
            location — are known and phases are estimated).
        options: :class:`ExplainRunOptions`; keyword ``overrides`` replace its fields.

    Returns:
        The summary written to ``summary.json``.
    """
    from hidim.provenance import atomic_write_text, write_run_json
    from hidim.store import Store
    from hidim.training.bundle import load_run
    from hidim.training.metrics import task_kind

    opts = options or ExplainRunOptions()
    if overrides:
        opts = ExplainRunOptions(**{**asdict(opts), **overrides})
    run = Path(run_dir)
    bundle = load_run(run)
    st = Store(store if store is not None else bundle.store_path)
    out = Path(out_dir) if out_dir is not None else run / "explain"
    out.mkdir(parents=True, exist_ok=True)
    task = task_kind(bundle.task)
    index = None
    if truth is not None:
        index = TruthIndex(truth_path(truth), st.manifest, reid_table=reid_table)
    items = _Items(_dataset(bundle, st, opts), opts.max_items)
    if len(items) == 0:
        raise ExplainError(
            f"the {opts.split!r} split of {st.path} has no labelled clips to explain"
        )
    scorer_for = _scorer_factory(bundle)
    notes: list[str] = []
    manifest = st.manifest
    if "deidentified" in manifest.columns and not manifest["deidentified"].fillna(False).all():
        notes.append(
            "the store is not (entirely) de-identified: case images may show burned-in "
            "identifiers; share explain/ only inside the hospital"
        )
    summary: dict[str, Any] = {
        "schema": SCHEMA,
        "methods": list(opts.methods),
        "task": task,
        "n_items": len(items),
        "truth": {"used": index is not None, "matched_series": index.n_matched if index else 0},
    }
    details: dict[str, Any] = {}
    from hidim.explain import run_sections as sec

    scores = None
    if task in TASKS:
        regions, region_notes = truth_regions(index, opts.regions, store=st)
        notes += region_notes
        occ = sec.occlusion_section(scorer_for, items, st, regions, task, opts, out, run)
        summary["occlusion"], details["occlusion"] = occ["rows"], occ["details"]
        summary["flags"], scores = occ["flags"], occ["scores"]
        if opts.temporal:
            tmp = sec.temporal_section(scorer_for, items, index, task, opts)
            summary["phases"], details["temporal"] = tmp["rows"], tmp["details"]
    else:
        notes.append(f"occlusion and temporal tests need a {'/'.join(TASKS)} head, not {task!r}")
    cases = sec.cases_section(bundle, scorer_for, items, scores, index, task, opts, out, run)
    summary["cases"], summary["frame_importance"] = cases["cases"], cases["frame_importance"]
    details["cases"] = cases["details"]
    sanity = sec.sanity_section(bundle, scorer_for, items, opts, out)
    summary["sanity_checks"], details["sanity"] = sanity["rows"], sanity["details"]
    notes += sanity["notes"]
    if opts.streams:
        streams = sec.streams_section(bundle, items, opts)
        summary["shapley"], details["streams"] = streams["rows"], streams["details"]
        notes += streams["notes"]
    summary["notes"] = notes
    summary["details"] = details
    summary = _plain(summary)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, allow_nan=False))
    write_run_json(
        out,
        command="explain",
        config={**asdict(opts), "run_dir": str(run), "store": str(st.path),
                "truth": str(truth) if truth else None},
        seed=opts.seed,
        extra={"n_items": len(items), "task": task},
    )  # fmt: skip
    return summary


def _dataset(bundle: Any, store: Any, opts: ExplainRunOptions) -> Any:
    from hidim.training.datamodule import build_dataset

    return build_dataset(
        store,
        bundle.config.data,
        split=opts.split,
        sampling="centre",
        multiview=False,
        seed=opts.seed,
        encoder=bundle.tabular_encoder,
        coder=bundle.group_coder,
    )


def _scorer_factory(bundle: Any) -> Any:
    """One scorer for plain models; per-item scorers for multi-view or tabular fusion."""
    net = bundle.model
    views = list(bundle.config.data.views or [])
    if net.multiview is None and net.tabular is None:
        fixed = bundle.scorer("score")
        return lambda item: fixed

    def for_item(item: Mapping[str, Any]) -> nn.Module:
        view = str(item.get("view") or "")
        slot = views.index(view) if net.multiview is not None and view in views else 0
        tab = None
        if net.tabular is not None and "tabular" in item:
            tab = torch.as_tensor(item["tabular"], dtype=torch.float32).clone()
            missing = torch.as_tensor(item.get("tabular_missing", torch.zeros_like(tab))).bool()
            tab[missing] = float("nan")
        return bundle.scorer("score", view=slot, tabular=tab)

    return for_item


def truth_regions(
    index: TruthIndex | None,
    names: Sequence[str] | None,
    *,
    store: Any = None,
) -> tuple[list[Region], list[str]]:
    """The occlusion regions to test, and notes on the ones left out.

    A name is looked up in the phantom truth (when given), then among the store's imported
    annotation labels, and ``outside_sector`` is estimated from the clips when no truth has
    it. Without names: the truth's :data:`DEFAULT_TRUTH_REGIONS`, else ``outside_sector``.
    """
    from hidim.explain.regions import annotation_region

    notes: list[str] = []
    available: set[str] = set()
    if index is not None:
        for entry in index.truth.data["series"].values():
            available |= set(entry["regions"])
    annotated: set[str] = set()
    annotations = None
    if store is not None and store.has_annotations:
        annotations = store.annotations
        annotated = set(annotations["label_name"].dropna().astype(str))
    if names:
        wanted = list(names)
    elif index is not None:
        wanted = [n for n in DEFAULT_TRUTH_REGIONS if n in available]
    else:
        wanted = ["outside_sector"]
    regions: list[Region] = []
    for n in wanted:
        if n in available and index is not None:
            if index.n_matched == 0 and n not in LAYOUT_REGIONS:
                notes.append(
                    f"region {n!r} is specific to each series and no store series matched the "
                    "truth (de-identified store? pass the reid table); skipped"
                )
            else:
                regions.append(phantom_region(n, index))
        elif n in annotated and annotations is not None:
            regions.append(annotation_region(n, annotations, store.manifest))
        elif n == "outside_sector":
            regions.append(outside_sector_region())
        else:
            notes.append(f"region {n!r} is neither in the truth nor an annotation label; skipped")
    return regions, notes
