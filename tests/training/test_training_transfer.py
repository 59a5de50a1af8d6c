"""Supervised pretraining: ``model.init_from`` copies another run's image encoder (shape-
checked), ``model.freeze_encoder`` keeps it (and its batch-norm statistics) fixed, and the
source is recorded in the run's provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hidim.errors import TrainingError
from hidim.training.bundle import load_run
from hidim.training.config import config_from_dict, load_config
from hidim.training.module import HidimModule
from hidim.training.train import train
from hidim.training.transfer import init_encoder_from, resolve_model_file


@pytest.fixture(scope="module")
def ef_run(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch EF regression run (the 'pretraining')."""
    raw = {
        "data": {"store": str(tiny_store), "views": ["A4C"], "target": "ef", "clip_frames": 8},
        "model": {"backbone": "small3d", "backbone_kwargs": {"widths": [4, 8, 8, 8]}},
        "task": {"head": "regression"},
        "trainer": {"max_epochs": 1, "loggers": [], "progress_bar": False},
    }
    run = tmp_path_factory.mktemp("pre") / "ef"
    train(config_from_dict(raw), run, evaluate=False)
    return run


def _encoder(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items() if k.startswith("backbone.")}


def _cox(base_config, **model) -> dict:
    return base_config(
        data={"target": None, "balanced_batches": "events", "min_events": 2},
        model=model,
        task={"head": "cox"},
        trainer={"max_epochs": 2},
    )


def test_init_copies_the_encoder_only(ef_run: Path, base_config) -> None:
    source = _encoder(load_run(ef_run).model)
    module = HidimModule(config=config_from_dict(_cox(base_config)), in_channels=1)
    head_before = {k: v.clone() for k, v in module.net.head.state_dict().items()}
    info = init_encoder_from(module.net, ef_run)
    after = _encoder(module.net)
    assert after.keys() == source.keys() and len(source) == info["tensors"] > 10
    assert all(torch.equal(after[k], source[k]) for k in source)  # incl. BN running stats
    assert all(torch.equal(module.net.head.state_dict()[k], v) for k, v in head_before.items())
    assert info["task"] == "regression" and info["target"] == "ef"
    assert len(info["sha256"]) == 64 and info["file"].endswith("model.pt")


def test_frozen_encoder_stays_pretrained_and_is_recorded(
    ef_run: Path, base_config, tmp_path: Path
) -> None:
    source = _encoder(load_run(ef_run).model)
    cfg = config_from_dict(_cox(base_config, init_from=str(ef_run), freeze_encoder=True))
    run = tmp_path / "cox"
    train(cfg, run)
    trained = load_run(run).model
    assert all(torch.equal(_encoder(trained)[k], source[k]) for k in source)
    pre = json.loads((run / "preprocessing.json").read_text())
    assert pre["init_from"]["task"] == "regression"
    assert pre["init_from"]["sha256"] and pre["init_from"]["tensors"] == len(source)


def test_fine_tuned_encoder_moves_away_from_the_pretrained_one(
    ef_run: Path, base_config, tmp_path: Path
) -> None:
    source = _encoder(load_run(ef_run).model)
    run = tmp_path / "cox"
    train(config_from_dict(_cox(base_config, init_from=str(ef_run))), run)
    tuned = _encoder(load_run(run).model)
    conv = [k for k in source if k.endswith("weight") and source[k].ndim == 5]
    assert any(not torch.equal(tuned[k], source[k]) for k in conv)


def test_mismatched_encoder_names_the_fix(ef_run: Path, base_config) -> None:
    cfg = config_from_dict(
        _cox(base_config, backbone_kwargs={"widths": [4, 8, 8, 16]}, init_from=str(ef_run))
    )
    module = HidimModule(config=cfg, in_channels=1)
    with pytest.raises(TrainingError, match="backbone_kwargs"):
        init_encoder_from(module.net, ef_run)


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="finished `hidim train` run"):
        resolve_model_file(tmp_path)


def test_relative_init_from_resolves_against_the_config(ef_run: Path, tmp_path: Path) -> None:
    folder = ef_run.parent
    (folder / "cox.yaml").write_text(
        "data: {store: " + str(load_run(ef_run).store_path) + ", views: [A4C]}\n"
        "model: {backbone: small3d, init_from: ef}\n"
        "task: {head: cox}\n"
    )
    assert load_config(folder / "cox.yaml").model.init_from == str(ef_run.resolve())


def test_single_clip_encoder_initialises_a_shared_multiview_backbone(
    ef_run: Path, base_config
) -> None:
    source = _encoder(load_run(ef_run).model)
    cfg = config_from_dict(
        base_config(
            data={"views": ["A4C", "PLAX"]},
            model={"multiview": {"shared": True, "pooling": "attention"}},
        )
    )
    module = HidimModule(config=cfg, in_channels=1)
    info = init_encoder_from(module.net, ef_run)
    state = module.net.state_dict()
    assert info["tensors"] == len(source)
    assert all(torch.equal(state[f"multiview.{k}"], v) for k, v in source.items())
