"""Benchmark ``hidim pacs pull`` against the loop a user would write with dicomweb_client.

Starts a throwaway Orthanc + DICOMweb plugin (:func:`hidim.ingest.orthanc.start_orthanc`),
uploads ``--copies`` copies of a small hospital-like study mix built from pydicom's real test
files (each copy with its own Study/Series/SOP UIDs): a 10-slice CT series (explicit VR), a
5-slice MR series (implicit VR), an ultrasound series of 2 stills (JPEG 2000 lossless +
uncompressed), and a 10-frame RLE MR — 18 instances per copy, 11 copies ≈ 200 instances.
Then times, in one run, pulling every study into an empty folder:

* baseline: ``DICOMwebClient.search_for_instances`` per study, then
  ``retrieve_instance`` + ``pydicom.dcmwrite`` per instance, sequentially (no atomic write,
  no fsync, no ledger, no resume);
* hidim ``pull`` with ``--workers 1`` and ``--workers 4`` (one WADO-RS request per series,
  atomic fsync'd writes, ledger, run.json);
* hidim re-run on the full folder (everything skipped: the cost of resuming).

Every contender first runs once, untimed, on one study (imports, connection set-up);
``--repeat N`` keeps the best of N timed runs. The server runs on the same machine, so the
figures are CPU/disk bound; over a hospital network, latency per request dominates and
fewer, concurrent requests matter more.

Usage: ``OMP_NUM_THREADS=1 python bench/dicomweb.py [--copies 11] [--repeat 1]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from hidim.ingest.dicomweb import pull
from hidim.ingest.orthanc import OrthancServer, start_orthanc

#: (test file, series it goes in, instances) — one study per copy holds these four series.
MIX = (
    ("CT_small.dcm", "ct", 10),
    ("MR_small_implicit.dcm", "mr", 5),
    ("US1_J2KR.dcm", "us", 1),
    ("US1_UNCR.dcm", "us", 1),
    ("emri_small_RLE.dcm", "rle", 1),
)


def upload_copies(server: OrthancServer, copies: int, scratch: Path) -> tuple[list[str], int]:
    """Upload ``copies`` studies of the mix; returns (study UIDs, bytes uploaded)."""
    studies, total = [], 0
    for c in range(copies):
        study = generate_uid()
        studies.append(study)
        series = {key: generate_uid() for _, key, _ in MIX}
        for name, key, n in MIX:
            for i in range(n):
                ds = dcmread(get_testdata_file(name, download=False))
                ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series[key]
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                ds.InstanceNumber = i + 1
                path = scratch / f"{c}_{name}_{i}.dcm"
                ds.save_as(path)
                total += path.stat().st_size
                server.upload(path)
                path.unlink()
    return studies, total


def baseline(url: str, studies: list[str], out: Path) -> int:
    """The sequential loop a user writes with dicomweb_client and pydicom."""
    client = DICOMwebClient(url)
    n = 0
    for study in studies:
        for item in client.search_for_instances(study_instance_uid=study):
            series, sop = item["0020000E"]["Value"][0], item["00080018"]["Value"][0]
            ds = client.retrieve_instance(study, series, sop)
            folder = out / study / series
            folder.mkdir(parents=True, exist_ok=True)
            dcmwrite(folder / f"{sop}.dcm", ds, enforce_file_format=True)
            n += 1
    return n


def hidim_pull(url: str, studies: list[str], out: Path, workers: int) -> int:
    result = pull(url, out, study_uids=studies, workers=workers, show_progress=False)
    if not result.all_ok:
        raise RuntimeError(f"hidim pull failed: {[r for r in result.rows if r['status'] != 'ok']}")
    return result.count("ok") + result.count("skipped")


def best_of(repeat: int, fn: Callable[[Path], int], out: Path, fresh: bool) -> tuple[float, int]:
    """Best wall time of ``repeat`` runs of ``fn(out)`` (``out`` emptied first when fresh)."""
    best, n = float("inf"), 0
    for _ in range(repeat):
        if fresh and out.exists():
            shutil.rmtree(out)
        start = time.perf_counter()
        n = fn(out)
        best = min(best, time.perf_counter() - start)
    return best, n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--copies", type=int, default=11, help="studies uploaded (18 instances each)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="keep the best of N timed runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hidim_bench_dicomweb_") as tmp:
        scratch = Path(tmp)
        with start_orthanc(scratch / "orthanc") as server:
            t0 = time.perf_counter()
            studies, size = upload_copies(server, args.copies, scratch)
            n_instances = len(server.instance_ids())
            print(
                f"Orthanc {server.url}: {len(studies)} studies, {n_instances} instances, "
                f"{size / 1e6:.1f} MB uploaded in {time.perf_counter() - t0:.1f} s"
            )
            url = server.dicomweb_url
            # warm-up: one study each, untimed
            baseline(url, studies[:1], scratch / "warm_base")
            hidim_pull(url, studies[:1], scratch / "warm_hidim", 1)

            full = scratch / "hidim_w4"
            contenders: list[tuple[str, Callable[[Path], int], Path, bool]] = [
                (
                    "baseline: retrieve_instance loop + dcmwrite",
                    lambda o: baseline(url, studies, o),
                    scratch / "base",
                    True,
                ),
                (
                    "hidim pull --workers 1",
                    lambda o: hidim_pull(url, studies, o, 1),
                    scratch / "hidim_w1",
                    True,
                ),
                ("hidim pull --workers 4", lambda o: hidim_pull(url, studies, o, 4), full, True),
                (
                    "hidim pull again (resume: all skipped)",
                    lambda o: hidim_pull(url, studies, o, 4),
                    full,
                    False,
                ),
            ]
            results = []
            for name, fn, out, fresh in contenders:
                seconds, n = best_of(args.repeat, fn, out, fresh)
                results.append((name, seconds, n))

    base = results[0][1]
    print(f"\n{'contender':<44} {'files':>6} {'seconds':>8} {'files/s':>8} {'vs baseline':>11}")
    for name, seconds, n in results:
        print(f"{name:<44} {n:>6} {seconds:>8.2f} {n / seconds:>8.0f} {base / seconds:>10.2f}x")


if __name__ == "__main__":
    main()
