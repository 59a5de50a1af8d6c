"""Label import: validation errors name file/column/line; id-map re-identification; unmatched rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from hidim.curate import import_labels
from hidim.errors import LabelError
from hidim.store import ClipDataset, Store


def _keys(store: Path) -> list[str]:
    return sorted(Store(store).manifest["patient_key"].unique())


def _write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


def test_import_by_store_key_with_survival_and_demographics(
    curated_store: Path, tmp_path: Path
) -> None:
    keys = _keys(curated_store)
    rows = "\n".join(
        f"{k},{i % 2},{10 + i},{'yes' if i % 2 else 'no'},{60 + i},{'F' if i % 2 else 'M'}"
        for i, k in enumerate(keys)
    )
    f = _write(
        tmp_path / "y.csv", "patient_key,disease,time,event,age,sex\n" + rows + "\nghost,1,5,1,50,F"
    )
    res = import_labels(curated_store, f)
    assert (res.n_rows, res.n_written, res.unmatched_lines) == (
        len(keys) + 1,
        len(keys),
        [len(keys) + 2],
    )
    labels = Store(curated_store).labels
    assert labels["event"].dtype == "boolean" and labels["time"].min() >= 10
    assert "ghost" not in set(labels["patient_key"])  # unmatched rows are reported, not stored
    ds = ClipDataset(
        curated_store,
        split=None,
        clip_frames=2,
        sampling="centre",
        targets=["disease"],
        tabular=["age", "sex"],
    )
    assert len(ds) == len(Store(curated_store).manifest) and ds.tabular_names == [
        "age",
        "sex=F",
        "sex=M",
    ]
    assert (curated_store / "provenance" / "labels_import" / "run.json").is_file()


def test_id_map_maps_hospital_ids_and_study_uids(curated_store: Path, tmp_path: Path) -> None:
    m = Store(curated_store).manifest
    keys = sorted(m["patient_key"].unique())
    study = m["study_uid"].iloc[0]
    owner = m["patient_key"].iloc[0]
    idmap = tmp_path / "reid.csv"
    lines = ["kind,original,pseudonym"] + [f"patient_id,MRN{i:03d},{k}" for i, k in enumerate(keys)]
    lines.append(f"study_uid,9.9.9.1,{study}")
    _write(idmap, "\n".join(lines))
    mrn_owner = f"MRN{keys.index(owner):03d}"
    f = _write(
        tmp_path / "y.csv",
        f"patient_id,study_uid,lvef\nMRN000,,55\nMRN001,,40\n{mrn_owner},9.9.9.1,61\nMRN999,,10",
    )
    res = import_labels(curated_store, f, id_map=idmap)
    assert res.n_written == 3 and res.unmatched_lines == [5]
    labels = Store(curated_store).labels
    assert set(labels["patient_key"]) <= set(keys) and "MRN000" not in labels.to_string()
    assert labels.loc[labels["study_uid"] == study, "lvef"].item() == 61

    # merge: a second file adds a column without dropping the first
    g = _write(tmp_path / "g.csv", "patient_id,site\nMRN000,A")
    import_labels(curated_store, g, id_map=idmap, merge=True)
    merged = Store(curated_store).labels
    assert {"lvef", "site"} <= set(merged.columns) and merged["lvef"].notna().sum() == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,y\n1,0", r"y\.csv: expected a 'patient_key' .* or 'patient_id'"),
        (
            "patient_key,time,event\na,5,1\nb,0,1",
            r"column 'time' must be a number > 0 .* at line 3",
        ),
        (
            "patient_key,time,event\na,5,maybe",
            r"column 'event' must be true/false .*'maybe' at line 2",
        ),
        ("patient_key,time\na,5", "needs both 'time' and 'event'"),
        ("patient_key,y\na,1\na,0", r"one row per patient_key, got duplicates at line 3"),
        ("patient_key,age\na,250", r"column 'age' must be years in \[0, 130\].* at line 2"),
        ("patient_key,y\n,1", r"column 'patient_key' is empty at line 2"),
        ("patient_key,time,event\na,5,", r"both given or both empty; not so at line 2"),
    ],
)
def test_validation_errors_name_file_column_and_line(
    curated_store: Path, tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(LabelError, match=message):
        import_labels(curated_store, _write(tmp_path / "y.csv", text))


def test_bad_files_and_id_maps(curated_store: Path, tmp_path: Path) -> None:
    with pytest.raises(LabelError, match=r"expected a \.csv, \.tsv or \.parquet"):
        import_labels(curated_store, _write(tmp_path / "y.xlsx", "x"))
    f = _write(tmp_path / "y.csv", "patient_id,y\nMRN1,1")
    with pytest.raises(LabelError, match=r"missing \['pseudonym'\]"):
        import_labels(
            curated_store, f, id_map=_write(tmp_path / "m.csv", "kind,original\npatient_id,MRN1")
        )
    with pytest.raises(LabelError, match="has no 'patient_id' rows"):
        import_labels(
            curated_store,
            f,
            id_map=_write(tmp_path / "m2.csv", "kind,original,pseudonym\nstudy_uid,1,2"),
        )
    with pytest.raises(LabelError, match="maps one original to two pseudonyms"):
        import_labels(
            curated_store,
            f,
            id_map=_write(
                tmp_path / "m3.csv", "kind,original,pseudonym\npatient_id,A,x\npatient_id,A,y"
            ),
        )
    pq = tmp_path / "y.parquet"
    pd.DataFrame({"patient_key": [_keys(curated_store)[0], "nobody"], "y": [1, 0]}).to_parquet(pq)
    assert import_labels(curated_store, pq).unmatched_lines == [2]  # parquet: 1-based rows


def test_cli_labels_import_and_split(curated_store: Path, tmp_path: Path) -> None:
    from hidim.cli.main import app

    keys = _keys(curated_store)
    f = _write(
        tmp_path / "y.csv",
        "patient_key,y\n" + "\n".join(f"{k},{i % 2}" for i, k in enumerate(keys)) + "\nzz,1",
    )
    out = CliRunner().invoke(
        app, ["labels", "import", str(curated_store), str(f)], env={"COLUMNS": "200"}
    )
    assert out.exit_code == 0, out.output
    assert f"{len(keys)} of {len(keys) + 1} rows written" in out.output and "lines [" in out.output
    bad = CliRunner().invoke(
        app, ["labels", "import", str(curated_store), str(_write(tmp_path / "b.csv", "x\n1"))]
    )
    assert bad.exit_code == 2 and "patient_key" in bad.output
    split = CliRunner().invoke(
        app, ["labels", "split", str(curated_store), "--stratify", "y", "--seed", "1"]
    )
    assert split.exit_code == 0, split.output
    m = Store(curated_store).manifest
    assert m.groupby("patient_key")["split"].nunique().max() == 1
