"""Ground-truth regions and cardiac phases for store clips, from a phantom's ``truth.json``.

The phantom records, per series, named regions (``lv_cavity``, ``myocardium``,
``shortcut_marker``, ``outside_sector``...) in native pixels and the cardiac phase of every
frame. A store clip differs from the native series: its identifiers may be pseudonyms
(after ``hidim deid``), its frames may be resized (aspect kept, padded) and resampled to
another frame rate, and a clip starts at ``clip_start``. :class:`TruthIndex` undoes all of
that:

* identity — the store's ``series_uid`` is looked up directly, else through the
  re-identification table (``kind,original,pseudonym``); regions whose geometry depends only
  on the acquisition layout and view (``sector``, ``outside_sector``, ``header``,
  ``shortcut_marker``) fall back to any entry of the same view and frame size;
* space — a native mask goes through the same :func:`~hidim.curate.normalise.resize_keep_aspect`
  as the pixels (recorded in the manifest's ``resize`` column);
* time — frame ``j`` of a clip is at ``(clip_start + j) / fps`` seconds from the series'
  first frame, where the phase is :func:`hidim.phantom.cycle.cardiac_phase`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hidim.errors import ExplainError
from hidim.explain.occlusion import Region
from hidim.explain.temporal import FramePhases, estimate_phases, phases_from_labels

__all__ = [
    "annotation_region",
    "ANATOMICAL_REGIONS",
    "LAYOUT_REGIONS",
    "TruthIndex",
    "phantom_region",
    "phantom_phases",
]

ANATOMICAL_REGIONS = frozenset(
    {"lv_cavity", "myocardium", "rv_cavity", "la_cavity", "ra_cavity", "sector"}
)
LAYOUT_REGIONS = frozenset({"sector", "outside_sector", "header", "shortcut_marker"})
Item = Mapping[str, Any]


class TruthIndex:
    """Maps store series to phantom truth entries (see the module docstring).

    Args:
        truth: Path of ``truth.json`` (or its folder), or a loaded
            :class:`hidim.phantom.truth.Truth`.
        manifest: The store's manifest (``series_key``, ``series_uid``, ``view``, ``rows``,
            ``cols``, ``fps``, optional ``resize``).
        reid_table: The ``hidim deid`` re-identification CSV, when the store is
            de-identified (UIDs are pseudonyms).
    """

    def __init__(
        self,
        truth: Any,
        manifest: pd.DataFrame,
        *,
        reid_table: str | os.PathLike[str] | None = None,
    ) -> None:
        from hidim.phantom.truth import Truth

        self.truth = truth if isinstance(truth, Truth) else Truth.load(truth)
        series = self.truth.data["series"]
        back: dict[str, str] = {}
        if reid_table is not None:
            from hidim.curate.idmap import load_id_map

            for kind in ("series_uid", "uid"):
                back.update({p: o for o, p in load_id_map(reid_table).get(kind, {}).items()})
        self.rows: dict[str, dict[str, Any]] = {}
        self.entries: dict[str, dict[str, Any]] = {}
        for row in manifest.to_dict(orient="records"):
            key = str(row["series_key"])
            self.rows[key] = row
            uid = str(row.get("series_uid") or "")
            original = uid if uid in series else back.get(uid)
            if original in series:
                self.entries[key] = series[original]
        self._templates: dict[tuple[str, int, int], dict[str, Any]] = {}
        for entry in series.values():
            self._templates.setdefault((str(entry["view"]), entry["rows"], entry["cols"]), entry)

    @property
    def n_matched(self) -> int:
        """Store series with their own truth entry."""
        return len(self.entries)

    def entry(self, series_key: str) -> dict[str, Any] | None:
        """The series' own truth entry, or ``None`` when it cannot be identified."""
        return self.entries.get(str(series_key))

    def _template(self, series_key: str, region: str) -> dict[str, Any] | None:
        row = self.rows.get(str(series_key))
        if row is None:
            return None
        view = str(row.get("view") or "")  # may be unknown after de-identification
        native = self._native_size(row)

        def fits(entry: Mapping[str, Any]) -> bool:
            return (
                (not view or str(entry["view"]) == view)
                and (native is None or (entry["rows"], entry["cols"]) == native)
                and region in entry["regions"]
            )

        for entry in self._templates.values():
            if fits(entry):
                return entry
        for entry in self.truth.data["series"].values():  # a marker may be rare: search all
            if fits(entry):
                return entry
        return None

    @staticmethod
    def _native_size(row: Mapping[str, Any]) -> tuple[int, int] | None:
        rec = _resize_record(row)
        if rec is not None:
            return int(rec["original"][0]), int(rec["original"][1])
        if row.get("rows") is not None and row.get("cols") is not None:
            return int(row["rows"]), int(row["cols"])
        return None

    def region_mask(self, series_key: str, name: str, shape: tuple[int, int]) -> np.ndarray | None:
        """Bool ``[H, W]`` mask of region ``name`` in the stored clip frame, or ``None``.

        Region-free series (e.g. no marker planted) get the *location* of layout regions
        such as ``shortcut_marker`` from another series of the same view, so a region is
        occluded in every clip; other regions need the series' own entry.
        """
        from hidim.phantom.truth import region_mask

        entry = self.entry(series_key)
        if entry is None or name not in entry["regions"]:
            entry = self._template(series_key, name) if name in LAYOUT_REGIONS else None
        if entry is None:
            return None
        native = region_mask(entry, name)
        return _to_stored(native, self.rows.get(str(series_key), {}), shape)

    def frame_phases(self, series_key: str, clip_start: int, n_frames: int) -> FramePhases | None:
        """True phases of ``n_frames`` stored frames from ``clip_start``, or ``None``."""
        from hidim.phantom.cycle import cardiac_phase

        entry = self.entry(series_key)
        row = self.rows.get(str(series_key))
        if entry is None or row is None:
            return None
        fps = float(row.get("fps") or entry["fps"])
        times = (clip_start + np.arange(n_frames)) / fps
        labels = cardiac_phase(
            times, entry["heart_rate_bpm"], entry["phase_offset"], entry["systole_s"]
        )
        return phases_from_labels(labels, source="truth")


def _resize_record(row: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = row.get("resize")
    if raw is None or (isinstance(raw, float) and np.isnan(raw)) or raw == "":
        return None
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def _to_stored(native: np.ndarray, row: Mapping[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """A native-pixel mask mapped like the pixels were (resize + pad), at ``shape``."""
    from hidim.curate.normalise import resize_keep_aspect

    rec = _resize_record(row)
    m = native.astype(np.float32)[None, None]
    if rec is not None:
        m, _ = resize_keep_aspect(m, tuple(rec["size"]), pad_value=0.0)
    if m.shape[-2:] != tuple(shape):
        m, _ = resize_keep_aspect(m, shape, pad_value=0.0)
    return m[0, 0] >= 0.5


def phantom_region(name: str, index: TruthIndex, *, anatomical: bool | None = None) -> Region:
    """An occlusion :class:`~hidim.explain.occlusion.Region` for a phantom region name.

    ``anatomical`` defaults to whether ``name`` is a cardiac structure or the sector.
    """
    known: set[str] = set()
    for entry in index.truth.data["series"].values():
        known |= set(entry["regions"])
    if name not in known:
        raise ExplainError(f"the phantom has no region {name!r}; available: {sorted(known)}")

    def fn(item: Item) -> np.ndarray | None:
        shape = tuple(item["clip"].shape[-2:])
        return index.region_mask(str(item["series_key"]), name, shape)  # type: ignore[arg-type]

    return Region(name, fn, name in ANATOMICAL_REGIONS if anatomical is None else anatomical)


def phantom_phases(
    index: TruthIndex | None, *, estimate_missing: bool = True
) -> Callable[[Item], FramePhases | None]:
    """Item → its frame phases: truth when the series is identified, else estimated from
    the clip (:func:`~hidim.explain.temporal.estimate_phases`) when ``estimate_missing``."""

    def fn(item: Item) -> FramePhases | None:
        clip = item["clip"]
        if index is not None:
            start = int(item.get("clip_start", 0) or 0)
            ph = index.frame_phases(str(item.get("series_key")), start, int(clip.shape[1]))
            if ph is not None:
                return ph
        return estimate_phases(clip) if estimate_missing else None

    return fn


def truth_path(path: str | os.PathLike[str]) -> Path:
    """``truth.json`` itself from a file or phantom folder path (error if absent)."""
    p = Path(path)
    p = p / "truth.json" if p.is_dir() else p
    if not p.is_file():
        raise ExplainError(
            f"no phantom truth at {str(p)!r}; pass the truth.json `hidim phantom` wrote"
        )
    return p


def _rasterise(row: Mapping[str, Any], shape: tuple[int, int]) -> np.ndarray | None:
    """Bool mask of one annotation (box, polygon or MD.ai mask polygons) at ``shape``."""
    from skimage.draw import polygon as draw_polygon

    mask = np.zeros(shape, bool)
    geometry = str(row.get("geometry") or "")
    data = json.loads(row["data"]) if isinstance(row.get("data"), str) else None
    polys: list[np.ndarray] = []
    if geometry == "polygon" and data and data.get("vertices"):
        polys = [np.asarray(data["vertices"], float).reshape(-1, 2)]
    elif geometry == "mask" and data and data.get("foreground"):
        polys = [np.asarray(p, float).reshape(-1, 2) for p in data["foreground"]]
    elif geometry == "box" or (geometry not in ("global", "point") and row.get("width")):
        x, y, w, h = (float(row[k]) for k in ("x", "y", "width", "height"))
        r0, c0 = max(0, int(round(y))), max(0, int(round(x)))
        mask[r0 : int(round(y + h)), c0 : int(round(x + w))] = True  # pixels x..x+w-1
    for p in polys:
        rr, cc = draw_polygon(p[:, 1], p[:, 0], shape)
        mask[rr, cc] = True
    return mask if mask.any() else None


def annotation_region(
    name: str,
    annotations: pd.DataFrame,
    manifest: pd.DataFrame,
    *,
    anatomical: bool | None = True,
) -> Region:
    """Occlusion region from imported annotations (``annotations.parquet``) labelled ``name``.

    Every annotation of that label on a series (any frame) is rasterised in the original
    pixel grid, mapped like the pixels (resize + pad) and united, so the region is occluded
    in every frame. Series without such an annotation are scored unoccluded.
    """
    rows = annotations[annotations["label_name"] == name]
    if rows.empty:
        labels = sorted(annotations["label_name"].dropna().unique())
        raise ExplainError(f"no annotation labelled {name!r}; labels present: {labels}")
    info = {str(r["series_key"]): r for r in manifest.to_dict(orient="records")}
    masks: dict[str, np.ndarray] = {}
    for key, part in rows.groupby("series_key"):
        row = info.get(str(key))
        if row is None:
            continue
        rec = _resize_record(row)
        native = (
            (int(rec["original"][0]), int(rec["original"][1]))
            if rec is not None
            else (int(row["rows"]), int(row["cols"]))
        )
        raw = [_rasterise(a, native) for a in part.to_dict(orient="records")]
        drawn = [d for d in raw if d is not None]
        if drawn:
            masks[str(key)] = np.logical_or.reduce(drawn)

    def fn(item: Item) -> np.ndarray | None:
        key = str(item.get("series_key"))
        if key not in masks:
            return None
        return _to_stored(masks[key], info[key], tuple(item["clip"].shape[-2:]))  # type: ignore[arg-type]

    return Region(name, fn, anatomical)
