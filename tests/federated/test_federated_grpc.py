"""A real federation over Flower's gRPC transport on localhost (one process per site).

Three sites (the store split by its ``site`` label) train 2 rounds; the run directory must
be one ``load_run`` and ``predict`` accept unchanged, with per-site metrics, and the server
must have received nothing but tensors of the model's shapes, counts, scalar metrics and
aggregates — no patient, study or series identifier.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from hidim.federated import sites_from_column, train_federated
from hidim.store import Store
from hidim.training.bundle import load_run
from hidim.training.config import config_from_dict
from hidim.training.predict import predict


@pytest.fixture(scope="module")
def grpc_run(
    fed_store: Path, fed_config: Callable[..., dict], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    raw = fed_config()
    result = train_federated(
        config_from_dict(raw),
        sites_from_column(fed_store, "site"),
        tmp_path_factory.mktemp("grpc") / "run",
        rounds=2,
        local_epochs=1,
        strategy="fedprox",
        mu=0.01,
        transport="grpc",
        show_progress=False,
    )
    return result.run_dir


def test_grpc_federation_writes_a_run_load_run_and_predict_accept(
    grpc_run: Path, fed_store: Path, tmp_path: Path
) -> None:
    fed = json.loads((grpc_run / "federated.json").read_text())
    assert fed["transport"] == "grpc" and fed["strategy"] == "fedprox"
    assert [r["round"] for r in fed["history"]] == [1, 2]
    for entry in fed["history"]:
        assert set(entry["sites"]) == {"east", "north", "south"}
        assert sum(entry["weights"].values()) == pytest.approx(1.0)
    assert {"val_r2", "test_r2", "n_test"} <= set(fed["final"]["north"])
    run = json.loads((grpc_run / "run.json").read_text())
    assert run["command"] == "federated"
    metrics = json.loads((grpc_run / "metrics.json").read_text())
    assert set(metrics["sites"]) == {"east", "north", "south"}
    assert metrics["sites"]["north"]["test"]["n"] > 0
    bundle = load_run(grpc_run)
    assert bundle.members[0].density is not None  # the OOD gate came from site aggregates
    assert float(bundle.members[0].density.reference) > 0
    clip = torch.zeros(2, 1, 8, 32, 32)
    assert bundle.scorer("score")(clip).shape == (2,)
    result = predict(grpc_run, fed_store, out=tmp_path / "preds", show_progress=False)
    assert len(result.studies) == 24 and result.studies["score"].notna().all()


def test_grpc_server_received_only_tensors_counts_and_aggregates(
    grpc_run: Path, fed_store: Path
) -> None:
    fed_text = (grpc_run / "federated.json").read_text()
    fed = json.loads(fed_text)
    state = torch.load(grpc_run / "checkpoints" / "model.pt", weights_only=True)["state_dict"]
    shapes = [list(state[k].shape) for k in fed["layout"]["keys"]]
    kinds = {r["kind"] for r in fed["received"]}
    assert kinds == {"describe", "fit", "evaluate", "finalise", "reference"}
    for rec in fed["received"]:
        if rec["kind"] == "fit":
            assert rec["shapes"] == shapes and rec["dtypes"] == ["float32"]
            assert set(rec["metric_keys"]) <= {"site", "train_loss", "seconds"}
            assert rec["num_examples"] > 0
        elif rec["kind"] == "evaluate":
            assert all(
                re.match(r"^(site|seconds|n_(val|test)|(val|test)_[a-z0-9_]+)$", k)
                for k in rec["metric_keys"]
            )
        elif rec["kind"] in ("finalise", "reference"):
            for name, shape in rec["aggregates"].items():
                assert name.startswith("image_") and len(shape) <= 2
    m = Store(fed_store).manifest
    identifiers = set(m["patient_key"]) | set(m["study_uid"]) | set(m["series_key"])
    leaked = sorted(i for i in identifiers if i in fed_text)
    assert not leaked, f"identifiers reached the server: {leaked[:5]}"
