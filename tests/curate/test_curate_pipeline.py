"""curate(): real DICOM → store; ledger, resume, recovery, refusal, process pool, Dask, CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hidim.curate import curate
from hidim.errors import CurationError
from hidim.ingest import read_series, scan
from hidim.store import ClipDataset, Store, series_key


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_curate_round_trip_ledger_and_manifest(corpus: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    result = curate(corpus, store_dir, intensity="auto", show_progress=False)
    assert (result.n_series, result.written, result.resumed, len(result.failed)) == (5, 4, 0, 1)
    assert not result.ok and result.n_failed_files == 3  # truncated + empty + undecodable

    store = Store(store_dir)
    m = store.manifest.set_index("series_key")
    # stored values are exactly what ingest decodes (lossless), at native resolution
    for unit in scan(corpus).series:
        if series_key(unit.key_uid) == result.failed[0][0]:
            continue
        expected, _ = read_series(unit)
        key = series_key(unit.key_uid)
        np.testing.assert_array_equal(store.read_array(key, normalised=False), expected)
        assert m.loc[key, "n_frames"] == expected.shape[1] == m.loc[key, "n_frames_original"]
    assert set(m["modality"]) == {"CT", "MR", "US"}
    assert m["deidentified"].all() and m["patient_key"].notna().all()
    assert m["split"].isin(["train", "val", "test"]).all()
    assert (m["stored_dtype"] != "float32").all()  # integer DICOM samples narrow losslessly
    ct = m[m["layout"] == "volume"].iloc[0]
    assert ct["n_frames"] == 5 and ct["slice_spacing_mm"] > 0
    assert json.loads(ct["intensity_norm"])["method"] == "hu"
    us = m[m["modality"] == "US"].iloc[0]
    assert json.loads(us["intensity_norm"])["method"] == "zscore"
    clip = store.read_array(us.name)
    assert abs(float(clip.mean())) < 1e-3 and abs(float(clip.std()) - 1) < 1e-3

    ledger = store.ledger
    assert len(ledger) == len(_files(corpus))  # every input file accounted for
    by_status = ledger.groupby("status").size().to_dict()
    assert by_status == {"ok": 8, "failed": 3, "skipped": 2}
    reasons = " | ".join(ledger["reason"])
    assert (
        "truncated" in reasons
        and "empty file" in reasons
        and "not DICOM" in reasons
        and "RT Plan" in reasons
    )
    decode = ledger[(ledger["stage"] == "curate") & (ledger["status"] == "failed")]
    assert len(decode) == 1 and decode["reason"].str.contains("could not be decoded").all()
    assert decode["reason"].str.contains("Rows/Columns").all()  # scrubbing keeps the advice
    assert ledger["path"].isna().all() and str(corpus) not in reasons  # no paths (PHI) stored
    assert (store_dir / "run.json").is_file()


def test_resume_skips_unchanged_series_and_redoes_changed_ones(
    corpus: Path, tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    curate(corpus, store_dir, show_progress=False)
    arrays = sorted((store_dir / "arrays").iterdir())
    stamps = {p.name: (p / "zarr.json").stat().st_mtime_ns for p in arrays}
    before = Store(store_dir).manifest

    again = curate(corpus, store_dir, show_progress=False)
    assert (again.written, again.resumed, len(again.failed)) == (0, 4, 1)
    assert {p.name: (p / "zarr.json").stat().st_mtime_ns for p in arrays} == stamps
    after = Store(store_dir).manifest
    pd.testing.assert_frame_equal(before, after)  # splits stable, nothing rewritten
    ledger = Store(store_dir).ledger
    assert len(ledger) == len(_files(corpus)) and ledger["input_id"].is_unique

    fps = curate(corpus, store_dir, fps=15, show_progress=False)  # new options → re-curate all
    assert fps.written == 4 and len(fps.failed) == 1
    us = Store(store_dir).manifest.query("modality == 'US'").iloc[0]
    assert (us["fps_original"], us["fps"], us["n_frames"], us["n_frames_original"]) == (
        pytest.approx(30.0, abs=1e-3),
        15.0,
        15,
        30,
    )


def test_interrupted_run_is_recovered(corpus: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    curate(corpus, store_dir, show_progress=False)
    keys = set(Store(store_dir).manifest["series_key"])
    (store_dir / "manifest.parquet").unlink()  # died after the arrays, before the manifest
    (store_dir / "arrays" / ".tmp-deadbeef-1234.zarr").mkdir()  # and left a half-written array
    result = curate(corpus, store_dir, show_progress=False)
    assert (result.written, result.resumed) == (0, 4)
    assert set(Store(store_dir).manifest["series_key"]) == keys
    assert not (store_dir / "arrays" / ".tmp-deadbeef-1234.zarr").exists()


def test_refuses_identified_input(testdata: Callable[[str], Path], tmp_path: Path) -> None:
    src = tmp_path / "raw"
    src.mkdir()
    shutil.copy(testdata("CT_small.dcm"), src / "ct.dcm")
    with pytest.raises(CurationError, match=r"run `hidim deid IN OUT` first.*--allow-identified"):
        curate(src, tmp_path / "store", show_progress=False)
    assert not (tmp_path / "store").exists()
    assert curate(src, tmp_path / "store", allow_identified=True, show_progress=False).written == 1
    assert not Store(tmp_path / "store").manifest["deidentified"].iloc[0]


def test_duplicate_uids_are_curated_once(
    testdata: Callable[[str], Path], tmp_path: Path, deid_copy: Callable[[Path, Path], Path]
) -> None:
    src = tmp_path / "dups"
    deid_copy(testdata("emri_small.dcm"), src / "a.dcm")
    deid_copy(testdata("emri_small_RLE.dcm"), src / "b.dcm")  # same UIDs, other transfer syntax
    result = curate(src, tmp_path / "store", show_progress=False)
    assert result.written == 1
    ledger = Store(tmp_path / "store").ledger
    assert ledger["status"].tolist().count("skipped") == 1
    reason = ledger.loc[ledger["status"] == "skipped", "reason"].iloc[0]
    assert "duplicate" in reason and "a.dcm" not in reason  # file names never reach the ledger


def test_process_pool_and_dask_give_the_same_store(corpus: Path, tmp_path: Path) -> None:
    from dask.distributed import LocalCluster

    serial = curate(corpus, tmp_path / "serial", show_progress=False)
    pooled = curate(corpus, tmp_path / "pool", workers=2, show_progress=False)
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        dask = curate(
            corpus, tmp_path / "dask", scheduler=cluster.scheduler_address, show_progress=False
        )
    assert serial.written == pooled.written == dask.written == 4
    cols = ["series_key", "content_hash", "n_frames", "rows", "cols", "intensity_norm", "split"]
    ref = Store(tmp_path / "serial").manifest[cols]
    for name in ("pool", "dask"):
        pd.testing.assert_frame_equal(Store(tmp_path / name).manifest[cols], ref)
        assert len(Store(tmp_path / name).ledger) == len(_files(corpus))


def test_resize_and_dataset_on_a_real_store(corpus: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    curate(corpus, store_dir, size=(32, 40), fps=10, show_progress=False)
    m = Store(store_dir).manifest
    assert (m["rows"] == 32).all() and (m["cols"] == 40).all()
    us = m.query("modality == 'US'").iloc[0]
    resize = json.loads(us["resize"])
    assert resize["original"] == [240, 320] and resize["scale"] == pytest.approx(0.125)
    assert resize["pad"] == [1, 1, 0, 0] and us["n_frames"] == 10
    ds = ClipDataset(store_dir, split=None, clip_frames=4, sampling="centre", views=None)
    shapes = {tuple(item["clip"].shape[1:]) for item in ds}
    assert shapes == {(4, 32, 40)}


def test_cli_curate_exit_codes_and_inspect(corpus: Path, tmp_path: Path) -> None:
    from hidim.cli.main import app

    runner = CliRunner()
    bad = runner.invoke(app, ["curate", str(corpus), str(tmp_path / "s1")])
    assert bad.exit_code == 1, bad.output  # the store is written, but 2 files failed
    assert Store(tmp_path / "s1").manifest.shape[0] == 4
    good_in = tmp_path / "good"
    shutil.copytree(corpus / "ct5n", good_in)
    ok = runner.invoke(
        app, ["curate", str(good_in), str(tmp_path / "s2"), "--workers", "1", "--seed", "3"]
    )
    assert ok.exit_code == 0, ok.output
    shown = runner.invoke(app, ["inspect", str(tmp_path / "s1")], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "truncated" in shown.output and "US" in shown.output
    refused = runner.invoke(
        app, ["curate", str(corpus / "plan.dcm"), str(tmp_path / "s3"), "--intensity", "bogus"]
    )
    assert refused.exit_code == 2 and "--intensity" in refused.output


def test_a_series_that_breaks_later_leaves_the_store(corpus: Path, tmp_path: Path) -> None:
    import pydicom

    store_dir = tmp_path / "store"
    curate(corpus, store_dir, show_progress=False)
    key = (
        Store(store_dir)
        .manifest.query("modality == 'CT' and layout != 'volume'")
        .series_key.iloc[0]
    )
    # CT_small.dcm is replaced by undecodable pixel data under the same UIDs: the header still
    # scans, the content hash changed, decoding fails → the old array must not stay in the store
    good = pydicom.dcmread(corpus / "CT_small.dcm", stop_before_pixels=True)
    bad = pydicom.dcmread(corpus / "JPEG2000-embedded-sequence-delimiter.dcm")
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID", "Modality"):
        setattr(bad, kw, getattr(good, kw))
    bad.save_as(corpus / "CT_small.dcm", enforce_file_format=False)
    result = curate(corpus, store_dir, show_progress=False)
    assert key in {k for k, _ in result.failed} and result.resumed == 3
    assert not (store_dir / "arrays" / f"{key}.zarr").exists()  # stale array removed
    assert key not in set(Store(store_dir).manifest.series_key)
    curate(corpus, store_dir, show_progress=False)  # and not resurrected by recovery
    assert key not in set(Store(store_dir).manifest.series_key)
