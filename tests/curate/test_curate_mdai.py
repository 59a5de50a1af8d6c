"""MD.ai JSON export import: geometry, frames (incl. fps resampling), UID mapping, unmatched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hidim.curate import import_mdai
from hidim.errors import LabelError
from hidim.store import Store


def _export(annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """An export with the documented structure: labelGroups[].labels[], datasets[].annotations[]."""
    return {
        "id": "proj_x",
        "labelGroups": [
            {
                "id": "G_1",
                "name": "Default group",
                "labels": [
                    {
                        "id": "L_box",
                        "name": "Mass",
                        "annotationMode": "bbox",
                        "scope": "INSTANCE",
                        "type": "local",
                    },
                    {
                        "id": "L_lv",
                        "name": "LV endocardium",
                        "annotationMode": "polygon",
                        "scope": "INSTANCE",
                        "type": "local",
                    },
                    {
                        "id": "L_mask",
                        "name": "Myocardium",
                        "annotationMode": "mask",
                        "scope": "INSTANCE",
                        "type": "local",
                    },
                    {
                        "id": "L_view",
                        "name": "A4C",
                        "annotationMode": None,
                        "scope": "SERIES",
                        "type": "global",
                    },
                    {
                        "id": "L_dx",
                        "name": "Cardiomyopathy",
                        "annotationMode": None,
                        "scope": "STUDY",
                        "type": "global",
                    },
                ],
            },
        ],
        "datasets": [{"id": "D_1", "name": "Echo", "studies": [], "annotations": annotations}],
    }


def _units(store: Path) -> dict[str, pd.Series]:
    m = Store(store).manifest
    return {
        "ct": m[m["layout"] == "volume"].iloc[0],
        "mr": m[m["modality"] == "MR"].iloc[0],
        "us": m[m["modality"] == "US"].iloc[0],
    }


def _ann(
    i: int,
    unit: pd.Series,
    label: str,
    data: Any,
    *,
    sop: str | None = "first",
    frame: int | None = None,
    series: bool = True,
) -> dict[str, Any]:
    sops = json.loads(unit["sop_uids"])
    return {
        "id": f"A_{i}",
        "labelId": label,
        "StudyInstanceUID": unit["study_uid"],
        "SeriesInstanceUID": unit["series_uid"] if series else None,
        "SOPInstanceUID": (sops[0] if sop == "first" else sop) if series else None,
        "frameNumber": frame,
        "data": data,
        "createdById": "U_1",
        "createdAt": "2024-01-02T03:04:05Z",
    }


def test_import_maps_every_geometry_and_frame(curated_store: Path, tmp_path: Path) -> None:
    u = _units(curated_store)
    ct_sops = json.loads(u["ct"]["sop_uids"])
    anns = [
        _ann(1, u["ct"], "L_lv", {"vertices": [[1, 2], [5, 2], [5, 9]]}, sop=ct_sops[2]),
        _ann(2, u["mr"], "L_box", {"x": 10, "y": 12, "width": 8, "height": 4}, frame=4),
        _ann(
            3,
            u["us"],
            "L_mask",
            {"foreground": [[[3, 3], [20, 3], [20, 30]]], "background": []},
            frame=10,
        ),
        _ann(4, u["us"], "L_view", None, sop=None),
        _ann(5, u["us"], "L_dx", None, series=False),
        _ann(6, u["ct"], "L_box", {"x": 0, "y": 0, "width": 1, "height": 1}, sop="9.9.9.9"),
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(_export(anns)))
    res = import_mdai(curated_store, path)
    assert (res.n_annotations, res.n_written, res.unmatched_ids) == (6, 5, ["A_6"])
    a = Store(curated_store).annotations.set_index("annotation_id")
    assert a.loc["A_1", "series_key"] == u["ct"]["series_key"] and a.loc["A_1", "frame"] == 2
    assert a.loc["A_1", "geometry"] == "polygon" and a.loc[
        "A_1", ["x", "y", "width", "height"]
    ].tolist() == [1, 2, 4, 7]
    assert (
        a.loc["A_2", "geometry"] == "box"
        and a.loc["A_2", "frame"] == 4
        and a.loc["A_2", "frame_stored"] == 4
    )
    # the US cine was resampled 30 → 15 fps: source frame 10 is stored frame 5
    assert (
        a.loc["A_3", "geometry"] == "mask"
        and a.loc["A_3", "frame"] == 10
        and a.loc["A_3", "frame_stored"] == 5
    )
    assert a.loc["A_4", "geometry"] == "global" and a.loc["A_4", "label_name"] == "A4C"
    assert pd.isna(a.loc["A_4", "frame"]) and a.loc["A_4", "series_key"] == u["us"]["series_key"]
    assert pd.isna(a.loc["A_5", "series_key"]) and a.loc["A_5", "study_uid"] == u["us"]["study_uid"]
    assert a.loc["A_5", "label_group"] == "Default group" and a.loc["A_5", "scope"] == "STUDY"
    assert json.loads(a.loc["A_3", "data"])["foreground"][0][1] == [20, 3]
    assert (a["patient_key"].notna()).all()


def test_uids_are_mapped_through_the_reidentification_table(
    curated_store: Path, tmp_path: Path
) -> None:
    u = _units(curated_store)["mr"]
    sop = json.loads(u["sop_uids"])[0]
    # the export was made on the hospital's originals: other UIDs, mapped by `hidim deid`'s table
    ann = {
        "id": "A_9",
        "labelId": "L_box",
        "StudyInstanceUID": "1.2.3.100",
        "SeriesInstanceUID": "1.2.3.200",
        "SOPInstanceUID": "1.2.3.300",
        "frameNumber": 7,
        "data": {"x": 1, "y": 1, "width": 2, "height": 2},
    }
    (tmp_path / "e.json").write_text(json.dumps(_export([ann])))
    (tmp_path / "reid.csv").write_text(
        "kind,original,pseudonym\n"
        f"study_uid,1.2.3.100,{u['study_uid']}\nseries_uid,1.2.3.200,{u['series_uid']}\nsop_uid,1.2.3.300,{sop}\n"
    )
    assert import_mdai(curated_store, tmp_path / "e.json").unmatched_ids == [
        "A_9"
    ]  # originals: no match
    res = import_mdai(curated_store, tmp_path / "e.json", id_map=tmp_path / "reid.csv")
    assert res.n_written == 1
    row = Store(curated_store).annotations.iloc[0]
    assert row["series_key"] == u["series_key"] and row["frame"] == 7
    assert "1.2.3." not in Store(curated_store).annotations.to_string()  # no original UIDs stored


def test_bad_exports_are_explained(curated_store: Path, tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(LabelError, match=r"a\.json: expected an MD\.ai JSON export"):
        import_mdai(curated_store, tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"labels": []}))
    with pytest.raises(LabelError, match="with a 'datasets' list"):
        import_mdai(curated_store, tmp_path / "b.json")


def test_cli_labels_import_detects_an_mdai_export(curated_store: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hidim.cli.main import app

    u = _units(curated_store)
    path = tmp_path / "export.json"
    path.write_text(
        json.dumps(
            _export([_ann(1, u["mr"], "L_box", {"x": 1, "y": 2, "width": 3, "height": 4}, frame=0)])
        )
    )
    out = CliRunner().invoke(
        app, ["labels", "import", str(curated_store), str(path)], env={"COLUMNS": "200"}
    )
    assert out.exit_code == 0, out.output
    assert "annotations: 1 written from 1 (box: 1)" in out.output
