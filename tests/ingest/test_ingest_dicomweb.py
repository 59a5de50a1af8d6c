"""DICOMweb search / pull / push against a real Orthanc + DICOMweb plugin on this machine.

The module starts one Orthanc (temporary storage, free port, no DICOM port) and uploads real
files through its REST API: pydicom's test files in five transfer syntaxes (explicit and
implicit VR, JPEG 2000 lossless and lossy, RLE) and a phantom echo cine (multi-frame US with
PHI in its header). Everything hidim does then goes over HTTP to that server.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from pydicom import dcmread
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from hidim.errors import ConfigError, IngestError
from hidim.ingest import dicomweb_pull, scan
from hidim.ingest.dicomweb import (
    PULL_LEDGER,
    PUSH_LEDGER,
    DicomWebAuth,
    pull,
    push,
    search_studies,
)
from hidim.ingest.orthanc import OrthancServer, find_orthanc, start_orthanc

SOURCES = (
    "CT_small.dcm",  # Explicit VR Little Endian
    "MR_small_implicit.dcm",  # Implicit VR Little Endian
    "US1_J2KR.dcm",  # JPEG 2000 lossless, US
    "US1_UNCR.dcm",  # same US study, uncompressed
    "JPEG2000.dcm",  # JPEG 2000 (lossy)
    "emri_small_RLE.dcm",  # RLE, multi-frame MR (already marked de-identified)
)


@dataclass
class Pacs:
    server: OrthancServer
    originals: dict[str, Path]  # SOPInstanceUID -> source file
    echo: Path  # the phantom echo cine (identified)

    @property
    def url(self) -> str:
        return self.server.dicomweb_url

    def study_of(self, sop: str) -> str:
        return str(dcmread(self.originals[sop], stop_before_pixels=True).StudyInstanceUID)

    @property
    def studies(self) -> list[str]:
        return sorted({self.study_of(sop) for sop in self.originals})


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, testdata) -> Iterator[Pacs]:
    try:
        find_orthanc()
    except IngestError as exc:
        pytest.skip(f"no local Orthanc + DICOMweb plugin: {exc}")
    from hidim.phantom import PhantomConfig, generate

    phantom = generate(
        tmp_path_factory.mktemp("phantom") / "ph",
        PhantomConfig(patients=1, size=32, views=("A4C",), transfer_syntax="rle", seed=5),
    )
    echo = next(phantom.dicom_dir.rglob("*.dcm"))
    files = [testdata(name) for name in SOURCES] + [echo]
    with ExitStack() as stack:
        try:
            server = stack.enter_context(
                start_orthanc(tmp_path_factory.mktemp("orthanc"), timeout_s=60)
            )
        except IngestError as exc:  # the message carries the end of Orthanc's log
            pytest.fail(f"Orthanc did not start: {exc}")
        originals = {}
        for path in files:
            server.upload(path)
            originals[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
        yield Pacs(server=server, originals=originals, echo=echo)


@pytest.fixture(scope="module")
def pulled(pacs: Pacs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pulled") / "raw"
    result = pull(pacs.url, out, study_uids=pacs.studies, workers=2, show_progress=False)
    problems = [r for r in result.rows if r["status"] != "ok"]
    assert result.all_ok, f"{problems}\nOrthanc log:\n{pacs.server.log_tail()}"
    return out


def _path(out: Path, ds) -> Path:
    return out / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"


def assert_same_instance(got_path: Path, want_path: Path) -> None:
    got, want = dcmread(got_path), dcmread(want_path)
    assert got.file_meta.TransferSyntaxUID == want.file_meta.TransferSyntaxUID
    assert (
        got.preamble is not None and got.file_meta.MediaStorageSOPInstanceUID == want.SOPInstanceUID
    )
    assert list(got.keys()) == list(want.keys())
    for element in want:
        assert got[element.tag] == element, element.keyword
    if want.file_meta.TransferSyntaxUID.is_compressed:
        np.testing.assert_array_equal(got.pixel_array, want.pixel_array)


# --------------------------------------------------------------------------- search


def test_search_lists_studies_with_their_modalities(pacs: Pacs):
    found = {s.study_uid: s for s in search_studies(pacs.url, limit=None)}
    assert set(pacs.studies) <= set(found)
    for path in pacs.originals.values():
        ds = dcmread(path, stop_before_pixels=True)
        summary = found[ds.StudyInstanceUID]
        assert ds.Modality in summary.modalities
        assert summary.study_date == ds.StudyDate
    us1 = found[
        pacs.study_of(next(s for s, p in pacs.originals.items() if p.name == "US1_J2KR.dcm"))
    ]
    assert (us1.n_series, us1.n_instances) == (1, 2)


def test_search_filters_by_modality_and_limit(pacs: Pacs):
    us = search_studies(pacs.url, filters={"ModalitiesInStudy": "US"}, limit=None)
    expected = {
        pacs.study_of(s)
        for s, p in pacs.originals.items()
        if p.name.startswith("US1") or p == pacs.echo
    }
    assert {s.study_uid for s in us} == expected
    assert all("US" in s.modalities for s in us)
    assert len(search_studies(pacs.url, limit=1)) == 1


def test_bad_filters_and_urls_are_refused_before_any_request():
    with pytest.raises(ConfigError, match="did you mean 'PatientID'"):
        search_studies("http://127.0.0.1:9/dicom-web", filters={"PatientId": "1"})
    with pytest.raises(ConfigError, match="YYYYMMDD"):
        search_studies("http://127.0.0.1:9/dicom-web", filters={"StudyDate": "2020"})
    with pytest.raises(ConfigError, match="no credentials inside the URL"):
        search_studies("http://user:secret@127.0.0.1:9/dicom-web")
    with pytest.raises(ConfigError, match="CA bundle file"):
        DicomWebAuth(verify="/nonexistent/ca.pem")
    with pytest.raises(ConfigError, match="user/password\\) or a bearer token"):
        DicomWebAuth(username="a", password="b", token="t")


# --------------------------------------------------------------------------- pull


def test_pull_keeps_every_dataset_and_its_transfer_syntax(pacs: Pacs, pulled: Path):
    for path in pacs.originals.values():
        ds = dcmread(path, stop_before_pixels=True)
        assert_same_instance(_path(pulled, ds), path)
        # Orthanc stores files as received and nothing is transcoded: identical bytes
        assert _path(pulled, ds).read_bytes() == path.read_bytes(), path.name
    syntaxes = {
        dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID.name
        for p in pulled.rglob("*.dcm")
    }
    assert {
        "JPEG 2000 Image Compression (Lossless Only)",
        "RLE Lossless",
        "Implicit VR Little Endian",
    } <= syntaxes
    ledger = pd.read_parquet(pulled / PULL_LEDGER)
    assert len(ledger) == len(pacs.originals) and set(ledger.status) == {"ok"}
    assert set(ledger.sop_uid) == set(pacs.originals)
    assert not list(pulled.rglob("*.tmp")) and not list(pulled.rglob(".*"))


def test_pull_logs_and_ledger_hold_no_patient_identity(pacs: Pacs, tmp_path, caplog):
    echo = dcmread(pacs.echo, stop_before_pixels=True)
    name, pid = str(echo.PatientName), str(echo.PatientID)
    caplog.set_level("DEBUG")
    out = tmp_path / "by_patient"
    result = pull(pacs.url, out, filters={"PatientID": pid}, show_progress=False)
    assert result.count("ok") == 1 and result.rows[0]["sop_uid"] == echo.SOPInstanceUID
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["filters"] == {"PatientID": "<redacted>"}
    for blob in (
        (out / PULL_LEDGER).read_bytes(),
        (out / "run.json").read_bytes(),
        caplog.text.encode(),
    ):
        assert pid.encode() not in blob
        assert name.split("^")[0].encode() not in blob


def test_pull_again_skips_everything(pacs: Pacs, pulled: Path):
    before = {p: p.stat().st_mtime_ns for p in pulled.rglob("*.dcm")}
    result = pull(pacs.url, pulled, study_uids=pacs.studies, show_progress=False)
    assert result.count("skipped") == len(pacs.originals) == len(result.rows)
    assert {p: p.stat().st_mtime_ns for p in pulled.rglob("*.dcm")} == before


def test_pull_resumes_a_partly_pulled_series(pacs: Pacs, pulled: Path, tmp_path):
    out = tmp_path / "partial"
    shutil.copytree(pulled, out)
    j2k = next(p for p in pacs.originals.values() if p.name == "US1_J2KR.dcm")
    target = _path(out, dcmread(j2k, stop_before_pixels=True))
    target.unlink()
    result = pull(pacs.url, out, study_uids=pacs.studies, modalities=["us"], show_progress=False)
    by_status = {r["sop_uid"]: r["status"] for r in result.rows if r["sop_uid"]}
    assert by_status.pop(dcmread(j2k, stop_before_pixels=True).SOPInstanceUID) == "ok"
    assert set(by_status.values()) == {"skipped"} and len(by_status) == 2  # US1_UNCR + echo
    no_us = [r for r in result.rows if not r["sop_uid"]]  # CT, MR, NM studies
    assert len(no_us) == len(pacs.studies) - 2
    assert all(r["status"] == "skipped" and "no US series" in r["reason"] for r in no_us)
    assert_same_instance(target, j2k)


def test_instance_deleted_between_listing_and_retrieval_is_a_failed_row(
    pacs: Pacs, testdata, tmp_path, monkeypatch
):
    study, series = generate_uid(), generate_uid()
    ids, sops = [], []
    for i in range(3):
        ds = dcmread(testdata("CT_small.dcm"))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.save_as(tmp_path / f"{i}.dcm")
        ids.append(pacs.server.upload(tmp_path / f"{i}.dcm"))
        sops.append(ds.SOPInstanceUID)
    listed = dicomweb_pull._list_instances

    def list_then_delete(client, study_uid, modalities):
        found = listed(client, study_uid, modalities)
        if study_uid == study:  # a real deletion on the server, after QIDO-RS listed it
            pacs.server.delete_instance(ids[1])
        return found

    monkeypatch.setattr(dicomweb_pull, "_list_instances", list_then_delete)
    missing = "1.2.826.0.1.3680043.8.498.1"  # a study the server never had
    try:
        result = pull(pacs.url, tmp_path / "out", study_uids=[study, missing], show_progress=False)
    finally:
        for orthanc_id in (ids[0], ids[2]):
            pacs.server.delete_instance(orthanc_id)
    rows = {r["sop_uid"]: r for r in result.rows}
    assert rows[sops[1]]["status"] == "failed" and "404" in rows[sops[1]]["reason"]
    assert rows[sops[0]]["status"] == rows[sops[2]]["status"] == "ok"
    assert (tmp_path / "out" / rows[sops[0]]["path"]).is_file()
    assert rows[None]["study_uid"] == missing and "not on the server" in rows[None]["reason"]
    ledger = pd.read_parquet(tmp_path / "out" / PULL_LEDGER)
    assert sorted(ledger.status) == ["failed", "failed", "ok", "ok"]
    assert not result.all_ok


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_a_hostile_uid_from_the_server_never_becomes_a_path(pacs: Pacs, testdata, tmp_path):
    ds = dcmread(testdata("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "../../../escaped"
    ds.save_as(tmp_path / "hostile.dcm")  # Orthanc stores it as it is
    orthanc_id = pacs.server.upload(tmp_path / "hostile.dcm")
    try:
        out = tmp_path / "a" / "b" / "out"
        result = pull(pacs.url, out, study_uids=[ds.StudyInstanceUID], show_progress=False)
    finally:
        pacs.server.delete_instance(orthanc_id)
    [row] = result.rows
    assert row["status"] == "failed" and "malformed UID" in row["reason"]
    assert not list(tmp_path.rglob("escaped*"))


def test_server_problems_raise_ingest_errors_naming_the_url(pacs: Pacs, tmp_path):
    dead = "http://127.0.0.1:9/dicom-web"
    with pytest.raises(
        IngestError, match=r"DICOMweb server at http://127\.0\.0\.1:9/dicom-web.*unreachable"
    ):
        pull(dead, tmp_path / "x", study_uids=["1.2.3"], show_progress=False)
    with pytest.raises(IngestError, match=f"expected a DICOMweb root at {pacs.server.url}"):
        search_studies(pacs.server.url)  # Orthanc's REST root, not its DICOMweb root
    with pytest.raises(ConfigError, match="study_uids or filters, got neither"):
        pull(pacs.url, tmp_path / "x", show_progress=False)
    assert not (tmp_path / "x").exists()


def test_basic_authentication(tmp_path, testdata):
    try:
        find_orthanc()
    except IngestError as exc:
        pytest.skip(str(exc))
    with start_orthanc(tmp_path / "pacs", users={"alice": "s3cret"}) as server:
        server.upload(testdata("CT_small.dcm"))
        with pytest.raises(IngestError, match=r"refused access \(HTTP 401\).*--user"):
            search_studies(server.dicomweb_url)
        with pytest.raises(IngestError, match="HTTP 401"):
            search_studies(server.dicomweb_url, auth=DicomWebAuth(username="alice", password="no"))
        auth = DicomWebAuth(username="alice", password="s3cret")
        assert "s3cret" not in repr(auth)
        assert [s.modalities for s in search_studies(server.dicomweb_url, auth=auth)] == [("CT",)]
        result = pull(
            server.dicomweb_url, tmp_path / "out", filters={}, auth=auth, show_progress=False
        )
        assert result.count("ok") == 1


def test_server_dying_mid_pull_fails_fast_and_a_rerun_resumes(tmp_path, testdata, monkeypatch):
    try:
        find_orthanc()
    except IngestError as exc:
        pytest.skip(str(exc))
    study = generate_uid()
    with start_orthanc(tmp_path / "pacs") as server:
        for i in range(6):  # six series of one instance each
            ds = dcmread(testdata("CT_small.dcm"))
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(tmp_path / f"{i}.dcm")
            server.upload(tmp_path / f"{i}.dcm")
        listed = dicomweb_pull._list_instances

        def list_then_crash(client, study_uid, modalities):
            found = listed(client, study_uid, modalities)
            server.process.kill()  # the PACS goes away after QIDO-RS answered
            server.process.wait()
            return found

        monkeypatch.setattr(dicomweb_pull, "_list_instances", list_then_crash)
        out = tmp_path / "out"
        result = pull(server.dicomweb_url, out, study_uids=[study], workers=1, show_progress=False)
    reasons = [r["reason"] for r in result.rows]
    assert len(reasons) == 6 and result.count("failed") == 6
    assert sum("ConnectionError" in r for r in reasons) == 3  # then the breaker trips
    assert sum("stopped answering; re-run" in r for r in reasons) == 3

    monkeypatch.undo()
    with start_orthanc(tmp_path / "pacs") as server:  # back up, same storage
        again = pull(server.dicomweb_url, out, study_uids=[study], show_progress=False)
    assert again.count("ok") == 6 and again.all_ok


# --------------------------------------------------------------------------- push


def test_push_refuses_identified_files(pacs: Pacs, pulled: Path, tmp_path):
    before = len(pacs.server.instance_ids())
    result = push(
        pacs.url, pulled, skip_existing=False, ledger_dir=tmp_path / "log", show_progress=False
    )
    assert len(pacs.server.instance_ids()) == before
    by_name = {Path(r["path"]).name: r for r in result.rows}
    emri = next(s for s, p in pacs.originals.items() if p.name == "emri_small_RLE.dcm")
    for sop in pacs.originals:
        row = by_name[f"{sop}.dcm"]
        if sop == emri:  # marked PatientIdentityRemoved=YES in pydicom's test file
            assert row["status"] == "ok"
        else:
            assert row["status"] == "refused" and "PatientIdentityRemoved" in row["reason"]
    assert by_name[PULL_LEDGER]["status"] == by_name["run.json"]["status"] == "skipped"
    assert not result.all_ok and (tmp_path / "log" / PUSH_LEDGER).is_file()


def test_push_a_deidentified_release_and_pull_it_back(pacs: Pacs, pulled: Path, tmp_path):
    from hidim.deidentify.keys import create_key
    from hidim.deidentify.pipeline import DeidOptions, deidentify
    from hidim.deidentify.pixels import PixelPolicy

    key = create_key(tmp_path / "project.key")
    release = tmp_path / "release"
    summary = deidentify(  # the whole pulled folder: its ledger and run.json are skipped
        [pulled],
        release,
        key_file=key,
        reid_table=tmp_path / "reid.csv",
        options=DeidOptions(pixels=PixelPolicy(mode="none")),
        show_progress=False,
    )
    released = sorted(release.rglob("*.dcm"))
    assert summary.all_ok and len(released) == summary.count("ok") == len(pacs.originals)
    assert summary.count("skipped") == 2  # pull_ledger.parquet and run.json: not DICOM
    before = len(pacs.server.instance_ids())

    result = push(pacs.url, release, batch_size=3, show_progress=False)
    assert result.count("ok") == len(released) and result.count("failed") == 0
    assert len(pacs.server.instance_ids()) == before + len(released)

    back = tmp_path / "back"
    studies = sorted({str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in released})
    assert pull(pacs.url, back, study_uids=studies, show_progress=False).all_ok
    for path in released:
        assert_same_instance(_path(back, dcmread(path, stop_before_pixels=True)), path)

    again = push(pacs.url, release, show_progress=False)
    assert again.count("skipped") == len(again.rows) and again.all_ok


# --------------------------------------------------------------------------- downstream, CLI


def test_pulled_folder_is_ingestible(pacs: Pacs, pulled: Path):
    from hidim.ingest import read_series

    result = scan(pulled)
    ok = {Path(e.path).stem for e in result.ledger if e.status == "ok"}
    assert ok == set(pacs.originals)
    assert {Path(e.path).name for e in result.ledger if e.status != "ok"} == {
        PULL_LEDGER,
        "run.json",
    }
    assert all(e.status == "skipped" for e in result.ledger if e.status != "ok")
    echo_sop = str(dcmread(pacs.echo, stop_before_pixels=True).SOPInstanceUID)
    echo = next(s for s in result.series if echo_sop in {f.stem for f in s.files})
    array, _ = read_series(echo)
    assert array.ndim == 4 and array.shape[1] == echo.n_frames > 1


def test_cli_pacs_commands(pacs: Pacs, pulled: Path, tmp_path):
    from hidim.cli.dicomweb import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    help_text = runner.invoke(app, ["pacs", "--help"]).output
    assert "DICOMweb" in help_text and "pull" in help_text and "push" in help_text

    n_us = len(search_studies(pacs.url, filters={"ModalitiesInStudy": "US"}, limit=None))
    found = runner.invoke(app, ["pacs", "search", pacs.url, "--modality", "US"])
    assert found.exit_code == 0, found.output
    assert f"{n_us} studies" in found.output

    out = tmp_path / "cli_pull"
    study = pacs.study_of(next(iter(pacs.originals)))
    done = runner.invoke(app, ["pacs", "pull", pacs.url, str(out), "--study", study, "-j", "1"])
    assert done.exit_code == 0, done.output
    assert (out / PULL_LEDGER).is_file() and list(out.rglob("*.dcm"))

    vague = runner.invoke(app, ["pacs", "pull", pacs.url, str(out)])
    assert vague.exit_code == 2 and "--study" in vague.output

    refused = runner.invoke(app, ["pacs", "push", pacs.url, str(out)])
    assert refused.exit_code == 1 and "refused" in refused.output
    assert (tmp_path / "cli_pull_push" / PUSH_LEDGER).is_file()

    dead = runner.invoke(app, ["pacs", "search", "http://127.0.0.1:9/dicom-web"])
    assert dead.exit_code == 2 and "unreachable" in dead.output
