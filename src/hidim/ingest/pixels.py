"""Decode one dataset's pixel data to float32 ``[C, T, H, W]`` in physical/display units.

Per frame, in this order (pydicom 3 ``pydicom.pixels`` does the decoding):

1. decode with the transfer syntax's decoder (every syntax pydicom + pylibjpeg/pyjpegls
   plugins handle: native little/big endian, deflated, RLE, JPEG baseline/extended/
   lossless, JPEG-LS, JPEG 2000); YBR_FULL/YBR_FULL_422 are converted to RGB;
2. PALETTE COLOR → RGB through the palette LUT (pydicom's ``apply_color_lut``, also for
   segmented LUTs). The table is cast to float32 *before* scaling, and 16-bit tables are
   scaled to [0, 255] so that palette and true-colour ultrasound share one range;
3. monochrome: the modality transform — Modality LUT Sequence, or RescaleSlope/Intercept
   (top level, or per-frame/shared PixelValueTransformationSequence in Enhanced CT/MR) —
   so CT values are Hounsfield units;
4. MONOCHROME1 is inverted to MONOCHROME2 convention: ``x' = lo + hi - x`` where
   ``[lo, hi]`` is the stored-value range after the modality transform, so that higher
   always means brighter.

Channels go first: monochrome ``C = 1``, colour ``C = 3``. A multi-frame instance with one
frame still gives ``T = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, convert_color_space, get_decoder
from pydicom.pixels.utils import get_nr_frames

from hidim.errors import IngestError
from hidim.ingest.dsutil import (
    ensure_transfer_syntax,
    functional_group_item,
    get_float,
    get_int,
    uid_name,
)

__all__ = ["PixelInfo", "decode_pixels", "palette_table", "stored_range"]


@dataclass(slots=True)
class PixelInfo:
    """What :func:`decode_pixels` did, for provenance and the manifest.

    Attributes:
        photometric_in: PhotometricInterpretation as stored.
        channels: 1 or 3.
        transforms: ordered descriptions of the applied value transforms.
        rescale_slope: RescaleSlope applied to the first frame (``None`` if none).
        rescale_intercept: RescaleIntercept applied to the first frame.
        rescale_type: RescaleType (``"HU"`` is assumed for CT when absent).
        inverted: MONOCHROME1 inversion applied.
    """

    photometric_in: str
    channels: int = 1
    transforms: list[str] = field(default_factory=list)
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    rescale_type: str | None = None
    inverted: bool = False


def stored_range(ds: Dataset) -> tuple[float, float]:
    """Smallest and largest storable value from BitsStored and PixelRepresentation."""
    bits = get_int(ds, "BitsStored") or get_int(ds, "BitsAllocated") or 16
    if get_int(ds, "PixelRepresentation") == 1:
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


def palette_table(ds: Dataset) -> tuple[np.ndarray, int]:
    """The palette as a float32 ``[N, 3]`` table in [0, 255] and its first mapped value.

    Built by running pydicom's ``apply_color_lut`` on every input value the descriptor
    covers, so segmented LUTs are handled by pydicom. Values are cast to float32 before
    the 16-bit → 8-bit scaling (scaling uint16 in place overflows).
    """
    descriptor = ds.RedPaletteColorLookupTableDescriptor
    n_entries = int(descriptor[0]) or 65536
    first = int(descriptor[1])
    depth = int(descriptor[2])
    dtype = np.uint16 if first + n_entries > 256 else np.uint8
    ramp = np.arange(first, first + n_entries, dtype=np.int64).astype(dtype)
    table = np.asarray(apply_color_lut(ramp, ds))[..., :3].astype(np.float32)
    if depth == 16 and float(table.max(initial=0.0)) > 255.0:
        table *= np.float32(255.0 / 65535.0)
    return table, first


def _palette_index(frame: np.ndarray, first: int, n_entries: int) -> np.ndarray:
    """Table row of each stored value; values outside the table map to its first/last entry."""
    if first == 0 and frame.dtype.kind == "u":
        return frame  # np.take(mode="clip") clamps values past the last entry
    return np.clip(frame.astype(np.int64) - first, 0, n_entries - 1)


def _rescale(ds: Dataset, frame_index: int) -> tuple[float, float, str | None] | None:
    slope = get_float(ds, "RescaleSlope")
    intercept = get_float(ds, "RescaleIntercept")
    kind = ds.get("RescaleType")
    if slope is None or intercept is None:
        item = functional_group_item(ds, "PixelValueTransformationSequence", frame_index)
        slope = get_float(item, "RescaleSlope")
        intercept = get_float(item, "RescaleIntercept")
        kind = item.get("RescaleType") if item is not None else None
    if slope is None or intercept is None:
        return None
    return slope, intercept, str(kind).strip() if kind else None


def _monochrome(frame: np.ndarray, ds: Dataset, index: int, info: PixelInfo) -> np.ndarray:
    lo, hi = stored_range(ds)
    if ds.get("ModalityLUTSequence"):
        out = np.asarray(apply_modality_lut(frame, ds), dtype=np.float32)
        depth = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        lo, hi = 0.0, float(2**depth - 1)
        if index == 0:
            info.transforms.append("modality LUT")
    else:
        rescale = _rescale(ds, index)
        if rescale is not None and rescale[:2] != (1.0, 0.0):
            slope, intercept, kind = rescale
            out = (frame.astype(np.float64) * slope + intercept).astype(np.float32)
            lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
            if index == 0:
                info.rescale_slope, info.rescale_intercept = slope, intercept
                info.rescale_type = kind or ("HU" if ds.get("Modality") == "CT" else None)
                info.transforms.append(f"rescale slope={slope:g} intercept={intercept:g}")
        else:
            out = frame.astype(np.float32)
    if info.photometric_in == "MONOCHROME1":
        if frame.dtype.kind == "f":
            lo, hi = float(out.min(initial=0.0)), float(out.max(initial=0.0))
        out = np.float32(lo + hi) - out
        if index == 0:
            info.inverted = True
            info.transforms.append("MONOCHROME1 inverted")
    return out


def decode_pixels(ds: Dataset, *, source: str = "") -> tuple[np.ndarray, PixelInfo]:
    """Decode all frames of ``ds`` to float32 ``[C, T, H, W]``.

    Args:
        ds: a full dataset (pixel data loaded or deferred-readable from its file).
        source: file name used in error messages.

    Returns:
        ``(array, info)``; array float32 ``[C, T, H, W]`` at native resolution.

    Raises:
        IngestError: no decoder or missing plugin for the transfer syntax, or the pixel
            data is corrupt / shorter than declared.
    """
    where = f"{source}: " if source else ""
    ts = ensure_transfer_syntax(ds)
    label = f"{uid_name(ts)} ({ts})"
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise IngestError(
            f"{where}transfer syntax {label} has no pixel decoder in pydicom. "
            "Fix: transcode the file to an uncompressed or JPEG syntax (gdcmconv --raw, dcmconv)."
        ) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise IngestError(f"{where}cannot decode {label} here. Fix: install {missing}.")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    info = PixelInfo(photometric_in=photometric)
    n_frames = max(get_nr_frames(ds, warn=False), 1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    palette: tuple[np.ndarray, int] | None = None
    out: np.ndarray | None = None
    decoded = 0
    try:
        for index, (frame, meta) in enumerate(decoder.iter_array(ds)):
            pi = str(meta.get("photometric_interpretation", photometric))
            frame = np.asarray(frame)
            if pi == "PALETTE COLOR":
                if palette is None:
                    palette = palette_table(ds)
                    info.transforms.append("palette LUT to RGB [0, 255]")
                table, first = palette
                if out is None:
                    out = np.empty((3, n_frames, rows, cols), dtype=np.float32)
                idx = _palette_index(frame, first, table.shape[0])
                for c in range(3):  # gather straight into the output: no [H, W, 3] temporary
                    np.take(table[:, c], idx, out=out[c, index], mode="clip")
                decoded += 1
                continue
            if frame.ndim == 3:
                if pi.startswith("YBR_FULL"):
                    frame = convert_color_space(frame, pi, "RGB")
                if index == 0 and photometric.startswith("YBR"):
                    info.transforms.append("YBR to RGB")
                chw = np.moveaxis(frame, -1, 0)  # a view; the cast happens on assignment
            else:
                chw = _monochrome(frame, ds, index, info)[np.newaxis]
            if out is None:
                out = np.empty((chw.shape[0], n_frames, rows, cols), dtype=np.float32)
            out[:, index] = chw
            decoded += 1
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(
            f"{where}pixel data ({label}) could not be decoded at frame {decoded}: "
            f"{type(exc).__name__}: {exc}. Fix: check the file is complete (re-export it) "
            "or that its Rows/Columns/NumberOfFrames/BitsAllocated match the data."
        ) from exc
    if out is None or decoded != n_frames:
        raise IngestError(
            f"{where}decoded {decoded} of {n_frames} frame(s) declared by NumberOfFrames "
            f"({label}). Fix: the file is probably truncated; re-export it."
        )
    info.channels = out.shape[0]
    return out, info
