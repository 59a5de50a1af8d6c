"""Self-supervised pretraining: the objectives against hand-computed values, video-consistent
augmentations, pairs of views, and a run whose model.pt ``model.init_from`` reads."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hidim.errors import ConfigError, TrainingError
from hidim.pretrain import pretrain, ssl_config_from_dict
from hidim.pretrain.augment import AugmentParams, VideoAugment, apply_view_params
from hidim.pretrain.config import AugmentConfig, load_ssl_config
from hidim.pretrain.data import build_pair_datasets, holdout_patients
from hidim.pretrain.losses import embedding_spread, nt_xent, pair_top1, vicreg
from hidim.pretrain.run import eval_batches
from hidim.training.config import config_from_dict
from hidim.training.module import HidimModule
from hidim.training.transfer import init_encoder_from
from tiny_echo import make_store

ROOT = Path(__file__).resolve().parents[2]
WIDTHS = [4, 8, 8, 8]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 echo-like patients (train/val/test 24/12/12), 16 frames of 32 x 32."""
    return make_store(tmp_path_factory.mktemp("ssl") / "store", n_patients=48, frames=16)


def _raw(store: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "data": {
            "store": str(store),
            "views": ["A4C"],
            "clip_frames": 8,
            "batch_size": 8,
            "holdout_fraction": 0.2,
        },
        "model": {"backbone": "small3d", "backbone_kwargs": {"widths": WIDTHS}},
        "ssl": {"projection_hidden": 32, "projection_dim": 16, "temperature": 0.2},
        "optim": {"lr": 1e-2, "warmup_epochs": 0},
        "trainer": {"max_epochs": 2, "progress_bar": False},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return raw


@pytest.fixture(scope="module")
def ssl_run(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch SimCLR run."""
    run = tmp_path_factory.mktemp("runs") / "ssl"
    pretrain(ssl_config_from_dict(_raw(store)), run)
    return run


# ---- objectives ---------------------------------------------------------------------------


def test_nt_xent_equals_the_hand_computed_value() -> None:
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    tau, c = 0.5, 1 / math.sqrt(2)  # unit vectors u0=(1,0) u1=(0,1) u2=(1,0) u3=(c,c)
    e = lambda s: math.exp(s / tau)  # noqa: E731
    expected = [
        -math.log(e(1) / (e(0) + e(1) + e(c))),  # u0: partner u2
        -math.log(e(c) / (e(0) + e(0) + e(c))),  # u1: partner u3
        -math.log(e(1) / (e(1) + e(0) + e(c))),  # u2: partner u0
        math.log(3.0),  # u3: equally similar to all three
    ]
    per_anchor = nt_xent(z1, z2, temperature=tau, reduction="none")
    assert torch.allclose(per_anchor, torch.tensor(expected), atol=1e-6)
    assert nt_xent(z1, z2, temperature=tau).item() == pytest.approx(sum(expected) / 4, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(perm=st.permutations(list(range(5))), seed=st.integers(0, 2**16))
def test_nt_xent_is_permutation_equivariant(perm: list[int], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    p = torch.tensor(perm)
    base = nt_xent(z1, z2, temperature=0.3, reduction="none")
    permuted = nt_xent(z1[p], z2[p], temperature=0.3, reduction="none")
    assert torch.allclose(permuted, torch.cat([base[:5][p], base[5:][p]]), atol=1e-5)
    swapped = nt_xent(z2, z1, temperature=0.3, reduction="none")  # views swapped
    assert torch.allclose(swapped, torch.cat([base[5:], base[:5]]), atol=1e-5)


def test_vicreg_equals_the_hand_computed_value() -> None:
    z1 = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    z2 = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    out = vicreg(z1, z2, eps=1e-4)
    # invariance: mean of squared differences (0, 1, 0, 1) / 4
    assert out["invariance"].item() == pytest.approx(0.5)
    # variance: z1 SDs sqrt(2) (no hinge); z2 SDs sqrt(2) and sqrt(1e-4) = 0.01 -> 0.99
    assert out["variance"].item() == pytest.approx((0 + 0.99 / 2) / 2, abs=1e-6)
    # covariance: z1 cov [[2, 2], [2, 2]] -> off-diagonal 2 * 2^2 = 8, / D = 4; z2: 0
    assert out["covariance"].item() == pytest.approx(4.0)
    assert out["loss"].item() == pytest.approx(25 * 0.5 + 25 * 0.2475 + 4.0, abs=1e-4)
    p = torch.tensor([1, 0])
    assert vicreg(z1[p], z2[p])["loss"].item() == pytest.approx(out["loss"].item(), abs=1e-5)


def test_monitors_see_retrieval_and_collapse() -> None:
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    assert pair_top1(z, z + 1e-3).item() == 1.0
    assert embedding_spread(torch.ones(6, 4)).item() == pytest.approx(0.0, abs=1e-6)
    assert embedding_spread(torch.eye(4)).item() > 0.8


def test_objectives_reject_mismatched_or_single_pairs() -> None:
    with pytest.raises(TrainingError, match="same shape"):
        nt_xent(torch.zeros(4, 3), torch.zeros(4, 2), temperature=0.1)
    with pytest.raises(TrainingError, match="at least 2 series"):
        vicreg(torch.zeros(1, 3), torch.zeros(1, 3))


# ---- augmentations --------------------------------------------------------------------------


def _constant_in_time(t: int = 6) -> torch.Tensor:
    frame = torch.rand(1, 1, 24, 28, generator=torch.Generator().manual_seed(3)) * 4 - 1
    return frame.expand(1, t, 24, 28).clone()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_augment_is_video_consistent(seed: int) -> None:
    """T copies of one frame stay T copies of one (augmented) frame; shape/dtype kept."""
    augment = VideoAugment(config=AugmentConfig(noise_std=0.0))
    clip = _constant_in_time()
    out, params = augment(clip, np.random.default_rng(seed))
    assert out.shape == clip.shape and out.dtype == torch.float32
    assert torch.allclose(out, out[:, :1].expand_as(out))
    # the same draw on one frame (float64: reductions over T vs 1 frame agree exactly)
    clip64 = clip.double()
    single = apply_view_params(clip64[:, :1], params)
    assert torch.allclose(apply_view_params(clip64, params)[:, :1], single, atol=1e-9)


def test_noise_is_per_frame_and_reproducible() -> None:
    clip = _constant_in_time()
    params = AugmentParams(top=0, left=0, height=24, width=28, noise_std=0.5, noise_seed=9)
    out = apply_view_params(clip, params)
    assert not torch.allclose(out[:, 0], out[:, 1])
    assert torch.equal(out, apply_view_params(clip, params))
    noise_sd = (out - clip).std().item() / clip.std().item()
    assert noise_sd == pytest.approx(0.5, rel=0.1)


def test_gamma_matches_monai_adjust_contrast() -> None:
    from monai.transforms import AdjustContrast

    clip = _constant_in_time() + torch.linspace(0, 1, 6).view(1, 6, 1, 1)
    params = AugmentParams(top=0, left=0, height=24, width=28, gamma=0.6)
    expected = torch.as_tensor(AdjustContrast(gamma=0.6)(clip))
    assert torch.allclose(apply_view_params(clip, params), expected, atol=1e-5)


def test_identity_params_return_the_clip() -> None:
    clip = torch.randn(2, 5, 16, 16)
    assert torch.equal(apply_view_params(clip, AugmentParams(0, 0, 16, 16)), clip)


def test_bad_crop_box_is_a_clear_error() -> None:
    with pytest.raises(TrainingError, match="does not fit"):
        apply_view_params(torch.zeros(1, 2, 8, 8), AugmentParams(4, 0, 8, 8))


# ---- pairs of views --------------------------------------------------------------------------


def test_two_views_of_a_series_differ_and_reproduce(store: Path) -> None:
    cfg = ssl_config_from_dict(_raw(store))
    train, held, info = build_pair_datasets(cfg, seed=0)
    item = train[0]
    assert item["view1"].shape == (1, 8, 32, 32) and item["view1"].dtype == torch.float32
    assert item["start1"] != item["start2"]  # 16 frames hold several 8-frame starts
    assert not torch.allclose(item["view1"], item["view2"])
    assert all(torch.equal(item[k], train[0][k]) for k in ("view1", "view2"))  # same epoch
    train.set_epoch(1)
    assert not torch.equal(item["view1"], train[0]["view1"])  # new draws next epoch
    assert held is not None and held.fixed_epoch == 0
    train_patients = {train.base.rows.at[r, "patient_key"] for r in train.rows}
    held_patients = {held.base.rows.at[r, "patient_key"] for r in held.rows}
    assert not train_patients & held_patients
    assert info["splits"] == ["train", "val"] and info["patients"] == 36  # no test patients


def test_strides_never_loop_a_series(store: Path) -> None:
    cfg = ssl_config_from_dict(_raw(store, augment={"max_stride": 3}))
    train, _, _ = build_pair_datasets(cfg, seed=0)
    draws = [d for i in range(len(train)) for d in train.draw(i)]
    assert {s for _, s in draws} == {1, 2}  # stride 3 needs 22 frames: never drawn
    assert all(start + 7 * stride <= 15 for start, stride in draws)


def test_holdout_is_patient_level_and_seeded() -> None:
    patients = [f"P{i}" for i in range(20)]
    held = holdout_patients(patients * 2, 0.25, seed=1)
    assert len(held) == 5 and held == holdout_patients(patients, 0.25, seed=1)
    assert holdout_patients(patients, 0.0, seed=1) == set()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), batch=st.integers(2, 16))
def test_evaluation_batches_cover_everything_without_a_batch_of_one(n: int, batch: int) -> None:
    batches = eval_batches(n, batch)
    assert [i for b in batches for i in b] == list(range(n))
    assert all(len(b) >= 2 for b in batches) or n == 1


def test_labels_are_not_needed(store: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "unlabelled"
    shutil.copytree(store, copy)
    (copy / "labels.parquet").unlink()
    train, _, _ = build_pair_datasets(ssl_config_from_dict(_raw(copy)), seed=0)
    assert train[0]["view1"].shape == (1, 8, 32, 32)


# ---- config ------------------------------------------------------------------------------------


def test_config_errors_name_the_key_and_fix(store: Path) -> None:
    with pytest.raises(
        ConfigError, match="ssl.temprature: unknown key; did you mean 'temperature'"
    ):
        ssl_config_from_dict(_raw(store, ssl={"temprature": 0.1}))
    with pytest.raises(ConfigError, match="holdout_fraction > 0"):
        ssl_config_from_dict(
            _raw(store, data={"holdout_fraction": 0.0}, trainer={"early_stopping_patience": 3})
        )
    with pytest.raises(ConfigError, match="Did you mean 'small3d'"):
        ssl_config_from_dict(_raw(store, model={"backbone": "smal3d"}))


def test_sample_config_loads_with_a_relative_store(store: Path, tmp_path: Path) -> None:
    text = (ROOT / "configs" / "ssl_pretrain.yaml").read_text()
    raw = yaml.safe_load(text)
    (tmp_path / "store").symlink_to(store)
    (tmp_path / "ssl.yaml").write_text(text)
    cfg = load_ssl_config(tmp_path / "ssl.yaml", overrides=["ssl.method=vicreg"])
    assert cfg.data.store == store.resolve() and cfg.ssl.method == "vicreg"
    assert cfg.model.backbone == raw["model"]["backbone"] and cfg.data.splits == ["train", "val"]


# ---- the run ----------------------------------------------------------------------------------


def test_run_learns_and_writes_the_run_directory(ssl_run: Path) -> None:
    summary = json.loads((ssl_run / "pretrain.json").read_text())
    assert summary["method"] == "simclr" and summary["epochs"] == 2
    assert [row["epoch"] for row in summary["curve"]] == [0, 1, 2]
    before, after = summary["fixed_pairs"]["before"], summary["fixed_pairs"]["after"]
    assert after["loss"] < before["loss"]  # the same training pairs, before vs after
    assert summary["data"]["holdout_patients"] >= 1
    assert summary["downstream"]["model"]["backbone_kwargs"] == {"widths": WIDTHS}
    for name in ("config.yaml", "run.json", "logs/metrics.csv", "checkpoints/last.ckpt"):
        assert (ssl_run / name).is_file(), name
    assert json.loads((ssl_run / "run.json").read_text())["command"] == "pretrain"


def test_model_pt_is_read_by_init_from(ssl_run: Path, store: Path) -> None:
    payload = torch.load(ssl_run / "checkpoints" / "model.pt", weights_only=True)
    assert payload["format"] == "hidim-model/1"
    assert payload["hparams"]["config"]["task"]["head"] == "ssl_simclr"
    raw = {
        "data": {"store": str(store), "views": ["A4C"], "target": "ef", "clip_frames": 8},
        "model": {"backbone": "small3d", "backbone_kwargs": {"widths": WIDTHS}},
        "task": {"head": "regression"},
    }
    module = HidimModule(config=config_from_dict(raw), in_channels=1)
    info = init_encoder_from(module.net, ssl_run)
    source = {
        k.removeprefix("net."): v
        for k, v in payload["state_dict"].items()
        if k.startswith("net.backbone.")
    }
    target = {k: v for k, v in module.net.state_dict().items() if k.startswith("backbone.")}
    assert source.keys() == target.keys() and info["tensors"] == len(source) > 10
    assert all(torch.equal(target[k], source[k]) for k in source)  # incl. BN statistics
    assert info["task"] == "ssl_simclr" and info["backbone"] == "small3d"


def test_mismatched_backbone_is_a_clear_error(ssl_run: Path, store: Path) -> None:
    for model, match in (
        ({"backbone_kwargs": {"widths": [4, 8, 8, 16]}}, "backbone_kwargs"),
        ({"backbone": "small2d"}, "has shape .* but .* here"),  # same names, 2-D kernels
        ({"backbone": "resnet10_3d", "backbone_kwargs": {}}, "differs from this config"),
    ):
        raw = {
            "data": {"store": str(store), "views": ["A4C"], "target": "ef", "clip_frames": 8},
            "model": {"backbone": "small3d", **model},
            "task": {"head": "regression"},
        }
        module = HidimModule(config=config_from_dict(raw), in_channels=1)
        with pytest.raises(TrainingError, match=match):
            init_encoder_from(module.net, ssl_run)


def test_same_seed_same_weights_and_no_silent_overwrite(ssl_run: Path, store: Path) -> None:
    first = torch.load(ssl_run / "checkpoints" / "model.pt", weights_only=True)["state_dict"]
    with pytest.raises(TrainingError, match="already holds a finished pretraining run"):
        pretrain(ssl_config_from_dict(_raw(store)), ssl_run)
    pretrain(ssl_config_from_dict(_raw(store)), ssl_run, overwrite=True)
    again = torch.load(ssl_run / "checkpoints" / "model.pt", weights_only=True)["state_dict"]
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_interrupted_run_resumes_from_its_checkpoint(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "ssl"
    first = pretrain(ssl_config_from_dict(_raw(store)), run).summary
    weights = torch.load(run / "checkpoints" / "model.pt", weights_only=True)["state_dict"]
    (run / "run.json").unlink()  # as if it stopped before the end
    with pytest.raises(TrainingError, match="another config"):
        pretrain(ssl_config_from_dict(_raw(store, optim={"lr": 1e-3})), run)
    resumed = pretrain(ssl_config_from_dict(_raw(store)), run).summary
    assert resumed["curve"] == first["curve"]  # history travels in the checkpoint
    again = torch.load(run / "checkpoints" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(weights[k], again[k]) for k in weights)


def test_frozen_downstream_run_keeps_the_ssl_encoder(
    ssl_run: Path, store: Path, tmp_path: Path
) -> None:
    """The user path: hidim train with model.init_from=<ssl run> and a frozen encoder."""
    from hidim.training.bundle import load_run
    from hidim.training.train import train

    raw = {
        "data": {"store": str(store), "views": ["A4C"], "target": "ef", "clip_frames": 8},
        "model": {
            "backbone": "small3d",
            "backbone_kwargs": {"widths": WIDTHS},
            "init_from": str(ssl_run),
            "freeze_encoder": True,
        },
        "task": {"head": "regression"},
        "trainer": {"max_epochs": 1, "loggers": [], "progress_bar": False},
        "uncertainty": {"ood_gate": False},
    }
    run = tmp_path / "probe"
    train(config_from_dict(raw), run, evaluate=False)
    source = torch.load(ssl_run / "checkpoints" / "model.pt", weights_only=True)["state_dict"]
    trained = load_run(run).model.state_dict()
    assert all(
        torch.equal(trained[k.removeprefix("net.")], v)
        for k, v in source.items()
        if k.startswith("net.backbone.")
    )
    pre = json.loads((run / "preprocessing.json").read_text())
    assert pre["init_from"]["task"] == "ssl_simclr"


def test_vicreg_run_and_the_cli(store: Path, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from hidim.cli.pretrain import register

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps `pretrain` a named subcommand
        """Unused."""

    (tmp_path / "ssl.yaml").write_text(yaml.safe_dump(_raw(store)))
    runner = CliRunner()
    help_text = runner.invoke(app, ["pretrain", "--help"]).output
    assert "init_from" in help_text and "--all-splits" in help_text  # says when to use it
    args = ["pretrain", str(tmp_path / "ssl.yaml"), "--out", str(tmp_path / "run")]
    args += ["--set", "ssl.method=vicreg", "--set", "trainer.max_epochs=1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "pretrain.json").read_text())
    assert summary["method"] == "vicreg" and summary["head"] == "ssl_vicreg"
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already holds a finished" in " ".join(again.output.split())
