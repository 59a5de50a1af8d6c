"""Ground truth: per-series entries for ``truth.json`` and the tools that read them back.

A series entry holds what an explanation, occlusion or temporal-importance test needs to be
checked against: frame rate, the phase of every frame, end-diastolic/end-systolic frames, LV
area per frame, the sector geometry, and **named regions** as geometric primitives in native
frame pixels (``lv_cavity``, ``myocardium``, ``rv_cavity``, ``la_cavity``..., ``sector``,
``outside_sector``, ``text``, ``header``, and ``shortcut_marker`` where planted).
:func:`region_mask` rasterises a named region at any output shape (e.g. after a store
resized the clips); :class:`Truth` looks entries up by SeriesInstanceUID or by
PatientID + view, the identifiers as generated (before de-identification).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hidim.errors import PhantomError
from hidim.phantom.anatomy import chamber_motion
from hidim.phantom.cycle import SYSTOLE, cardiac_phase, ed_es_frames
from hidim.phantom.geometry import Layout, primitive_mask
from hidim.phantom.render import SYSTOLE_S, SeriesPlan, marker_box
from hidim.phantom.text import BurnedText

__all__ = [
    "TRUTH_FORMAT",
    "series_truth",
    "region_mask",
    "region_names",
    "ef_from_area_ratio",
    "Truth",
    "load_truth",
]

TRUTH_FORMAT = "hidim.phantom.truth/1"


def ef_from_area_ratio(area_es_over_ed: float | np.ndarray) -> float | np.ndarray:
    """Ejection fraction (percent) from the LV area ratio ES/ED: ``100 (1 - r^(3/2))``.

    This is the phantom's exact relation (area-length volume of a similar ellipse).
    """
    r = np.asarray(area_es_over_ed, dtype=float)
    out = 100.0 * (1.0 - np.clip(r, 0.0, None) ** 1.5)
    return float(out) if out.ndim == 0 else out


def _r(v: float) -> float:
    return round(float(v), 4)


def _ellipse_json(p: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_r(v) if isinstance(v, float) else v) for k, v in p.items()}


def series_truth(
    plan: SeriesPlan,
    layout: Layout,
    *,
    ef_percent: float,
    burned: list[BurnedText],
    channels: int,
) -> dict[str, Any]:
    """The ``truth.json`` entry of one rendered series (identifiers are added by the caller).

    Args:
        plan: The series plan that was rendered.
        layout: Frame layout.
        ef_percent: True LV ejection fraction.
        burned: Burned-in strings and their boxes.
        channels: 1 (grayscale) or 3 (RGB).
    """
    t = plan.n_frames
    times = np.arange(t) / plan.fps
    phase = cardiac_phase(times, plan.heart_rate_bpm, plan.phase_offset, SYSTOLE_S)
    ed, es = ed_es_frames(t, plan.fps, plan.heart_rate_bpm, plan.phase_offset, plan.systolic_frac)
    lv = plan.lv
    area = math.pi * lv.a * lv.b * layout.radius**2
    regions: dict[str, Any] = {
        "sector": layout.sector_primitive(),
        "outside_sector": {"kind": "complement", "of": layout.sector_primitive()},
        "header": {"kind": "box", "box": [0, 0, layout.header_rows, layout.cols]},
    }
    # End-diastole (largest cavity) and end-systole of every chamber, whatever frames exist.
    ref = np.array([0.0, plan.systolic_frac])
    for m in plan.motions:
        extremes = chamber_motion(
            m.chamber,
            ref,
            ef_percent=ef_percent,
            systolic_frac=plan.systolic_frac,
            shift=plan.shift,
            scale=plan.scale,
        )
        largest = int(np.argmax(extremes.a))
        smallest = 1 - largest
        regions[f"{m.chamber.name}_cavity"] = _ellipse_json(extremes.ellipse_px(layout, largest))
        if m.chamber.name == "lv":
            regions["myocardium"] = {
                "kind": "ring",
                "outer": _ellipse_json(extremes.ellipse_px(layout, largest, outer=True)),
                "inner": _ellipse_json(extremes.ellipse_px(layout, smallest)),
            }
    if plan.marker:
        regions["shortcut_marker"] = {"kind": "box", "box": list(marker_box(layout, plan.view))}
    if burned:
        regions["text"] = {"kind": "boxes", "boxes": [list(b.box) for b in burned]}
    px = layout.radius
    return {
        "view": plan.view,
        "rows": layout.rows,
        "cols": layout.cols,
        "channels": channels,
        "fps": plan.fps,
        "frame_time_ms": _r(1000.0 / plan.fps),
        "n_frames": t,
        "heart_rate_bpm": plan.heart_rate_bpm,
        "phase_offset": plan.phase_offset,
        "systole_s": SYSTOLE_S,
        "systolic_fraction": _r(plan.systolic_frac),
        "ef_true": ef_percent,
        "phase": [str(p) for p in phase],
        "ed_frames": ed,
        "es_frames": es,
        "lv_area_px": [_r(a) for a in area],
        "lv_area_ratio_es_ed": _r((1.0 - ef_percent / 100.0) ** (2.0 / 3.0)),
        "lv_frames": {
            "centre_row": [_r(layout.apex_row + y * px) for y in lv.cy],
            "centre_col": [_r(layout.apex_col + x * px) for x in lv.cx],
            "semi_long": [_r(a * px) for a in lv.a],
            "semi_short": [_r(b * px) for b in lv.b],
            "wall": [_r(w * px) for w in lv.wall],
            "angle_deg": lv.chamber.angle_deg,
        },
        "gain": plan.gain,
        "noise_sd": plan.noise_sd,
        "tint": list(plan.tint),
        "shortcut_marker": plan.marker,
        "sector": layout.sector_primitive(),
        "us_region": list(layout.region_box()),
        "cm_per_px": _r(layout.cm_per_px),
        "regions": regions,
        "burned_in_text": [b.to_json() for b in burned],
    }


def region_names(entry: Mapping[str, Any]) -> list[str]:
    """Names of the regions defined for a series entry."""
    return sorted(entry["regions"])


def region_mask(
    entry: Mapping[str, Any],
    name: str,
    shape: tuple[int, int] | None = None,
    *,
    frame: int | None = None,
) -> np.ndarray:
    """Boolean mask of a named region of a series.

    Args:
        entry: A ``truth.json`` series entry.
        name: Region name (see :func:`region_names`), e.g. ``lv_cavity``, ``myocardium``,
            ``shortcut_marker``, ``outside_sector``, ``text``.
        shape: Output ``(rows, cols)``; defaults to the native frame. Coordinates scale
            from the native frame, so masks follow a resized clip.
        frame: For ``lv_cavity`` and ``myocardium``: the exact mask at this native frame.
            Without it, the union over the cycle (the region to occlude in every frame).

    Returns:
        bool ``[rows, cols]``.
    """
    regions = entry["regions"]
    if name not in regions:
        raise PhantomError(
            f"series has no region {name!r}; available: {sorted(regions)} "
            "(shortcut_marker exists only where the shortcut was planted)"
        )
    native = (int(entry["rows"]), int(entry["cols"]))
    out_shape = native if shape is None else (int(shape[0]), int(shape[1]))
    prim = regions[name]
    if frame is not None and name in ("lv_cavity", "myocardium"):
        n = int(entry["n_frames"])
        if not 0 <= frame < n:
            raise PhantomError(f"frame must be in 0..{n - 1}, got {frame}")
        f = entry["lv_frames"]
        inner = {
            "kind": "ellipse",
            "centre_row": f["centre_row"][frame],
            "centre_col": f["centre_col"][frame],
            "semi_long": f["semi_long"][frame],
            "semi_short": f["semi_short"][frame],
            "angle_deg": f["angle_deg"],
        }
        if name == "lv_cavity":
            prim = inner
        else:
            w = f["wall"][frame]
            outer = dict(
                inner, semi_long=inner["semi_long"] + w, semi_short=inner["semi_short"] + w
            )
            prim = {"kind": "ring", "outer": outer, "inner": inner}
    return primitive_mask(prim, out_shape, native)


class Truth:
    """Read access to a phantom's ``truth.json``.

    Args:
        data: The parsed JSON.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        if data.get("format") != TRUTH_FORMAT:
            raise PhantomError(
                f"expected a phantom truth file of format {TRUTH_FORMAT!r}, got "
                f"{data.get('format')!r}; pass the truth.json written by `hidim phantom`"
            )
        self.data = data

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Truth:
        """Load ``truth.json`` (or the phantom folder that holds it)."""
        p = Path(path)
        if p.is_dir():
            p = p / "truth.json"
        if not p.is_file():
            raise PhantomError(
                f"no truth.json at {str(p)!r}; pass the folder `hidim phantom` wrote"
            )
        return cls(json.loads(p.read_text(encoding="utf-8")))

    @property
    def parameters(self) -> dict[str, Any]:
        """Every generating parameter (config, model coefficients, planted effects)."""
        return dict(self.data["parameters"])

    def patient(self, patient_id: str) -> dict[str, Any]:
        """Per-patient truth (``true_ef``, ``true_ef_lt_40``, ``true_event``, ``true_risk``...)."""
        try:
            return dict(self.data["patients"][patient_id])
        except KeyError:
            raise PhantomError(f"no patient {patient_id!r} in this phantom") from None

    def series(self, series_uid: str) -> dict[str, Any]:
        """Series entry by its original SeriesInstanceUID."""
        try:
            return dict(self.data["series"][series_uid])
        except KeyError:
            raise PhantomError(f"no series {series_uid!r} in this phantom") from None

    def series_for(self, patient_id: str, view: str) -> dict[str, Any]:
        """Series entry by original PatientID and view (``A4C``/``PLAX``)."""
        key = f"{patient_id}/{view}"
        uid = self.data["series_by_patient_view"].get(key)
        if uid is None:
            raise PhantomError(f"no series for patient {patient_id!r} and view {view!r}")
        return self.series(uid)

    def systolic_frames(self, series_uid: str) -> np.ndarray:
        """bool ``[T]``: frames in systole."""
        return np.asarray(self.series(series_uid)["phase"]) == SYSTOLE


def load_truth(path: str | os.PathLike[str]) -> Truth:
    """Load a phantom's ground truth; see :class:`Truth`."""
    return Truth.load(path)
