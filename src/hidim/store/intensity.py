"""Apply a series' recorded intensity normalisation (the manifest's ``intensity_norm``).

Curation computes the normalisation once per series (``hidim.curate.normalise``) and records
it as JSON; the stored array keeps the exact values (HU for CT, pixel values for US/MR) so
that nothing is lost and the store stays compact. Every reader applies the record::

    {"method": "zscore", "scale": 0.021, "offset": -1.3, "clip": null, "stats": {...}}

    normalised = clip(raw * scale + offset, *clip)        # clip only when not null

A reader without hidim can do the same with two lines of numpy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from hidim.errors import StoreError

__all__ = ["IDENTITY", "parse_intensity_norm", "apply_intensity_norm"]

IDENTITY: dict[str, Any] = {"method": "none", "scale": 1.0, "offset": 0.0, "clip": None}


def parse_intensity_norm(value: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The normalisation record as a dict (``None`` or empty → identity).

    Raises:
        StoreError: the record is not JSON or lacks ``scale``/``offset``.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        return dict(IDENTITY)
    record = json.loads(value) if isinstance(value, str) else dict(value)
    if not isinstance(record, dict) or "scale" not in record or "offset" not in record:
        raise StoreError(
            f"expected intensity_norm JSON with 'scale' and 'offset', got {value!r}; "
            "re-run `hidim curate` to rewrite the manifest"
        )
    return record


def apply_intensity_norm(
    array: np.ndarray, norm: str | Mapping[str, Any] | None, *, inplace: bool = False
) -> np.ndarray:
    """Apply ``raw * scale + offset`` (then ``clip`` if recorded) to a float32 array.

    Args:
        array: ``[C, T, H, W]`` raw values as stored (any numeric dtype).
        norm: the manifest's ``intensity_norm`` (JSON string or dict).
        inplace: modify ``array`` instead of allocating (only if it is float32).

    Returns:
        float32 array of the same shape.
    """
    record = parse_intensity_norm(norm)
    scale, offset = float(record["scale"]), float(record["offset"])
    if inplace and array.dtype == np.float32:
        out = array
        if scale != 1.0:
            np.multiply(out, np.float32(scale), out=out)
    else:  # one fused pass from the stored dtype (uint8/int16...) into float32
        out = np.empty(array.shape, dtype=np.float32)
        if scale != 1.0:
            np.multiply(array, np.float32(scale), out=out, casting="unsafe")
        else:
            out[...] = array
    if offset != 0.0:
        np.add(out, np.float32(offset), out=out)
    clip = record.get("clip")
    if clip is not None:
        np.clip(out, np.float32(clip[0]), np.float32(clip[1]), out=out)
    return out
