"""generate(): DICOM content, labels.csv, truth.json, determinism, resume, validity, OCR."""

from __future__ import annotations

import csv
import importlib
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from hidim.errors import PhantomError
from hidim.phantom import (
    LABEL_COLUMNS,
    OOD_KINDS,
    PhantomConfig,
    cardiac_phase,
    generate,
    load_truth,
    ood_arrays,
)

# The submodule, not the function of the same name that hidim.phantom re-exports.
generate_module = importlib.import_module("hidim.phantom.generate")

ALL_EFFECTS = {"site_shift": True, "shortcut": True, "subgroup_bias": True, "ood": True}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("gen") / "ph"
    cfg = PhantomConfig(patients=6, seed=21, effects=ALL_EFFECTS)
    return cfg, generate(out, cfg), load_truth(out)


def _labels(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "run.json"
    }


def test_one_study_per_patient_one_series_per_view(phantom) -> None:
    cfg, result, truth = phantom
    assert result.n_patients == 6 and result.n_series == 12 and not result.failures
    files = sorted(result.dicom_dir.rglob("*.dcm"))
    assert len(files) == 12
    by_patient: dict[str, set[str]] = {}
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        entry = truth.series(ds.SeriesInstanceUID)
        assert entry == truth.series_for(ds.PatientID, str(ds.SeriesDescription))
        assert ds.pixel_array.shape == (entry["n_frames"], entry["rows"], entry["cols"])
        assert ds.pixel_array.dtype == np.uint8
        code = ds.ViewCodeSequence[0]
        assert (code.CodingSchemeDesignator, code.CodeValue) == (
            "SCT",
            {"A4C": "399214001", "PLAX": "399139001"}[entry["view"]],
        )
        assert ds.Manufacturer == cfg.site(entry["site"]).manufacturer
        assert ds.BurnedInAnnotation == "YES" and "SequenceOfUltrasoundRegions" in ds
        region = ds.SequenceOfUltrasoundRegions[0]
        assert [
            region.RegionLocationMinX0,
            region.RegionLocationMinY0,
            region.RegionLocationMaxX1,
            region.RegionLocationMaxY1,
        ] == entry["us_region"]
        block = ds.private_block(0x0009, "HIDIM PHANTOM US 1.0")
        assert block[0x01].value == str(ds.PatientName)  # PHI copied into private tags
        by_patient.setdefault(ds.PatientID, set()).add(ds.StudyInstanceUID)
    assert all(len(studies) == 1 for studies in by_patient.values())


def test_labels_csv_is_what_labels_import_reads(phantom) -> None:
    _, result, truth = phantom
    rows = _labels(result.labels_path)
    assert tuple(rows[0].keys()) == LABEL_COLUMNS
    assert len(rows) == 6
    for row in rows:
        patient = truth.patient(row["patient_id"])
        assert row["study_uid"] == patient["study_uid"]
        assert int(row["ef_lt_40"]) == patient["recorded_ef_lt_40"]
        assert int(row["event"]) == patient["recorded_event"]
        assert float(row["time"]) > 0 and row["sex"] in {"M", "F"}
        assert float(row["ef"]) == pytest.approx(patient["recorded_ef"], abs=0.05)
        if not patient["label_missed"]:
            assert float(row["ef"]) == pytest.approx(patient["true_ef"], abs=0.05)
        files = list(result.dicom_dir.glob(f"{row['patient_id']}/*/*.dcm"))
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        assert ds.StudyInstanceUID == row["study_uid"] and ds.PatientID == row["patient_id"]


def test_truth_records_every_parameter_and_effect(phantom) -> None:
    cfg, _, truth = phantom
    params = truth.parameters
    assert params["fingerprint"] == cfg.fingerprint()
    assert PhantomConfig.model_validate(params["config"]) == cfg
    for effect in ("site_shift", "shortcut", "subgroup_bias", "ood", "cardiac_phase"):
        assert params["effects"][effect]["active"] is True
    patient = next(iter(truth.data["patients"].values()))
    for key in ("true_ef_lt_40", "true_event", "true_risk", "true_ef", "time", "series"):
        assert key in patient
    entry = next(iter(truth.data["series"].values()))
    for key in ("phase", "ed_frames", "es_frames", "lv_area_px", "sector", "regions", "fps"):
        assert key in entry
    assert {"lv_cavity", "myocardium", "outside_sector", "text", "sector"} <= entry[
        "regions"
    ].keys()


def test_stored_phases_can_be_recomputed_from_stored_parameters(phantom) -> None:
    _, _, truth = phantom
    for entry in truth.data["series"].values():
        times = np.arange(entry["n_frames"]) / entry["fps"]
        phase = cardiac_phase(
            times, entry["heart_rate_bpm"], entry["phase_offset"], entry["systole_s"]
        )
        assert phase.tolist() == entry["phase"]


def test_same_seed_same_bytes_whatever_the_workers(phantom, tmp_path: Path) -> None:
    cfg, result, _ = phantom
    again = generate(tmp_path / "again", cfg, workers=2)
    assert _tree(again.out_dir) == _tree(result.out_dir)
    other = generate(tmp_path / "other", cfg.model_copy(update={"seed": 22}))
    assert _tree(other.out_dir)["labels.csv"] != _tree(result.out_dir)["labels.csv"]


def test_failed_chunk_is_reported_and_a_rerun_resumes(tmp_path: Path, monkeypatch) -> None:
    cfg = PhantomConfig(patients=12, seed=3, views=("A4C",), size=32)
    original = generate_module._run_chunk

    def flaky(chunk):
        if chunk.index == 1:
            raise OSError("disk full")
        return original(chunk)

    monkeypatch.setattr(generate_module, "_run_chunk", flaky)
    first = generate(tmp_path / "ph", cfg)
    assert first.n_patients == 8 and len(first.failures) == 1
    assert "patients 8..11: OSError: disk full" in first.failures[0]
    assert len(_labels(first.labels_path)) == 8  # nothing silently half-written
    monkeypatch.setattr(generate_module, "_run_chunk", original)
    second = generate(tmp_path / "ph", cfg)
    assert second.resumed_chunks == 1 and second.n_patients == 12 and not second.failures
    clean = generate(tmp_path / "clean", cfg)
    assert _tree(second.out_dir) == _tree(clean.out_dir)
    assert generate(tmp_path / "ph", cfg).reused


def test_output_folder_is_protected(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("x")
    with pytest.raises(PhantomError, match="not empty and holds no phantom"):
        generate(tmp_path / "data", PhantomConfig(patients=1))
    generate(tmp_path / "ph", PhantomConfig(patients=1, size=32, views=("A4C",)))
    changed = PhantomConfig(patients=2, size=32, views=("A4C",))
    with pytest.raises(PhantomError, match="different configuration"):
        generate(tmp_path / "ph", changed)
    assert generate(tmp_path / "ph", changed, overwrite=True).n_patients == 2
    assert len(list((tmp_path / "ph" / "dicom").rglob("*.dcm"))) == 2


def test_ood_inputs_are_written_and_available_as_arrays(phantom) -> None:
    cfg, result, truth = phantom
    kinds = {e["kind"]: e for e in truth.data["ood"]}
    assert set(kinds) == set(OOD_KINDS)
    ct = [pydicom.dcmread(result.out_dir / f) for f in kinds["ct_volume"]["files"]]
    assert {ds.Modality for ds in ct} == {"CT"} and len({ds.SeriesInstanceUID for ds in ct}) == 1
    assert ct[0].pixel_array.dtype == np.int16 and (ct[0].pixel_array < -500).any()
    blank = pydicom.dcmread(result.out_dir / kinds["blank"]["files"][0])
    assert blank.Modality == "US" and not blank.pixel_array.any()
    arrays = ood_arrays(seed=cfg.seed, rows=40, cols=32, frames=10)
    assert set(arrays) == set(OOD_KINDS)
    for kind, arr in arrays.items():
        assert arr.dtype == np.float32 and arr.ndim == 4 and arr.shape[0] == 1, kind
    assert arrays["noise"].std() > 50 and arrays["blank"].max() == 0
    assert ood_arrays(rgb=True, rows=40, cols=32, frames=10)["noise"].shape == (3, 10, 40, 32)


def test_rgb_and_rle_variants_read_back(tmp_path: Path) -> None:
    cfg = PhantomConfig(patients=1, seed=2, color="rgb", transfer_syntax="rle", size=32)
    result = generate(tmp_path / "ph", cfg)
    entry = next(iter(load_truth(result.out_dir).data["series"].values()))
    ds = pydicom.dcmread(result.out_dir / entry["file"])
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
    assert ds.PhotometricInterpretation == "RGB"
    assert ds.pixel_array.shape == (entry["n_frames"], entry["rows"], entry["cols"], 3)


def _dciodvfy_errors(path: Path) -> list[str]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.needs_dciodvfy
def test_dciodvfy_finds_no_errors(phantom, tmp_path: Path, need_dciodvfy) -> None:
    _, result, truth = phantom
    files = [result.out_dir / e["file"] for e in list(truth.data["series"].values())[:2]]
    files += [result.out_dir / e["files"][0] for e in truth.data["ood"]]
    rgb = generate(
        tmp_path / "rgb",
        PhantomConfig(
            patients=1, seed=1, color="rgb", transfer_syntax="rle", include_us_regions=False
        ),
    )
    files += sorted(rgb.dicom_dir.rglob("*.dcm"))
    for path in files:
        assert _dciodvfy_errors(path) == [], path


@pytest.mark.needs_tesseract
def test_tesseract_reads_the_burned_in_name(phantom, need_tesseract) -> None:
    import pytesseract

    _, result, truth = phantom
    entry = next(iter(truth.data["series"].values()))
    ds = pydicom.dcmread(result.out_dir / entry["file"])
    text = pytesseract.image_to_string(Image.fromarray(ds.pixel_array[0]), config="--psm 11")
    family = str(ds.PatientName).split("^")[0]
    assert family in text.upper()
    painted = {b["field"]: b["text"] for b in entry["burned_in_text"]}
    assert painted["patient_name"].startswith(family)
