"""Architecture search with ``hidim tune``: a categorical dimension whose choices are whole
architectures (mappings of model keys) or lists, which Optuna cannot store natively."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import yaml

from hidim.training.config import TuneParam, config_from_dict
from hidim.training.tune import suggest_overrides, tune

ARCHITECTURES = [
    {"backbone": "small3d", "backbone_kwargs": {"widths": [4, 8, 8, 8]}},
    {"backbone": "small2d", "backbone_kwargs": {"widths": [4, 8, 8, 8]}},
]


def test_mapping_choices_expand_into_overrides() -> None:
    space = {
        "model": TuneParam(choices=ARCHITECTURES),
        "model.backbone_kwargs.widths": TuneParam(choices=[[4, 8, 8, 8], [8, 8, 16, 16]]),
        "data.clip_frames": TuneParam(choices=[8, 12]),
    }
    label = json.dumps(ARCHITECTURES[1], sort_keys=True)
    trial = optuna.trial.FixedTrial(
        {"model": label, "model.backbone_kwargs.widths": "[8, 8, 16, 16]", "data.clip_frames": 12}
    )
    assert suggest_overrides(trial, space) == [
        'model.backbone="small2d"',
        'model.backbone_kwargs={"widths": [4, 8, 8, 8]}',
        "model.backbone_kwargs.widths=[8, 8, 16, 16]",
        "data.clip_frames=12",
    ]


def test_tune_searches_architectures_and_writes_the_best(
    tiny_store: Path, base_config, tmp_path: Path
) -> None:
    raw = base_config(tune={"space": {"model": {"choices": ARCHITECTURES}}, "startup_trials": 1})
    result = tune(config_from_dict(raw), tmp_path / "nas", trials=3, raw_config=raw)
    assert result.best_params["model"] in ARCHITECTURES  # decoded, not JSON text
    best = yaml.safe_load((tmp_path / "nas" / "best_config.yaml").read_text())
    assert best["model"]["backbone"] == result.best_params["model"]["backbone"]
    assert best["model"]["backbone_kwargs"] == result.best_params["model"]["backbone_kwargs"]
    trials = pd.read_csv(tmp_path / "nas" / "trials.csv")
    assert {json.loads(v)["backbone"] for v in trials["params_model"]} <= {"small3d", "small2d"}
