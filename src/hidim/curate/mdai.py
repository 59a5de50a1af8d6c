"""Import an MD.ai annotation export (JSON) into ``STORE/annotations.parquet``.

The export (MD.ai "Annotations" JSON, as read by ``mdai.common_utils.json_to_dataframe``) has
``labelGroups[].labels[]`` (``id``, ``name``, ``scope``, ``annotationMode``...) and
``datasets[].annotations[]``, each with ``id``, ``labelId``, ``StudyInstanceUID``,
``SeriesInstanceUID`` and ``SOPInstanceUID`` (the last two absent for study/series-scoped
labels), ``frameNumber`` (multi-frame instances) and ``data``:

* ``{"x", "y", "width", "height"}`` — a box (pixels);
* ``{"vertices": [[x, y], ...]}`` — polygon, free-form or line;
* ``{"foreground": [[[x, y], ...], ...]}`` — a mask drawn as polygons;
* ``{"x", "y"}`` — a point; ``null`` — a global label (the image/series/study as a whole).

Each annotation is keyed to the store: UIDs are first mapped through the ``hidim deid``
re-identification table when the store was de-identified, then matched to a manifest unit
(by SOPInstanceUID for cine loops stored per instance, else by SeriesInstanceUID), and the
frame is resolved to the unit's T axis (position of the SOPInstanceUID in a slice stack, or
``frameNumber`` in a multi-frame instance; ``frame_stored`` follows any fps resampling).
Coordinates stay in the original pixel grid; ``manifest.resize`` maps them when the store
was resized. Annotations that match nothing in the store are counted and listed by MD.ai
annotation id, never written with their (hospital) UIDs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hidim.curate.idmap import IdMap, load_id_map
from hidim.errors import LabelError
from hidim.provenance import file_sha256, write_run_json
from hidim.store.store import Store
from hidim.store.writer import write_annotations

__all__ = ["AnnotationImportResult", "read_mdai_export", "annotations_frame", "import_mdai"]


@dataclass
class AnnotationImportResult:
    """Outcome of :func:`import_mdai`: counts, and MD.ai ids of unmatched annotations."""

    path: Path
    n_annotations: int = 0
    n_written: int = 0
    unmatched_ids: list[str] = field(default_factory=list)
    by_geometry: dict[str, int] = field(default_factory=dict)


def read_mdai_export(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and structurally check an MD.ai JSON export.

    Raises:
        LabelError: not JSON, or without ``datasets[].annotations[]`` (message names the file).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LabelError(
            f"{p}: expected an MD.ai JSON export, could not read it as JSON ({exc})"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), list):
        raise LabelError(
            f"{p}: expected an MD.ai export with a 'datasets' list (each with 'annotations'), "
            f"got top-level keys {sorted(data) if isinstance(data, dict) else type(data).__name__}; "
            "export annotations as JSON from the MD.ai project"
        )
    for i, ds in enumerate(data["datasets"]):
        if not isinstance(ds, dict) or not isinstance(ds.get("annotations", []), list):
            raise LabelError(f"{p}: datasets[{i}] has no 'annotations' list")
    return data


def _labels(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for group in data.get("labelGroups", []) or []:
        for label in group.get("labels", []) or []:
            if "id" in label:
                out[str(label["id"])] = {**label, "_group": group.get("name")}
    return out


def _geometry(data: Any) -> tuple[str, tuple[float, float, float, float] | None]:
    """Geometry type and bounding box ``(x, y, width, height)`` of an annotation's data."""
    if not data:
        return "global", None
    if all(k in data for k in ("x", "y", "width", "height")):
        return "box", (
            float(data["x"]),
            float(data["y"]),
            float(data["width"]),
            float(data["height"]),
        )
    points: list[Any] = []
    kind = ""
    if data.get("vertices"):
        kind, points = "polygon", list(data["vertices"])
    elif data.get("foreground"):
        kind, points = "mask", [pt for poly in data["foreground"] for pt in poly]
    elif "x" in data and "y" in data:
        return "point", (float(data["x"]), float(data["y"]), 0.0, 0.0)
    if not points:
        return "other", None
    xy = np.asarray(points, dtype=float).reshape(-1, 2)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return kind, (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))


def annotations_frame(data: dict[str, Any]) -> pd.DataFrame:
    """One row per annotation with its UIDs (as exported), label and geometry."""
    labels = _labels(data)
    rows: list[dict[str, Any]] = []
    for ds in data["datasets"]:
        for ann in ds.get("annotations", []) or []:
            label = labels.get(str(ann.get("labelId")), {})
            geometry, box = _geometry(ann.get("data"))
            frame = ann.get("frameNumber")
            rows.append(
                {
                    "annotation_id": str(ann.get("id", "")),
                    "source": "mdai",
                    "dataset": ds.get("name") or ds.get("id"),
                    "study_uid": ann.get("StudyInstanceUID"),
                    "series_uid": ann.get("SeriesInstanceUID"),
                    "sop_uid": ann.get("SOPInstanceUID"),
                    "frame_number": int(frame) if frame is not None else None,
                    "label_id": str(ann.get("labelId")) if ann.get("labelId") is not None else None,
                    "label_name": label.get("name"),
                    "label_group": label.get("_group"),
                    "scope": label.get("scope"),
                    "annotation_mode": label.get("annotationMode"),
                    "geometry": geometry,
                    "x": box[0] if box else None,
                    "y": box[1] if box else None,
                    "width": box[2] if box else None,
                    "height": box[3] if box else None,
                    "data": json.dumps(ann.get("data")) if ann.get("data") is not None else None,
                    "annotator": ann.get("createdById"),
                    "created_utc": ann.get("createdAt"),
                }
            )
    return pd.DataFrame(rows)


def _map_uid(value: Any, table: dict[str, str] | None) -> Any:
    if value is None or table is None:
        return value
    return table.get(str(value), "\x00unmatched")


def _resolve(ann: pd.Series, units: pd.DataFrame) -> list[tuple[int, int | None]]:
    """Manifest rows (and frame along T) an annotation refers to."""
    sop, series, study = ann["sop_uid"], ann["series_uid"], ann["study_uid"]
    frame_number = ann["frame_number"]
    if sop is not None:
        hits = units.index[units["key_uid"] == sop]
        if len(hits):  # a multi-frame instance stored as its own unit
            return [(int(hits[0]), int(frame_number) if frame_number is not None else 0)]
        for i in units.index[units["series_uid"] == series]:
            sops = json.loads(units.at[i, "sop_uids"] or "[]")
            if sop in sops:
                offset = int(frame_number) if frame_number is not None and len(sops) == 1 else 0
                return [(int(i), sops.index(sop) + offset)]
        return []
    if series is not None:
        return [(int(i), None) for i in units.index[units["series_uid"] == series]]
    if study is not None:
        return [(int(i), None) for i in units.index[units["study_uid"] == study][:1]]
    return []


def import_mdai(
    store_dir: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    id_map: str | os.PathLike[str] | IdMap | None = None,
    merge: bool = False,
) -> AnnotationImportResult:
    """Import an MD.ai export into ``annotations.parquet`` (see the module docstring).

    Args:
        store_dir: a curated store.
        path: the MD.ai JSON export.
        id_map: the ``hidim deid`` re-identification table when the store was de-identified
            and the export carries the original UIDs.
        merge: keep existing annotations (rows with the same ``annotation_id`` replaced).
    """
    store = Store(store_dir)
    source = Path(path)
    table = id_map if isinstance(id_map, dict) or id_map is None else load_id_map(id_map)
    anns = annotations_frame(read_mdai_export(source))
    result = AnnotationImportResult(path=source, n_annotations=len(anns))
    m = store.manifest.reset_index(drop=True)
    if "sop_uids" not in m.columns:
        m["sop_uids"] = None
    if len(anns) and table is not None:
        for col, kind in (
            ("study_uid", "study_uid"),
            ("series_uid", "series_uid"),
            ("sop_uid", "sop_uid"),
        ):
            anns[col] = anns[col].map(
                lambda v, k=kind: _map_uid(v, table.get(k) or table.get("uid"))
            )
    rows: list[dict[str, Any]] = []
    for _, ann in anns.iterrows():
        hits = _resolve(ann, m)
        if not hits:
            result.unmatched_ids.append(ann["annotation_id"])
            continue
        for i, frame in hits:
            unit = m.iloc[i]
            fps_in, fps_out = unit.get("fps_original"), unit.get("fps")
            stored = frame
            if frame is not None and fps_in and fps_out and pd.notna(fps_in) and pd.notna(fps_out):
                stored = int(
                    np.clip(
                        round((frame + 0.5) * fps_out / fps_in - 0.5), 0, int(unit["n_frames"]) - 1
                    )
                )
            row = ann.drop(labels=["frame_number"]).to_dict()
            is_study_level = ann["series_uid"] is None and ann["sop_uid"] is None
            row.update(
                series_key=None if is_study_level else unit["series_key"],
                patient_key=unit["patient_key"],
                study_uid=unit["study_uid"],
                series_uid=None if is_study_level else unit["series_uid"],
                frame=frame,
                frame_stored=stored,
            )
            rows.append(row)
    out = pd.DataFrame(rows)
    if merge and store.has_annotations and len(out):
        old = store.annotations
        out = pd.concat(
            [old[~old["annotation_id"].isin(out["annotation_id"])], out], ignore_index=True
        )
    write_annotations(store.path, out if len(out) else [])
    result.n_written = len(rows)
    result.by_geometry = out["geometry"].value_counts().to_dict() if len(out) else {}
    write_run_json(
        store.path / "provenance" / "mdai_import",
        command="labels import (MD.ai)",
        config={"file": source.name, "id_map": id_map is not None, "merge": merge},
        input_hashes={source.name: file_sha256(source)},
        extra={
            "annotations": result.n_annotations,
            "written": result.n_written,
            "unmatched": len(result.unmatched_ids),
        },
    )
    return result
