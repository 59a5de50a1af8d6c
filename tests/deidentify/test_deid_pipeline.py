"""Batch behaviour: bad inputs reported, resume, safe locations, CLI, dciodvfy validity."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from typer.testing import CliRunner

from hidim.cli.main import app
from hidim.deidentify import DeidOptions, PixelPolicy, deidentify
from hidim.deidentify.audit import read_audit
from hidim.errors import DeidentificationError

HEADER_ONLY = DeidOptions(pixels=PixelPolicy(mode="none"))


def _folder(tmp_path: Path, testdata, names: list[str]) -> Path:
    inp = tmp_path / "in"
    inp.mkdir()
    for n in names:
        shutil.copy(testdata(n), inp / n)
    return inp


def test_deid_bad_inputs_are_reported_and_the_batch_goes_on(tmp_path, key_file, testdata) -> None:
    inp = _folder(
        tmp_path,
        testdata,
        ["CT_small.dcm", "MR_truncated.dcm", "rtplan_truncated.dcm", "no_meta.dcm"],
    )
    (inp / "empty.dcm").write_bytes(b"")
    (inp / "notes.txt").write_text("not dicom")
    out = tmp_path / "out"
    summary = deidentify(
        [inp],
        out,
        key_file=key_file,
        reid_table=tmp_path / "r.csv",
        options=HEADER_ONLY,
        show_progress=False,
    )
    reasons = sorted(r["reason"] for r in summary.rows if r["status"] == "failed")
    assert summary.count("ok") == 1 and len(reasons) == 3
    # files that do not parse as DICOM at all (notes, a ledger beside pulled files, and
    # pydicom's no_meta.dcm, which even a forced read cannot parse) are skipped, as
    # `hidim curate` does: reported, never copied into the release
    skipped = [r["reason"] for r in summary.rows if r["status"] == "skipped"]
    assert len(skipped) == 2 and all(r.startswith("not a DICOM file") for r in skipped)
    assert any("zero-byte" in r for r in reasons)
    assert sum("truncated" in r for r in reasons) == 2
    assert len(list(out.rglob("*.dcm"))) == 1  # nothing corrupt was written
    assert not summary.all_ok
    audit = read_audit(out / "deid_audit.parquet")
    assert {r["input_id"] for r in audit} == {r["input_id"] for r in summary.rows}
    assert not any("CT_small" in str(v) for r in audit for v in r.values())


def test_deid_rerun_resumes_without_rewriting(tmp_path, key_file, testdata) -> None:
    inp = _folder(tmp_path, testdata, ["CT_small.dcm", "rtplan.dcm"])
    out, reid = tmp_path / "out", tmp_path / "r.csv"
    deidentify(
        [inp], out, key_file=key_file, reid_table=reid, options=HEADER_ONLY, show_progress=False
    )
    outputs = {p: p.stat().st_mtime_ns for p in out.rglob("*.dcm")}
    again = deidentify(
        [inp], out, key_file=key_file, reid_table=reid, options=HEADER_ONLY, show_progress=False
    )
    assert again.count("ok") == 2
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.dcm")} == outputs
    assert stat.S_IMODE(reid.stat().st_mode) == 0o600
    header = reid.read_text().splitlines()[0]
    assert header == "kind,original,pseudonym"


def test_deid_refuses_private_tables_inside_out(tmp_path, key_file, testdata) -> None:
    inp = _folder(tmp_path, testdata, ["CT_small.dcm"])
    out = tmp_path / "out"
    with pytest.raises(DeidentificationError, match="outside the output folder"):
        deidentify([inp], out, key_file=key_file, reid_table=out / "reid.csv")
    with pytest.raises(DeidentificationError, match="quarantine folder outside"):
        deidentify(
            [inp], out, key_file=key_file, reid_table=tmp_path / "r.csv", quarantine_dir=out / "q"
        )


def test_deid_same_key_same_pseudonyms_across_runs(tmp_path, key_file, testdata) -> None:
    inp = _folder(tmp_path, testdata, ["CT_small.dcm"])
    firsts = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        deidentify(
            [inp],
            out,
            key_file=key_file,
            reid_table=tmp_path / f"r{i}.csv",
            options=HEADER_ONLY,
            show_progress=False,
        )
        (path,) = list(out.rglob("*.dcm"))
        firsts.append(dcmread(path))
    assert firsts[0].SOPInstanceUID == firsts[1].SOPInstanceUID
    assert firsts[0].PatientID == firsts[1].PatientID
    assert firsts[0].StudyDate == firsts[1].StudyDate


def test_deid_cli_key_creation_and_exit_codes(tmp_path, testdata) -> None:
    runner = CliRunner()
    src = testdata("CT_small.dcm")
    key = tmp_path / "k.key"
    args = [
        "deid",
        str(src),
        str(tmp_path / "out"),
        "--key",
        str(key),
        "--reid-table",
        str(tmp_path / "r.csv"),
    ]
    missing = runner.invoke(app, args)
    assert missing.exit_code == 2 and "--create-key" in missing.output
    ok = runner.invoke(app, [*args, "--create-key"])
    assert ok.exit_code == 0, ok.output
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"")
    failed = runner.invoke(
        app,
        [
            "deid",
            str(bad),
            str(tmp_path / "out2"),
            "--key",
            str(key),
            "--reid-table",
            str(tmp_path / "r2.csv"),
        ],
    )
    assert failed.exit_code == 1


def _dciodvfy_errors(path: Path) -> int:
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return len(re.findall(r"^Error", proc.stdout + proc.stderr, flags=re.M))


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "gdcm-US-ALOKA-16.dcm", "examples_ybr_color.dcm", "rtplan.dcm"]
)
def test_deid_outputs_have_no_new_dciodvfy_errors(
    tmp_path, key_file, testdata, need_dciodvfy, name
) -> None:
    src = testdata(name)
    out = tmp_path / "out"
    summary = deidentify(
        [src], out, key_file=key_file, reid_table=tmp_path / "r.csv", show_progress=False
    )
    assert summary.count("ok") == 1
    (path,) = list(out.rglob("*.dcm"))
    assert _dciodvfy_errors(path) <= _dciodvfy_errors(src)
