"""End-to-end runs on a tiny store: run directory, prediction aggregation, ensembles,
determinism, multi-view + tabular fusion, survival folds, penalties, tuning, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from hidim.errors import TrainingError
from hidim.training.bundle import load_run
from hidim.training.config import config_from_dict
from hidim.training.module import HidimModule
from hidim.training.train import train


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory: pytest.TempPathFactory, tiny_store: Path) -> Path:
    """`hidim train` through the CLI: 1 epoch of EF regression on the tiny store."""
    from hidim.cli.main import app

    root = tmp_path_factory.mktemp("reg")
    cfg = {
        "data": {
            "store": str(tiny_store),
            "views": ["A4C"],
            "target": "ef",
            "clip_frames": 8,
            "batch_size": 4,
            "group_columns": ["sex"],
        },
        "model": {"backbone": "small3d", "backbone_kwargs": {"widths": [4, 8, 8, 8]}},
        "trainer": {"max_epochs": 1, "loggers": ["csv", "tensorboard"], "progress_bar": False},
    }
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(
        app, ["train", str(root / "cfg.yaml"), "--out", str(root / "run"), "--set", "optim.lr=3e-3"]
    )
    assert result.exit_code == 0, result.output
    assert "r2" in result.output
    return root / "run"


def test_training_run_writes_the_run_directory(regression_run: Path) -> None:
    run = regression_run
    for name in (
        "config.yaml",
        "run.json",
        "metrics.json",
        "preprocessing.json",
        "predictions.parquet",
        "predictions_clips.parquet",
        "checkpoints/model.pt",
        "checkpoints/best.ckpt",
        "logs/metrics.csv",
    ):
        assert (run / name).is_file(), name
    assert list((run / "logs" / "tb").glob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "regression" and metrics["level"] == "study"
    for split in ("val", "test"):
        assert metrics[split]["n"] == 6
        ci = metrics[split]["ci"]["mae"]
        assert ci["low"] <= metrics[split]["metrics"]["mae"] <= ci["high"]
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["command"] == "train" and run_json["config"]["optim"]["lr"] == pytest.approx(
        3e-3
    )
    assert set(run_json["input_hashes"]) == {"manifest.parquet", "labels.parquet"}
    pre = json.loads((run / "preprocessing.json").read_text())
    assert (
        pre["clip_frames"] == 8 and pre["fps"] == [30.0] and pre["group_vocab"]["sex"] == ["F", "M"]
    )


def test_predictions_average_all_clips_of_a_study(regression_run: Path) -> None:
    studies = pd.read_parquet(regression_run / "predictions.parquet")
    clips = pd.read_parquet(regression_run / "predictions_clips.parquet")
    assert len(studies) == 24 and len(clips) == 48  # 12 frames / 8-frame clips → 2 per loop
    assert set(clips["clip_start"]) == {0, 4}  # every frame covered
    mean = clips.groupby("study_uid")["score"].mean()
    np.testing.assert_allclose(
        studies.set_index("study_uid")["score"], mean.loc[studies["study_uid"]], rtol=1e-6
    )
    for col in (
        "patient_key",
        "study_uid",
        "series_key",
        "split",
        "view",
        "target",
        "time",
        "event",
        "age",
        "sex",
        "site",
        "score",
        "value",
        "uncertainty",
        "abstain",
    ):
        assert col in studies, col
    assert studies["abstain"].dtype == bool
    assert (studies["uncertainty_source"] == "clip_sd").all()
    np.testing.assert_allclose(studies["target"], studies["ef"])


def test_predict_cli_and_bundle_scorer(
    regression_run: Path, tiny_store: Path, tmp_path: Path
) -> None:
    from hidim.cli.main import app

    out = tmp_path / "elsewhere" / "preds.parquet"
    result = CliRunner().invoke(
        app, ["predict", str(regression_run), str(tiny_store), "--out", str(out), "--split", "test"]
    )
    assert result.exit_code == 0, result.output
    assert (
        len(pd.read_parquet(out)) == 6
        and (tmp_path / "elsewhere" / "preds_clips.parquet").is_file()
    )
    bundle = load_run(regression_run)
    scorer = bundle.scorer("score")
    x = torch.randn(3, 1, 8, 32, 32, requires_grad=True)
    y = scorer(x)
    assert y.shape == (3,)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert scorer.get_submodule(scorer.gradcam_layer) is bundle.model.backbone.features
    assert bundle.preprocessing["clip_frames"] == 8 and bundle.store_path == tiny_store.resolve()


def test_same_seed_reproduces_the_model(
    regression_run: Path, tiny_store: Path, tmp_path: Path
) -> None:
    cfg = config_from_dict(yaml.safe_load((regression_run / "config.yaml").read_text()))
    train(cfg, tmp_path / "again", evaluate=False)
    a = torch.load(regression_run / "checkpoints" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "again" / "checkpoints" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_an_interrupted_member_resumes_from_its_last_checkpoint(
    base_config, tmp_path: Path
) -> None:
    from lightning.pytorch.callbacks import Callback

    from hidim.training.train import MEMBER_FILE, train_member

    class Count(Callback):
        epochs: list[int] = []

        def on_train_epoch_start(self, trainer, module) -> None:
            Count.epochs.append(trainer.current_epoch)

    cfg = config_from_dict(base_config(trainer={"max_epochs": 2}))
    member = tmp_path / "m"
    train_member(cfg, member, seed=0, max_epochs=1)
    (member / MEMBER_FILE).unlink()  # as if the run died after epoch 1's checkpoint
    info = train_member(cfg, member, seed=0, callbacks=[Count()])
    assert Count.epochs == [1] and info["epochs"] == 2
    run = tmp_path / "r"
    train(config_from_dict(base_config()), run, evaluate=False)
    with pytest.raises(TrainingError, match="already holds a finished run"):
        train(config_from_dict(base_config()), run)
    (run / "run.json").unlink()  # interrupted before the end
    with pytest.raises(TrainingError, match="interrupted run with another config"):
        train(config_from_dict(base_config(optim={"lr": 1e-2})), run)


def test_ensemble_uncertainty_is_positive(tiny_store: Path, base_config, tmp_path: Path) -> None:
    cfg = config_from_dict(
        base_config(data={"threshold": 40, "balanced_batches": "classes"}, task={"head": "binary"})
    )
    result = train(cfg, tmp_path / "ens", ensemble=2)
    assert [m.name for m in result.members] == ["0", "1"]
    studies = pd.read_parquet(tmp_path / "ens" / "predictions.parquet")
    assert (studies["uncertainty_source"] == "ensemble_sd").all()
    assert (studies["uncertainty"] > 0).all()
    assert {"prob_0", "prob_1"} <= set(studies.columns)
    assert set(result.metrics["test"]["ci"]) == {"auroc", "auprc", "brier"}
    assert load_run(tmp_path / "ens").kind == "ensemble"


def test_multiview_tabular_fusion_run(two_view_store: Path, base_config, tmp_path: Path) -> None:
    raw = base_config(
        data={"store": str(two_view_store), "views": ["A4C", "PLAX"], "tabular": ["age", "sex"]},
        model={"multiview": {"pooling": "attention"}, "tabular": True},
    )
    train(config_from_dict(raw), tmp_path / "mv")
    studies = pd.read_parquet(tmp_path / "mv" / "predictions.parquet")
    assert len(studies) == 16 and studies["view"].eq("A4C|PLAX").all()
    bundle = load_run(tmp_path / "mv")
    net = bundle.model
    assert net.multiview is not None and net.tabular is not None
    # a study missing PLAX: the PLAX slot's content cannot change its prediction
    clips = torch.randn(1, 2, 1, 8, 32, 32)
    mask = torch.tensor([[True, False]])
    tab = torch.zeros(1, net.tabular.n_features)
    with torch.no_grad():
        a = net(clips, mask, tab)["z"]
        clips[0, 1] = 99.0
        assert torch.equal(a, net(clips, mask, tab)["z"])


def test_survival_folds_with_event_batches(tiny_store: Path, base_config, tmp_path: Path) -> None:
    pytest.importorskip("hidim.tasks.survival")
    raw = base_config(
        data={"target": None, "balanced_batches": "events", "min_events": 1},
        task={"head": "cox"},
    )
    result = train(config_from_dict(raw), tmp_path / "cox", folds=2)
    assert [m.name for m in result.members] == ["0", "1"]
    curves = pd.read_parquet(tmp_path / "cox" / "survival_curves.parquet")
    assert set(curves.columns) == {"study_uid", "time", "survival"}
    assert ((curves["survival"] >= 0) & (curves["survival"] <= 1)).all()
    assert result.metrics["task"] == "survival" and "cindex" in result.metrics["test"]["metrics"]
    members = json.loads((tmp_path / "cox" / "members.json").read_text())["members"]
    held = [set(m["holdout_patients"]) for m in members]
    assert not held[0] & held[1]


def test_penalties_are_added_to_the_loss(tiny_store: Path, base_config) -> None:
    cfg = config_from_dict(base_config())
    seen: list[set[str]] = []

    def penalty(outputs, batch):
        seen.append(set(outputs) | set(batch))
        return outputs["score"].mean() * 0 + 7.0

    module = HidimModule(config=cfg, in_channels=1, penalties=[penalty])
    batch = {"clip": torch.randn(2, 1, 8, 32, 32), "target": torch.tensor([40.0, 60.0])}
    module.log = lambda *a, **k: None  # no trainer attached
    plain = module.head.loss(module(batch), batch)
    total = module.training_step(batch, 0)
    assert total.item() == pytest.approx(plain.item() + 7.0, rel=1e-5)
    assert {"score", "z", "clip", "target"} <= seen[0]


def test_fairness_section_adds_the_fairness_penalty(base_config) -> None:
    cfg = config_from_dict(
        base_config(
            data={"threshold": 40, "group_columns": ["sex"]},
            task={"head": "binary"},
            fairness={"kind": "demographic_parity", "group": "sex", "weight": 10.0},
        )
    )
    torch.manual_seed(0)
    module = HidimModule(config=cfg, in_channels=1)
    module.log = lambda *a, **k: None
    assert len(module.penalties) == 1
    batch = {
        "clip": torch.cat([torch.zeros(2, 1, 8, 32, 32), torch.ones(2, 1, 8, 32, 32)]),
        "target": torch.tensor([0.0, 1.0, 0.0, 1.0]),
        "group__sex": torch.tensor([0, 0, 1, 1]),
    }
    plain = module.head.loss(module(batch), batch)
    assert module.training_step(batch, 0).item() > plain.item()


def test_evidential_head_trains_through_the_module(base_config) -> None:
    pytest.importorskip("hidim.tasks.evidential")
    cfg = config_from_dict(
        base_config(data={"threshold": 40}, task={"head": "evidential_classification"})
    )
    module = HidimModule(config=cfg, in_channels=1)
    assert module.kind == "binary"
    module.head.set_epoch(0)
    module.log = lambda *a, **k: None
    batch = {"clip": torch.randn(2, 1, 8, 32, 32), "target": torch.tensor([0.0, 1.0])}
    assert torch.isfinite(module.training_step(batch, 0))


def test_tune_runs_prunes_and_resumes(tiny_store: Path, base_config, tmp_path: Path) -> None:
    from hidim.training.tune import tune

    raw = base_config(
        tune={"space": {"optim.lr": {"low": 1e-3, "high": 1e-2, "log": True}}, "startup_trials": 1}
    )
    cfg = config_from_dict(raw)
    first = tune(cfg, tmp_path / "tune", trials=2, raw_config=raw)
    assert first.n_trials == 2 and "optim.lr" in first.best_params
    again = tune(cfg, tmp_path / "tune", trials=3, raw_config=raw)
    assert again.n_trials == 3  # resumed: one more trial, not three
    best = yaml.safe_load((tmp_path / "tune" / "best_config.yaml").read_text())
    assert best["optim"]["lr"] == pytest.approx(again.best_params["optim.lr"])
