"""Store format: lossless round-trips, exact dtype narrowing, atomic writes, helpful errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import zarr

from hidim.errors import StoreError
from hidim.store import Store, apply_intensity_norm, series_key
from hidim.store.arrays import chunk_frames, exact_dtype, write_array
from hidim.store.layout import MANIFEST_SCHEMA, conform
from hidim.store.writer import (
    init_store,
    recover_rows,
    remove_temporaries,
    write_manifest,
    write_series_array,
)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([0, 17, 255], np.float32), np.uint8),
        (np.array([-1024, 0, 3071], np.float32), np.int16),
        (np.array([0, 40000], np.float32), np.uint16),
        (np.array([0.5, 1.0], np.float32), np.float32),
        (np.array([np.nan, 1.0], np.float32), np.float32),
        (np.array([0, 1e6], np.float32), np.float32),
    ],
)
def test_exact_dtype_narrows_only_when_lossless(values: np.ndarray, expected: type) -> None:
    dtype = exact_dtype(values)
    assert dtype == np.dtype(expected)
    np.testing.assert_array_equal(values.astype(dtype).astype(np.float32), values)


def test_series_key_is_sha1_prefix_and_stable() -> None:
    import hashlib

    uid = "1.2.826.0.1.3680043.8.498.1"
    assert series_key(uid) == hashlib.sha1(uid.encode()).hexdigest()[:16]
    assert len(series_key(uid)) == 16


@pytest.mark.parametrize("kind", ["uint8", "hu", "float"])
def test_array_round_trip_is_exact(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(0)
    shape = (3, 7, 9, 5)
    if kind == "uint8":
        a = rng.integers(0, 256, shape).astype(np.float32)
    elif kind == "hu":
        a = rng.integers(-1024, 3072, shape).astype(np.float32)
    else:
        a = rng.normal(size=shape).astype(np.float32)
    root = init_store(tmp_path / "s")
    info = write_series_array(root, "k" * 16, a, row={"series_key": "k" * 16})
    z = zarr.open_array(str(root / info["array_path"]), mode="r")
    assert z.chunks[0] == 3 and z.chunks[2:] == (9, 5)  # chunked along T only
    np.testing.assert_array_equal(np.asarray(z[...], dtype=np.float32), a)


@pytest.mark.parametrize("frames_per_chunk", [1, 3, 7])
def test_fast_chunk_writer_matches_zarr_reader(tmp_path: Path, frames_per_chunk: int) -> None:
    # 7 frames in chunks of 3 leaves a padded edge chunk; zarr must read back exactly the data
    a = np.random.default_rng(1).integers(-300, 300, (2, 7, 5, 4)).astype(np.float32)
    info = write_array(tmp_path / "a.zarr", a, target_chunk_bytes=frames_per_chunk * 2 * 5 * 4 * 2)
    z = zarr.open_array(str(tmp_path / "a.zarr"), mode="r")
    assert info["chunks"][1] == z.chunks[1] == frames_per_chunk and z.dtype == np.int16
    np.testing.assert_array_equal(np.asarray(z[...], dtype=np.float32), a)
    np.testing.assert_array_equal(np.asarray(z[:, 2:6], dtype=np.float32), a[:, 2:6])


def test_chunks_hold_about_target_bytes() -> None:
    assert chunk_frames((3, 120, 480, 640), 1) == 5  # 0.92 MB per RGB uint8 frame → ~4 MiB
    assert chunk_frames((1, 3, 512, 512), 2) == 3  # never more than T
    assert chunk_frames((1, 50, 4096, 4096), 4) == 1


def test_store_reads_clips_and_applies_recorded_normalisation(make_store) -> None:
    root, arrays = make_store(
        [
            {
                "uid": "1.1",
                "patient": "p1",
                "study": "s1",
                "frames": 12,
                "view": "A4C",
                "split": "train",
            }
        ]
    )
    store = Store(root)
    key = store.manifest.series_key[0]
    np.testing.assert_array_equal(store.read_array(key, normalised=False), arrays[key])
    np.testing.assert_array_equal(store.read_clip(key, 3, 4, normalised=False), arrays[key][:, 3:7])
    norm = {"method": "zscore", "scale": 0.5, "offset": -1.0, "clip": None}
    np.testing.assert_allclose(apply_intensity_norm(arrays[key], norm), arrays[key] * 0.5 - 1.0)
    with pytest.raises(StoreError, match=r"expected frames within \[0, 12\]"):
        store.read_clip(key, 10, 5)
    with pytest.raises(StoreError, match="did you mean"):
        store.read_array(key[:-1] + "0")


def test_store_is_readable_without_hidim(make_store) -> None:
    root, arrays = make_store(
        [{"uid": "1.1", "patient": "p1", "study": "s1", "frames": 4, "view": None, "split": "test"}]
    )
    manifest = pq.read_table(root / "manifest.parquet").to_pandas()
    assert set(MANIFEST_SCHEMA.names) <= set(manifest.columns)
    row = manifest.iloc[0]
    raw = zarr.open_array(str(root / row["array_path"]), mode="r")[...].astype(np.float32)
    norm = json.loads(row["intensity_norm"])
    np.testing.assert_array_equal(raw * norm["scale"] + norm["offset"], arrays[row["series_key"]])


def test_missing_and_incomplete_stores_raise_with_the_fix(tmp_path: Path, make_store) -> None:
    with pytest.raises(StoreError, match="does not exist; create one with `hidim curate"):
        Store(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="expected store.json"):
        Store(tmp_path / "plain")
    root, _ = make_store(
        [{"uid": "1.1", "patient": "p", "study": "s", "frames": 3, "view": None, "split": "train"}]
    )
    store = Store(root)
    key = store.manifest.series_key[0]
    shutil.rmtree(root / store.manifest.array_path[0])
    with pytest.raises(StoreError, match="store is incomplete"):
        store.read_array(key)
    assert store.check() and key in store.check()[0]
    with pytest.raises(StoreError, match="hidim labels import STORE FILE"):
        _ = store.labels
    (root / "manifest.parquet").unlink()
    with pytest.raises(StoreError, match="re-run `hidim curate`"):
        Store(root)


def test_init_store_refuses_an_unrelated_folder(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.txt").write_text("x")
    with pytest.raises(StoreError, match="non-empty folder without store.json"):
        init_store(tmp_path / "docs")


def test_rewrite_is_atomic_and_leftovers_are_cleaned(tmp_path: Path) -> None:
    root = init_store(tmp_path / "s")
    key = "a" * 16
    write_series_array(root, key, np.zeros((1, 2, 3, 3), np.float32), row={"series_key": key})
    write_series_array(
        root, key, np.ones((1, 4, 3, 3), np.float32), row={"series_key": key, "n_frames": 4}
    )
    z = zarr.open_array(str(root / "arrays" / f"{key}.zarr"), mode="r")
    assert z.shape == (1, 4, 3, 3) and float(z[0, 0, 0, 0]) == 1.0
    assert not [p for p in (root / "arrays").iterdir() if p.name.startswith(".")]
    # a crashed writer leaves a temp dir; the next run removes it
    write_array(root / "arrays" / f".tmp-{key}-dead.zarr", np.zeros((1, 1, 2, 2), np.float32))
    assert remove_temporaries(root) == 1
    # a run that died before writing the manifest: the row is recovered from the array
    rows = recover_rows(root, known=[])
    assert rows[0]["series_key"] == key and rows[0]["n_frames"] == 4
    assert rows[0]["array_path"] == f"arrays/{key}.zarr" and rows[0]["stored_dtype"] == "uint8"
    assert recover_rows(root, known=[key]) == []


def test_manifest_is_conformed_and_keys_unique(tmp_path: Path) -> None:
    root = init_store(tmp_path / "s")
    df = conform(
        [{"series_key": "b", "n_frames": "12", "fps": "30.5", "extra_col": 1}], MANIFEST_SCHEMA
    )
    assert df["n_frames"].dtype == "Int32" and df["fps"].iloc[0] == 30.5
    assert list(df.columns)[-1] == "extra_col"
    with pytest.raises(StoreError, match="one manifest row per series_key"):
        write_manifest(root, [{"series_key": "b"}, {"series_key": "b"}])
    write_manifest(root, pd.DataFrame([{"series_key": "b", "deidentified": True}]))
    assert pd.read_parquet(root / "manifest.parquet")["deidentified"].iloc[0]
