"""Acceptance on the phantom: EF from echo video, on held-out patients, on a CPU.

Generates a phantom cohort (``hidim.phantom``), curates it into a store (fps and size
normalised, patient-level splits), imports its labels, then trains and evaluates:

1. ``ef_small3d`` — EF regression from the A4C view with the small 3-D CNN (goal: test
   R² >= 0.8);
2. ``ef_small2d`` — the same with ``small2d``, the 2-D twin of ``small3d`` (same widths and
   spatial strides, per-frame convolutions, the same temporal mean+max pooling);
3. ``ef_frames_mean`` — the classic 2-D baseline: per-frame CNN + frame averaging;
   ``ef_small3d_mean`` — the 3-D CNN with the same plain temporal mean (the ablation that
   shows what temporal convolution adds when the pooling cannot compare frames);
   ``ef_resnet18_2d`` — the paper's 2-D baseline, torchvision ResNet-18 per frame with frame
   averaging (random init: ImageNet weights are used only if already in the hub cache);
4. ``ef40_small3d`` — binary EF < 40 % (AUROC with a bootstrap CI);
5. ``fusion`` — A4C + PLAX multi-view (attention) + tabular (age, sex) EF regression.

Every run is a full ``hidim.training.train`` run (checkpoints, test-time averaging over all
clips of a study, metrics with 95 % bootstrap CIs); the summary goes to
``WORK/acceptance.json``.

    OMP_NUM_THREADS=2 python bench/acceptance_ef.py --work /tmp/hidim_acceptance
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

RUNS: dict[str, dict[str, Any]] = {
    "ef_small3d": {"model": {"backbone": "small3d"}},
    "ef_small2d": {"model": {"backbone": "small2d"}},
    "ef_frames_mean": {"model": {"backbone": "small2d", "backbone_kwargs": {"pooling": "mean"}}},
    "ef_small3d_mean": {
        "model": {"backbone": "small3d", "backbone_kwargs": {"temporal_pool": "mean"}}
    },
    "ef_resnet18_2d": {
        "model": {"backbone": "resnet18_2d", "backbone_kwargs": {"pooling": "mean"}}
    },
    "ef40_small3d": {
        "data": {"threshold": 40, "balanced_batches": "classes"},
        "model": {"backbone": "small3d"},
        "task": {"head": "binary", "params": {}},
    },
    "fusion": {
        "data": {"views": ["A4C", "PLAX"], "tabular": ["age", "sex"]},
        "model": {"backbone": "small3d", "multiview": {"pooling": "attention"}, "tabular": True},
    },
}


def prepare_store(work: Path, *, patients: int, seed: int, fps: float, size: int) -> Path:
    """Phantom (default views) → curated store with labels (skipped when already there)."""
    from hidim.phantom.config import PhantomConfig
    from hidim.store import Store
    from phantom_store import prepare_store as _prepare

    store = _prepare(work, PhantomConfig(patients=patients, seed=seed), fps=fps, size=size)
    m = Store(store).manifest
    print(m.groupby(["split", "view"]).size().to_string())
    return store


def base_config(store: Path, *, epochs: int, clip: int) -> dict[str, Any]:
    return {
        "data": {
            "store": str(store),
            "views": ["A4C"],
            "target": "ef",
            "clip_frames": clip,
            "batch_size": 8,
            "group_columns": ["sex", "site"],
        },
        "model": {"backbone": "small3d"},
        "task": {"head": "regression", "params": {"loss": "huber"}},
        "optim": {"lr": 3e-3, "weight_decay": 1e-4, "scheduler": "cosine"},
        "trainer": {
            "max_epochs": epochs,
            "loggers": ["csv"],
            "progress_bar": False,
            "early_stopping_patience": 0,
            "seed": 0,
        },
    }


def run(name: str, store: Path, work: Path, *, epochs: int, clip: int) -> dict[str, Any]:
    from hidim.training.config import config_from_dict
    from hidim.training.train import train

    raw = base_config(store, epochs=epochs, clip=clip)
    for section, values in RUNS[name].items():
        raw[section] = {**raw.get(section, {}), **values}
    run_dir = work / "runs" / name
    t0 = time.perf_counter()
    if (run_dir / "run.json").is_file():  # finished earlier: reuse (delete the folder to redo)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        seconds = float(json.loads((run_dir / "run.json").read_text())["extra"]["seconds"])
    else:  # new, or resumed after an interruption (same config)
        metrics = train(config_from_dict(raw), run_dir).metrics
        seconds = time.perf_counter() - t0
    test = metrics["test"]
    out = {
        "seconds": round(seconds, 1),
        "n_test": test["n"],
        "metrics": test["metrics"],
        "ci": test["ci"],
        "val": metrics["val"]["metrics"],
    }
    print(f"{name:16s} {seconds:6.0f} s  test {json.dumps(test['metrics'])}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/hidim_acceptance"))
    ap.add_argument("--patients", type=int, default=240)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--clip", type=int, default=24, help="frames per clip at --fps")
    ap.add_argument("--fps", type=float, default=20.0)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--only", nargs="*", default=list(RUNS), choices=list(RUNS))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = prepare_store(
        args.work, patients=args.patients, seed=args.seed, fps=args.fps, size=args.size
    )
    summary: dict[str, Any] = {
        "setup": {
            **{k: str(v) for k, v in vars(args).items()},
            "prepare_seconds": round(time.perf_counter() - t0, 1),
        }
    }
    path = args.work / "acceptance.json"
    if path.is_file():
        summary = {**json.loads(path.read_text()), "setup": summary["setup"]}
    for name in args.only:
        summary[name] = run(name, store, args.work, epochs=args.epochs, clip=args.clip)
        path.write_text(json.dumps(summary, indent=2))
    r2 = summary.get("ef_small3d", {}).get("metrics", {}).get("r2")
    if r2 is not None:
        print(
            f"EF regression, small3d, test R2 = {r2:.3f} (goal >= 0.8): "
            f"{'PASS' if r2 >= 0.8 else 'FAIL'}"
        )
    print(f"summary: {path}")


if __name__ == "__main__":
    main()
