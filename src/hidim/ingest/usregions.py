"""SequenceOfUltrasoundRegions, summarised for the manifest.

Each region of an ultrasound image (the 2-D sector, a Doppler strip, an ECG trace...) has
pixel bounds, a spatial format, a data type and physical units per pixel. The summary keeps
those as plain JSON-able values, with the coded values of PS3.3 C.8.5.5.1 spelled out.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from hidim.ingest.dsutil import get_float, get_int

__all__ = ["us_regions"]

_SPATIAL_FORMAT = {0: "none", 1: "2D", 2: "M-mode", 3: "spectral", 4: "waveform", 5: "graphics"}
_DATA_TYPE = {
    0: "none",
    1: "tissue",
    2: "color flow",
    3: "PW spectral doppler",
    4: "CW spectral doppler",
    5: "doppler mean trace",
    6: "doppler mode trace",
    7: "doppler max trace",
    8: "volume trace",
    10: "ECG trace",
    11: "pulse trace",
    12: "phonocardiogram trace",
    13: "gray bar",
    14: "color bar",
    15: "integrated backscatter",
    16: "area trace",
    17: "d(area)/dt",
    18: "other physiological input",
}
_UNITS = {
    0: "none",
    1: "percent",
    2: "dB",
    3: "cm",
    4: "s",
    5: "Hz",
    6: "dB/s",
    7: "cm/s",
    8: "cm2",
    9: "cm2/s",
    10: "cm3",
    11: "cm3/s",
    12: "deg",
}


def us_regions(ds: Dataset) -> list[dict[str, Any]]:
    """Summary of SequenceOfUltrasoundRegions: bounds (pixels), format, data type, deltas."""
    regions = []
    for item in ds.get("SequenceOfUltrasoundRegions") or ():
        fmt = get_int(item, "RegionSpatialFormat")
        kind = get_int(item, "RegionDataType")
        ux = get_int(item, "PhysicalUnitsXDirection")
        uy = get_int(item, "PhysicalUnitsYDirection")
        regions.append(
            {
                "x0": get_int(item, "RegionLocationMinX0"),
                "y0": get_int(item, "RegionLocationMinY0"),
                "x1": get_int(item, "RegionLocationMaxX1"),
                "y1": get_int(item, "RegionLocationMaxY1"),
                "spatial_format": _SPATIAL_FORMAT.get(fmt, str(fmt)) if fmt is not None else None,
                "data_type": _DATA_TYPE.get(kind, str(kind)) if kind is not None else None,
                "units_x": _UNITS.get(ux, str(ux)) if ux is not None else None,
                "units_y": _UNITS.get(uy, str(uy)) if uy is not None else None,
                "delta_x": get_float(item, "PhysicalDeltaX"),
                "delta_y": get_float(item, "PhysicalDeltaY"),
            }
        )
    return regions
