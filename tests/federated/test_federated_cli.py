"""``hidim federated*`` commands: help text, argument errors, a tiny in-process run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
import typer
import yaml
from typer.testing import CliRunner

from hidim.cli import federated as cli
from hidim.training.bundle import load_run


def _app() -> typer.Typer:
    app = typer.Typer()
    cli.register(app)
    return app


def test_help_explains_the_commands() -> None:
    runner = CliRunner()
    out = runner.invoke(_app(), ["federated", "--help"], terminal_width=200).output
    for text in (
        "--site-store",
        "--split-by",
        "--rounds",
        "--local-epochs",
        "fedprox",
        "inprocess",
    ):
        assert text in out
    assert "never share images" in out
    server = runner.invoke(_app(), ["federated-server", "--help"], terminal_width=200).output
    assert "--ca-cert" in server and "--address" in server
    client = runner.invoke(_app(), ["federated-client", "--help"], terminal_width=200).output
    assert "--root-cert" in client and "never leave this machine" in client


def test_sites_must_be_given_one_way(tmp_path: Path, fed_config: Callable[..., dict]) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(fed_config()))
    res = CliRunner().invoke(
        _app(), ["federated", str(cfg), "--out", str(tmp_path / "r"), "--rounds", "1"]
    )
    assert res.exit_code != 0 and "--split-by" in res.output
    res = CliRunner().invoke(
        _app(),
        ["federated", str(cfg), "--out", str(tmp_path / "r"), "--rounds", "1", "--site-store", "x"],
    )
    assert res.exit_code != 0 and "NAME=STORE" in res.output


def test_cli_runs_a_simulated_federation(tmp_path: Path, fed_config: Callable[..., dict]) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(fed_config(uncertainty={"ood_gate": False})))
    out = tmp_path / "run"
    res = CliRunner().invoke(
        _app(),
        [
            "federated",
            str(cfg),
            "--out",
            str(out),
            "--split-by",
            "site",
            "--rounds",
            "2",
            "--local-epochs",
            "1",
            "--bn",
            "local",
            "--transport",
            "inprocess",
        ],
        terminal_width=200,
    )
    assert res.exit_code == 0, res.output
    assert "round 2: val r2 per site" in res.output and "pooled test r2" in res.output
    fed = json.loads((out / "federated.json").read_text())
    assert fed["bn"] == "local" and len(fed["history"]) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["site_models"].startswith("personal")
    north = load_run(out / "sites" / "north")  # FedBN: the site's personal model
    a = dict(north.model.named_buffers())
    b = dict(load_run(out).model.named_buffers())
    key = next(k for k in a if k.endswith("running_mean"))
    assert not torch.equal(a[key], b[key])
    res = CliRunner().invoke(
        _app(),
        [
            "federated",
            str(cfg),
            "--out",
            str(out),
            "--split-by",
            "site",
            "--rounds",
            "1",
            "--transport",
            "inprocess",
        ],
    )
    assert res.exit_code == 2 and "already holds a run" in res.output
