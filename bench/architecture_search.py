"""Architecture search on the phantom with ``hidim tune``: which video encoder for EF?

One Optuna study (TPE sampler, median pruner) over four architectures — the small 3-D CNN
at two widths, its per-frame 2-D twin and MONAI's 3-D ResNet-10 — jointly with the
learning rate, EF regression on a 240-patient A4C phantom store (``bench/acceptance_ef.py``
builds it). Printed: every trial's architecture, learning rate, validation R², epochs run
(pruned trials stop early) and seconds; then per architecture its best validation R² and
the search's total time against the time the same trials would take unpruned (the saving
pruning buys). The baseline a user would otherwise write is a grid over the four
architectures at a fixed learning rate: it is run too, and its best is printed beside the
search's.

    OMP_NUM_THREADS=2 python bench/architecture_search.py --work /tmp/hidim_nas --trials 12
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

ARCHITECTURES: list[dict[str, Any]] = [
    {"backbone": "small3d", "backbone_kwargs": {"widths": [8, 16, 32, 64]}},
    {"backbone": "small3d", "backbone_kwargs": {"widths": [16, 32, 64, 128]}},
    {"backbone": "small2d", "backbone_kwargs": {"widths": [8, 16, 32, 64]}},
    {"backbone": "resnet10_3d", "backbone_kwargs": {}},
]


def _name(arch: dict[str, Any]) -> str:
    widths = arch["backbone_kwargs"].get("widths")
    return arch["backbone"] + (f" w{widths[0]}" if widths else "")


def _raw(store: Path, epochs: int) -> dict[str, Any]:
    return {
        "data": {"store": str(store), "views": ["A4C"], "target": "ef", "clip_frames": 16},
        "model": {"backbone": "small3d"},
        "task": {"head": "regression"},
        "optim": {"lr": 3e-3, "weight_decay": 1e-4},
        "trainer": {
            "max_epochs": epochs,
            "seed": 0,
            "loggers": ["csv"],
            "progress_bar": False,
            "early_stopping_patience": 0,
        },
        "tune": {
            "space": {
                "optim.lr": {"low": 1e-3, "high": 1e-2, "log": True},
                "model": {"choices": ARCHITECTURES},
            },
            "pruner": "median",
            "startup_trials": 4,
            "max_epochs": epochs,
        },
    }


def _grid(store: Path, work: Path, epochs: int) -> dict[str, float]:
    """The baseline: every architecture once at the default learning rate."""
    from hidim.training.config import config_from_dict
    from hidim.training.train import train_member

    out: dict[str, float] = {}
    for arch in ARCHITECTURES:
        raw = _raw(store, epochs)
        raw.pop("tune")
        raw["model"] = dict(arch)
        info = train_member(config_from_dict(raw), work / "grid" / _name(arch), seed=0)
        out[_name(arch)] = float(info.get("best_score") or float("nan"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/hidim_nas"))
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--patients", type=int, default=240)
    args = parser.parse_args()

    import pandas as pd

    from acceptance_ef import prepare_store  # type: ignore[import-not-found]
    from hidim.training.config import config_from_dict
    from hidim.training.tune import tune

    store = prepare_store(args.work, patients=args.patients, seed=0, fps=25.0, size=32)
    raw = _raw(store, args.epochs)
    t0 = time.perf_counter()
    result = tune(config_from_dict(raw), args.work / "search", trials=args.trials, raw_config=raw)
    search_s = time.perf_counter() - t0
    trials = pd.read_csv(args.work / "search" / "trials.csv")
    trials["architecture"] = [_name(json.loads(v)) for v in trials["params_model"]]
    trials["seconds"] = pd.to_timedelta(trials["duration"]).dt.total_seconds()
    cols = ["number", "architecture", "params_optim.lr", "value", "state", "seconds"]
    print(trials[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    done = trials[trials["state"] == "COMPLETE"]
    per_epoch = (done["seconds"] / args.epochs).groupby(done["architecture"]).mean()
    unpruned = sum(per_epoch.get(a, per_epoch.mean()) * args.epochs for a in trials["architecture"])
    best = done.groupby("architecture")["value"].max().sort_values(ascending=False)
    print("\nbest validation R² per architecture (search):")
    print(best.to_string(float_format=lambda v: f"{v:.3f}"))
    print(
        f"\nsearch: {len(trials)} trials in {search_s:.0f} s; unpruned the same trials would "
        f"take ~{unpruned:.0f} s ({unpruned / max(search_s, 1e-9):.2f}x); best "
        f"{_name(result.best_params['model'])} at lr {result.best_params['optim.lr']:.2g}, "
        f"val R² {result.best_value:.3f}"
    )
    t1 = time.perf_counter()
    grid = _grid(store, args.work, args.epochs)
    grid_s = time.perf_counter() - t1
    print(f"\nbaseline grid at lr 3e-3 ({grid_s:.0f} s):")
    for name, value in sorted(grid.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<16} val R² {value:.3f}")
    summary = {
        "search_seconds": search_s,
        "unpruned_seconds_estimate": unpruned,
        "best": {"params": result.best_params, "val_r2": result.best_value},
        "best_per_architecture": best.to_dict(),
        "grid_seconds": grid_s,
        "grid": grid,
    }
    (args.work / "architecture_search.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
