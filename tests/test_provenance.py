from __future__ import annotations

import json
from pathlib import Path

import pytest

from hidim.errors import HidimError
from hidim.provenance import (
    atomic_write_text,
    file_sha256,
    read_run_json,
    write_run_json,
)


def test_run_json_records_config_versions_seed_and_hashes(tmp_path: Path) -> None:
    data = tmp_path / "x.bin"
    data.write_bytes(b"abc")
    digest = file_sha256(data)
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    write_run_json(tmp_path, command="curate", config={"fps": 30}, seed=7, input_hashes={"in0": digest})
    rec = read_run_json(tmp_path)
    assert rec["command"] == "curate"
    assert rec["config"] == {"fps": 30}
    assert rec["seed"] == 7
    assert rec["input_hashes"] == {"in0": digest}
    assert rec["versions"]["torch"]
    assert rec["versions"]["pydicom"]


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.json"
    atomic_write_text(target, json.dumps({"a": 1}))
    atomic_write_text(target, json.dumps({"a": 2}))
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_read_run_json_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(HidimError, match="run.json"):
        read_run_json(tmp_path)
