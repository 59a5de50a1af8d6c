"""Benchmark: phantom generation throughput vs the plain pydicom write floor.

Baseline (same run, same frame shapes and counts): random uint8 frames wrapped in a minimal
Ultrasound Multi-frame dataset and written with ``pydicom.dcmwrite`` — the cost of just
putting the bytes on disk. hidim's figure includes rendering, burned-in text, the full
header, truth and labels. Prints patients/s (wall and per CPU-second) and the ratio.

Usage: ``python bench/phantom.py [N_PATIENTS]`` (default 200).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid  # noqa: E402

from hidim.phantom import PhantomConfig, generate, load_truth  # noqa: E402


def _baseline(shapes: list[tuple[int, int, int]], out: Path) -> float:
    """Write one minimal US multi-frame file per shape; return wall seconds."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for k, shape in enumerate(shapes):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = UltrasoundMultiFrameImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "US"
        ds.NumberOfFrames, ds.Rows, ds.Columns = shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = rng.integers(0, 256, shape, dtype=np.uint8).tobytes()
        pydicom.dcmwrite(out / f"{k}.dcm", ds, enforce_file_format=True)
    return time.perf_counter() - start


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    cfg = PhantomConfig(patients=n, seed=0)
    root = Path(tempfile.mkdtemp(prefix="hidim-bench-phantom-"))
    try:
        rows = []
        for workers in (1, 2):
            out = root / f"w{workers}"
            cpu0, t0 = time.process_time(), time.perf_counter()
            result = generate(out, cfg, workers=workers)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            rows.append((workers, wall, cpu if workers == 1 else float("nan")))
            print(
                f"hidim phantom  workers={workers}: {n / wall:6.1f} patients/s wall"
                + (f", {n / cpu:6.1f} patients per CPU-second" if workers == 1 else "")
                + f"  ({result.n_series} series)"
            )
        truth = load_truth(root / "w1")
        shapes = [(e["n_frames"], e["rows"], e["cols"]) for e in truth.data["series"].values()]
        base_dir = root / "baseline"
        base_dir.mkdir()
        base = _baseline(shapes, base_dir)
        print(f"baseline (pydicom write of the same frames): {n / base:6.1f} patients/s wall")
        print(f"ratio hidim(1 worker) / baseline time: {rows[0][1] / base:.2f}x")
        print(f"ratio hidim(2 workers) / baseline time: {rows[1][1] / base:.2f}x")
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
