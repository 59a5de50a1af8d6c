"""Write cleaned pixels back losslessly — never silently lossy.

The output transfer syntax, in order of preference:

1. the input's, when it is lossless and hidim can encode it (uncompressed little endian,
   deflated, RLE Lossless, JPEG-LS Lossless, JPEG 2000 Lossless for single-sample images);
2. otherwise RLE Lossless (inputs that were lossy — JPEG baseline, JPEG 2000 lossy — or whose
   lossless codec has no encoder here, e.g. JPEG Lossless process 14);
3. Explicit VR Little Endian when RLE cannot hold the image.

A lossy input stays marked ``LossyImageCompression = 01`` (its pixels were already lossy);
nothing hidim writes adds loss. YBR inputs are decoded to RGB, so the photometric
interpretation becomes RGB (planar configuration 0).
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from hidim.errors import DeidentificationError

__all__ = ["UNCOMPRESSED", "output_syntax", "write_pixels"]

UNCOMPRESSED = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}
)
_REENCODABLE = frozenset({RLELossless, JPEGLSLossless, JPEG2000Lossless})


def output_syntax(ts_in: UID | str | None, *, samples_per_pixel: int = 1) -> UID:
    """The first choice of output transfer syntax for cleaned pixels of an input in ``ts_in``."""
    ts = UID(str(ts_in)) if ts_in else ExplicitVRLittleEndian
    if ts in UNCOMPRESSED:
        return ts
    if ts == ExplicitVRBigEndian:
        return ExplicitVRLittleEndian
    if ts in _REENCODABLE and not (ts == JPEG2000Lossless and samples_per_pixel > 1):
        return ts
    return RLELossless


def _set_image_attributes(ds: Dataset, frames: np.ndarray, photometric: str) -> None:
    t, _h, _w, c = frames.shape
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = c
    if c > 1:
        ds.PlanarConfiguration = 0
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    if "NumberOfFrames" in ds or t > 1:
        ds.NumberOfFrames = t


def _native(frames: np.ndarray, ds: Dataset) -> np.ndarray:
    t = frames.shape[0]
    arr = frames[..., 0] if frames.shape[-1] == 1 else frames
    if t == 1 and int(ds.get("NumberOfFrames", 1) or 1) == 1:
        arr = arr[0]
    dtype = np.dtype(f"{'i' if int(ds.PixelRepresentation) else 'u'}{int(ds.BitsAllocated) // 8}")
    return np.ascontiguousarray(arr.astype(dtype, copy=False))


def write_pixels(ds: Dataset, frames: np.ndarray, *, photometric: str, ts_in: UID | str) -> UID:
    """Replace ``ds``'s pixel data by ``frames`` (``[T, H, W, C]``), encoded losslessly.

    Args:
        ds: The data set to update (its file meta transfer syntax is set too).
        frames: The cleaned pixels in the decoded layout of :func:`~hidim.deidentify.pixels.
            decode_frames`.
        photometric: The photometric interpretation of ``frames``.
        ts_in: The input's transfer syntax.

    Returns:
        The transfer syntax written.
    """
    _set_image_attributes(ds, frames, photometric)
    arr = _native(frames, ds)
    first = output_syntax(ts_in, samples_per_pixel=frames.shape[-1])
    candidates = [first] + [ts for ts in (RLELossless, ExplicitVRLittleEndian) if ts != first]
    for ts in candidates:
        try:
            if ts in UNCOMPRESSED:
                ds.PixelData = arr.tobytes()
                ds["PixelData"].VR = "OW" if int(ds.BitsAllocated) > 8 else "OB"
                ds["PixelData"].is_undefined_length = False
                ds.file_meta.TransferSyntaxUID = ts
            else:
                plugin = "pylibjpeg" if ts == RLELossless else ""
                try:
                    ds.compress(ts, arr, encoding_plugin=plugin, generate_instance_uid=False)
                except (RuntimeError, ValueError):
                    if not plugin:
                        raise
                    ds.compress(ts, arr, generate_instance_uid=False)
            return UID(ts)
        except Exception:  # noqa: BLE001 - try the next lossless syntax
            continue
    raise DeidentificationError(
        "expected the cleaned pixels to encode losslessly, got a failure in RLE and "
        "Explicit VR Little Endian; report this file (its input id) as a bug"
    )
