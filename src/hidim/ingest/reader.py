"""Read a series (or one file) to float32 ``[C, T, H, W]`` plus its :class:`ScanMetadata`.

Single-frame instances are stacked along T in the order :func:`hidim.ingest.scan` chose
(slice position, or time for a cine); a multi-frame instance gives its frames in stored
order. Errors are :class:`~hidim.errors.IngestError` (or
:class:`~hidim.errors.UnsupportedSOPClassError`) naming the file and the fix.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from hidim.errors import IngestError, UnsupportedSOPClassError
from hidim.ingest.dsutil import get_float
from hidim.ingest.fileio import FileProblem, check_pixel_data, open_dataset
from hidim.ingest.metadata import ScanMetadata, build_metadata
from hidim.ingest.mrseq import diffusion_b_values
from hidim.ingest.pixels import PixelInfo, decode_pixels
from hidim.ingest.scan import instance_header
from hidim.ingest.series import SeriesInfo, group_series
from hidim.ingest.sopclass import skip_reason

__all__ = ["read_series", "read_file"]


def _open_image(path: Path) -> Dataset:
    # pydicom's warnings quote element values (possibly PHI); open_dataset records them.
    try:
        ds, _notes = open_dataset(path, header_only=False)
        reason = skip_reason(ds)
        if reason is not None:
            raise UnsupportedSOPClassError(
                f"{path}: {reason}. Fix: pass image instances only (hidim.ingest.scan skips "
                "these and lists them in its ledger)."
            )
        check_pixel_data(ds, path)
    except FileProblem as problem:
        raise IngestError(
            f"{path}: {problem.reason}. Fix: re-export or remove this file."
        ) from None
    return ds


def _decode_quietly(ds: Dataset, path: Path) -> tuple[np.ndarray, PixelInfo]:
    """Decode with pydicom's warnings silenced: they may quote PHI and are not actionable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return decode_pixels(ds, source=str(path))


def _check_consistent(series: SeriesInfo) -> None:
    if not series.files:
        raise IngestError(
            f"series {series.series_uid}: no files. Fix: build SeriesInfo with hidim.ingest.scan."
        )
    if not series.consistent:
        raise IngestError(
            f"series {series.series_uid} ({series.n_instances} files from {series.files[0].parent}) "
            "mixes images of different Rows/Columns/SamplesPerPixel, so its slices cannot be "
            "stacked. Fix: split the series (e.g. drop the localizer images) and read the parts "
            "with hidim.ingest.read_file."
        )


def read_series(series: SeriesInfo) -> tuple[np.ndarray, ScanMetadata]:
    """Decode every file of a unit and stack them along T.

    Args:
        series: a unit from :func:`hidim.ingest.scan` (files already ordered).

    Returns:
        ``(array, metadata)``: float32 ``[C, T, H, W]`` at native resolution (T = frames
        of a multi-frame instance, or one per single-frame instance) and its metadata.

    Raises:
        IngestError: a file is unreadable or corrupt, or the instances differ in size.
        UnsupportedSOPClassError: a file is not an image hidim reads.
    """
    _check_consistent(series)
    out: np.ndarray | None = None
    first_ds: Dataset | None = None
    first_info: PixelInfo | None = None
    b_values: list[float] = []
    trigger_times: list[float] = []
    t = 0
    for path in series.files:
        ds = _open_image(Path(path))
        arr, info = _decode_quietly(ds, path)
        if out is None and len(series.files) == 1:
            # One-file unit (a cine loop, one image): the decoded array is the answer; no copy.
            out, first_ds, first_info = arr, ds, info
            t = arr.shape[1]
            b_values.extend(diffusion_b_values(ds))
            break
        if out is None:
            total = max(
                series.n_frames, arr.shape[1] * (series.n_instances if series.n_frames <= 0 else 1)
            )
            out = np.empty((arr.shape[0], total, arr.shape[2], arr.shape[3]), dtype=np.float32)
            first_ds, first_info = ds, info
        elif arr.shape[0] != out.shape[0] or arr.shape[2:] != out.shape[2:]:
            raise IngestError(
                f"{path}: image is {tuple(arr.shape[2:])} with {arr.shape[0]} channel(s) but the "
                f"series' first image is {tuple(out.shape[2:])} with {out.shape[0]}. Fix: split "
                "the series and read the parts with hidim.ingest.read_file."
            )
        if t + arr.shape[1] > out.shape[1]:
            raise IngestError(
                f"{path}: more frames than the headers declared ({t + arr.shape[1]} > "
                f"{out.shape[1]}). Fix: re-run hidim.ingest.scan on the folder."
            )
        out[:, t : t + arr.shape[1]] = arr
        t += arr.shape[1]
        b_values.extend(diffusion_b_values(ds))
        trigger = get_float(ds, "TriggerTime")
        if trigger is not None:
            trigger_times.append(trigger)
        del ds, arr
    if out is None or first_ds is None or first_info is None:  # unreachable: files checked
        raise IngestError(f"series {series.series_uid}: nothing was read.")
    if t != out.shape[1]:
        out = out[:, :t]
    meta = build_metadata(
        first_ds,
        series=series,
        shape=(out.shape[0], out.shape[1], out.shape[2], out.shape[3]),
        pixel_info=first_info,
        b_values=b_values,
        trigger_times_ms=trigger_times if series.layout == "cine" else (),
    )
    return out, meta


def read_file(path: str | Path) -> tuple[np.ndarray, ScanMetadata]:
    """Decode one (possibly multi-frame) instance.

    Args:
        path: a DICOM image file.

    Returns:
        ``(array, metadata)`` as :func:`read_series` for a one-file unit.

    Raises:
        IngestError: unreadable, truncated or undecodable file (the message names it).
        UnsupportedSOPClassError: valid DICOM that is not an image (SR, waveform, ...).
    """
    path = Path(path)
    ds = _open_image(path)
    arr, info = _decode_quietly(ds, path)
    unit = group_series([instance_header(ds, path)])[0]
    meta = build_metadata(
        ds,
        series=unit,
        shape=(arr.shape[0], arr.shape[1], arr.shape[2], arr.shape[3]),
        pixel_info=info,
        b_values=diffusion_b_values(ds),
    )
    return arr, meta
