"""Benchmark ``hidim deid`` against dicognito, pydicom/deid and a plain pydicom loop.

Builds a corpus of a few hundred files from pydicom's real test files (each copy gets its
own SOP/Series UIDs so nothing is a duplicate), then times, in one run:

* plain:     pydicom read → blank a few identifying attributes → write (the I/O limit);
* dicognito: ``Anonymizer().anonymize(ds)`` → write;
* deid:      ``deid.dicom.replace_identifiers`` with its default recipe, saving outputs;
* hidim:     ``hidim.deidentify.deidentify`` header-only (pixels not checked), 1 and N workers;
* pixels:    hidim with burned-in text handling on the ultrasound part of the corpus, and the
             plain loop decoding + blanking + re-encoding the same files.

Usage: ``OMP_NUM_THREADS=1 python bench/deid.py [--copies 20] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

# This file is named deid.py: keep its folder off sys.path so `import deid` finds the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

HEADER_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "JPEG2000.dcm",
    "emri_small_RLE.dcm",
    "liver.dcm",
    "SC_rgb_rle.dcm",
    "image_dfl.dcm",
    "693_J2KR.dcm",
    "waveform_ecg.dcm",
    "eCT_Supplemental.dcm",
]
PIXEL_FILES = ["gdcm-US-ALOKA-16.dcm", "examples_palette.dcm", "examples_ybr_color.dcm"]


def build_corpus(names: list[str], copies: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        src = get_testdata_file(name, download=False)
        if src is None:
            continue
        for i in range(copies):
            ds = dcmread(src)
            ds.SOPInstanceUID = generate_uid()
            ds.SeriesInstanceUID = generate_uid()
            if "file_meta" in ds.__dict__ or hasattr(ds, "file_meta"):
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            path = folder / f"{Path(name).stem}_{i}.dcm"
            ds.save_as(path)
            out.append(path)
    return out


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def plain_loop(files: list[Path], out: Path, *, pixels: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        ds = dcmread(f)
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName"):
            if kw in ds:
                setattr(ds, kw, "")
        if pixels and "PixelData" in ds:
            arr = ds.pixel_array.copy()
            arr[..., :20, :] = 0
            from pydicom.uid import RLELossless

            if ds.file_meta.TransferSyntaxUID.is_compressed or "NumberOfFrames" in ds:
                ds.PhotometricInterpretation = (
                    "RGB" if ds.SamplesPerPixel == 3 else ds.PhotometricInterpretation
                )
                ds.compress(RLELossless, arr, generate_instance_uid=False)
            else:
                ds.PixelData = arr.tobytes()
        ds.save_as(out / f"{i}.dcm")


def dicognito_loop(files: list[Path], out: Path) -> None:
    from dicognito.anonymizer import Anonymizer

    out.mkdir(parents=True, exist_ok=True)
    anonymizer = Anonymizer()
    for i, f in enumerate(files):
        ds = dcmread(f)
        anonymizer.anonymize(ds)
        ds.save_as(out / f"{i}.dcm")


def deid_loop(files: list[Path], out: Path) -> None:
    from deid.dicom import replace_identifiers

    out.mkdir(parents=True, exist_ok=True)
    replace_identifiers([str(f) for f in files], save=True, output_folder=str(out), overwrite=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from hidim.deidentify import DeidOptions, PixelPolicy, create_key, deidentify

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = build_corpus(HEADER_FILES, args.copies, root / "corpus")
        mb = sum(f.stat().st_size for f in files) / 1e6
        key = create_key(root / "key")
        header_only = DeidOptions(pixels=PixelPolicy(mode="none"), verify_output=False)

        def hidim(workers: int, tag: str, opts: DeidOptions, corpus: list[Path]) -> float:
            out = root / f"hidim_{tag}"
            return timed(
                lambda: deidentify(
                    corpus,
                    out,
                    key_file=key,
                    reid_table=root / f"reid_{tag}.csv",
                    options=opts,
                    workers=workers,
                    show_progress=False,
                )
            )

        results = {
            "plain read-blank-write": timed(lambda: plain_loop(files, root / "plain")),
            "dicognito": timed(lambda: dicognito_loop(files, root / "dicognito")),
            "deid (default recipe)": timed(lambda: deid_loop(files, root / "deid")),
            "hidim header, 1 worker": hidim(1, "h1", header_only, files),
            f"hidim header, {args.workers} workers": hidim(args.workers, "hn", header_only, files),
        }
        print(f"\nheader mode: {len(files)} files, {mb:.1f} MB")
        for name, seconds in results.items():
            print(f"  {name:32s} {len(files) / seconds:8.1f} files/s {mb / seconds:7.1f} MB/s")
        h1 = results["hidim header, 1 worker"]
        print(f"  hidim / dicognito      = {results['dicognito'] / h1:5.2f}x (goal >= 2)")
        print(f"  hidim / deid           = {results['deid (default recipe)'] / h1:5.2f}x")
        print(
            f"  hidim / plain loop     = {results['plain read-blank-write'] / h1:5.2f}x (goal >= 0.9)"
        )
        hn = results[f"hidim header, {args.workers} workers"]
        print(f"  {args.workers} workers speed-up   = {h1 / hn:5.2f}x")

        pix = build_corpus(PIXEL_FILES, max(1, args.copies // 10), root / "pixels")
        pmb = sum(f.stat().st_size for f in pix) / 1e6
        t_plain = timed(lambda: plain_loop(pix, root / "plain_pix", pixels=True))
        t_hidim = hidim(1, "px", DeidOptions(verify_output=False), pix)
        print(f"\npixel mode (ultrasound sector masking): {len(pix)} files, {pmb:.1f} MB")
        print(
            f"  plain decode-blank-RLE  {len(pix) / t_plain:8.2f} files/s {pmb / t_plain:7.1f} MB/s"
        )
        print(
            f"  hidim                   {len(pix) / t_hidim:8.2f} files/s {pmb / t_hidim:7.1f} MB/s"
        )
        print(f"  hidim / plain           = {t_plain / t_hidim:5.2f}x")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
