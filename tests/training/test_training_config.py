"""Config loading: helpful errors naming the file and key, overrides, shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from hidim.errors import ConfigError
from hidim.training.config import load_config, parse_override

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["ef_regression.yaml", "ef_binary.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    assert cfg.data.target == "ef" and cfg.model.backbone == "small3d"


def test_overrides_apply_with_yaml_types(tmp_path: Path) -> None:
    cfg = load_config(
        CONFIGS / "ef_regression.yaml",
        overrides=[
            "optim.lr=1e-3",
            "trainer.max_epochs=3",
            "data.views=[A4C,PLAX]",
            "model.multiview={pooling: attention}",
            "fairness={kind: demographic_parity, group: sex, weight: 0.5, n_bins: 4}",
        ],
    )
    assert cfg.optim.lr == pytest.approx(1e-3) and cfg.trainer.max_epochs == 3
    assert cfg.data.views == ["A4C", "PLAX"] and cfg.model.multiview.pooling == "attention"
    assert cfg.fairness.extra_kwargs() == {"n_bins": 4}
    assert parse_override("a.b=null") == (["a", "b"], None)
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("optim.lr")


def test_errors_name_the_file_the_key_and_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "data: {store: s, batch_size: lots}\n"
        "model: {backbon: r3d_18}\n"
        "optim: {lr: -1}\n"
        "trainr: {}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    msg = str(info.value)
    assert "bad.yaml" in msg
    assert "data.batch_size" in msg and "'lots'" in msg
    assert "model.backbon: unknown key; did you mean 'backbone'?" in msg
    assert "optim.lr" in msg and "greater than 0" in msg
    assert "trainr: unknown key; did you mean 'trainer'?" in msg


def test_semantic_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'r2plus1d_18'|Did you mean 'r2plus1d_18'"):
        load_config(CONFIGS / "ef_regression.yaml", overrides=["model.backbone=r2plus1d"])
    with pytest.raises(ConfigError, match="must be listed in data.group_columns"):
        load_config(
            CONFIGS / "ef_regression.yaml",
            overrides=["fairness={kind: dp, group: ethnicity}"],
        )
    with pytest.raises(ConfigError, match="data.tabular lists no columns"):
        load_config(CONFIGS / "ef_regression.yaml", overrides=["model.tabular=true"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(empty)
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
