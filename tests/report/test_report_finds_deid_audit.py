"""`hidim curate` records the de-identification audit of a released input folder, so
`hidim report` finds the de-id summary without being told where it is."""

from __future__ import annotations

from pathlib import Path

from hidim.curate.pipeline import curate
from hidim.deidentify.keys import create_key
from hidim.deidentify.pipeline import deidentify
from hidim.provenance import write_run_json
from hidim.report.collect import locate_deid_audit


def test_curate_records_the_release_audit_and_report_finds_it(tmp_path: Path, testdata) -> None:
    key = create_key(tmp_path / "secrets" / "project.key")
    release = tmp_path / "release"
    deidentify(
        [testdata("CT_small.dcm")],
        release,
        key_file=key,
        reid_table=tmp_path / "secrets" / "reid.csv",
        show_progress=False,
    )
    store = tmp_path / "store"
    curate(release, store, show_progress=False)
    assert locate_deid_audit(store) == (release / "deid_audit.parquet").resolve()


def test_no_audit_is_recorded_for_plain_folders(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    write_run_json(store, command="curate", config={}, extra={"deid_audits": []})
    assert locate_deid_audit(store) is None
