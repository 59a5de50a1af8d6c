"""Self-supervised pretraining on the phantom: how many EF labels does it save?

Generates a phantom cohort (A4C only, 32 px), curates it (20 fps, patient-level 70/15/15
split), imports its labels, then

1. pretrains the encoder self-supervised (``hidim.pretrain``, SimCLR by default) on the
   train + val series — no labels read, test patients never seen;
2. trains EF regression with ``hidim.training.train.train`` (full runs: best checkpoint by
   validation R², test-time averaging over every clip, bootstrap CIs) in four arms:

   * ``random_probe``  — random-init encoder, frozen, linear head (lr 0.1; the floor);
   * ``ssl_probe``     — SSL encoder, frozen, linear head (linear probe);
   * ``ssl_finetune``  — SSL encoder, fine-tuned;
   * ``scratch``       — random init, fine-tuned (the usual supervised baseline);
   * ``ridge_random`` / ``ridge_ssl`` — the same linear probes in closed form: ridge
     regression on standardised, clip-averaged frozen embeddings (penalty chosen on the
     validation split), because a linear head trained by SGD on *raw* frozen features
     converges slowly (the features are small and correlated);

   each with 20 % and 100 % of the *training* patients labelled (the others' EF is
   hidden in a copy of ``labels.parquet``; validation and test labels are kept, so model
   selection is the same for every arm).

Prints test R² with 95 % bootstrap CIs, the paired bootstrap difference of each SSL arm
against its random-init twin on the same test studies, and seconds; the summary goes to
``WORK/pretrain_ssl.json``.

    OMP_NUM_THREADS=2 python bench/pretrain_ssl.py --work /tmp/hidim_ssl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ARMS: dict[str, dict[str, Any]] = {
    "random_probe": {"ssl": False, "freeze": True},
    "ssl_probe": {"ssl": True, "freeze": True},
    "ssl_finetune": {"ssl": True, "freeze": False},
    "scratch": {"ssl": False, "freeze": False},
}
PAIRS = (("ssl_probe", "random_probe"), ("ssl_finetune", "scratch"))


def prepare_store(work: Path, *, patients: int, seed: int, fps: float, size: int) -> Path:
    """Phantom (A4C) → curated store with labels (skipped when already there)."""
    from hidim.phantom.config import PhantomConfig
    from phantom_store import prepare_store as _prepare

    cfg = PhantomConfig(patients=patients, seed=seed, size=32, views=("A4C",))
    return _prepare(work, cfg, fps=fps, size=size, workers=1)


def label_store(store: Path, work: Path, fraction: float, *, seed: int) -> Path:
    """A store view (symlinks) whose labels keep EF for ``fraction`` of the train patients."""
    from hidim.store import Store

    out = work / f"store_{int(round(fraction * 100))}pct"
    if (out / "labels.parquet").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name in ("store.json", "manifest.parquet", "ledger.parquet", "arrays"):
        link = out / name
        if (store / name).exists() and not link.exists():
            link.symlink_to((store / name).resolve())
    manifest = Store(store).manifest
    train = sorted(manifest.loc[manifest["split"] == "train", "patient_key"].astype(str).unique())
    keep = int(round(fraction * len(train)))
    chosen = set(np.asarray(train)[np.random.default_rng(seed).permutation(len(train))[:keep]])
    hidden = set(train) - chosen
    labels = pd.read_parquet(store / "labels.parquet")
    labels.loc[labels["patient_key"].astype(str).isin(hidden), "ef"] = np.nan
    labels.to_parquet(out / "labels.parquet", index=False)
    return out


def ssl_run(store: Path, work: Path, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The self-supervised run (reused when finished)."""
    from hidim.pretrain import pretrain, ssl_config_from_dict

    run_dir = work / "runs" / f"ssl_{args.method}"
    if (run_dir / "run.json").is_file():
        return run_dir, json.loads((run_dir / "pretrain.json").read_text())
    raw = {
        "data": {
            "store": str(store),
            "views": ["A4C"],
            "clip_frames": args.clip,
            "batch_size": 16,
            "holdout_fraction": 0.1,
        },
        "model": {"backbone": "small3d", "backbone_kwargs": {"widths": args.widths}},
        "ssl": {"method": args.method, "temperature": 0.2},
        "augment": {"crop_scale": [0.7, 1.0]},
        "optim": {"lr": 3e-3, "warmup_epochs": 2},
        "trainer": {"max_epochs": args.ssl_epochs, "seed": 0, "progress_bar": False},
    }
    result = pretrain(ssl_config_from_dict(raw), run_dir)
    return run_dir, result.summary


def downstream(
    name: str, store: Path, ssl_dir: Path, work: Path, tag: str, args: argparse.Namespace
) -> dict[str, Any]:
    """One EF regression run of arm ``name`` on ``store`` (reused when finished)."""
    from hidim.training.config import config_from_dict
    from hidim.training.train import train

    arm = ARMS[name]
    raw = {
        "data": {
            "store": str(store),
            "views": ["A4C"],
            "target": "ef",
            "clip_frames": args.clip,
            "batch_size": 8,
        },
        "model": {
            "backbone": "small3d",
            "backbone_kwargs": {"widths": args.widths},
            "init_from": str(ssl_dir) if arm["ssl"] else None,
            "freeze_encoder": arm["freeze"],
        },
        "task": {"head": "regression", "params": {"loss": "huber"}},
        "optim": {"lr": 1e-1 if arm["freeze"] else 3e-3, "weight_decay": 1e-4},
        "trainer": {
            "max_epochs": args.epochs,
            "seed": 0,
            "loggers": ["csv"],
            "progress_bar": False,
            "early_stopping_patience": 0,
            "bootstrap_samples": 1000,
        },
        "uncertainty": {"ood_gate": False},
    }
    run_dir = work / "runs" / tag / name
    if not (run_dir / "run.json").is_file():  # new, or resumed after an interruption
        train(config_from_dict(raw), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # training time (without the prediction pass), the same for fresh and reused runs
    seconds = float(json.loads((run_dir / "run.json").read_text())["extra"]["seconds"])
    test = metrics["test"]
    return {
        "run_dir": str(run_dir),
        "seconds": round(seconds, 1),
        "n_test": test["n"],
        "r2": test["ci"]["r2"],
        "mae": test["metrics"].get("mae"),
    }


def _embeddings(store: Path, state: dict[str, Any] | None, args: argparse.Namespace) -> dict:
    """Clip-averaged encoder embeddings ``[N, D]`` and EF of the labelled series per split."""
    import torch

    from hidim.models.registry import get_backbone
    from hidim.store import ClipDataset

    torch.manual_seed(0)  # the random-init encoder hidim train builds with seed 0
    net = get_backbone("small3d", in_channels=1, widths=args.widths)
    if state is not None:
        net.load_state_dict(
            {k.removeprefix("net.backbone."): v for k, v in state.items() if ".backbone." in k}
        )
    net.eval()
    out = {}
    for split in ("train", "val", "test"):
        ds = ClipDataset(
            store,
            split=split,
            clip_frames=args.clip,
            sampling="all",
            targets="ef",
            views=["A4C"],
            short="loop",
        )
        feats, keys, ef = [], [], {}
        with torch.no_grad():
            for i in range(0, len(ds), 64):
                items = [ds[j] for j in range(i, min(len(ds), i + 64))]
                feats.append(net(torch.stack([it["clip"] for it in items])).numpy())
                keys += [it["series_key"] for it in items]
                ef.update({it["series_key"]: float(it["target"]) for it in items})
        x, k = np.concatenate(feats), np.asarray(keys)
        series = sorted(ef)
        out[split] = (
            np.stack([x[k == s].mean(axis=0) for s in series]),
            np.asarray([ef[s] for s in series]),
        )
    return out


def ridge_probe(store: Path, ssl_dir: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    """Closed-form linear probe: ridge on standardised frozen embeddings of the labelled
    training series, penalty chosen on validation R², test R² with a bootstrap CI."""
    import torch
    from sklearn.linear_model import Ridge

    from hidim.evaluate import bootstrap_ci, r2

    t0 = time.perf_counter()
    state = None
    if ssl_dir is not None:
        state = torch.load(ssl_dir / "checkpoints" / "model.pt", weights_only=True)["state_dict"]
    emb = _embeddings(store, state, args)
    (xtr, ytr), (xva, yva), (xte, yte) = emb["train"], emb["val"], emb["test"]
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0) + 1e-6
    best = max(
        (r2(yva, Ridge(alpha=a).fit((xtr - mu) / sd, ytr).predict((xva - mu) / sd)), a)
        for a in np.logspace(-2, 4, 13)
    )
    pred = Ridge(alpha=best[1]).fit((xtr - mu) / sd, ytr).predict((xte - mu) / sd)
    ci = bootstrap_ci(r2, yte, pred, n_boot=1000, seed=args.seed).as_dict()
    return {"r2": ci, "alpha": best[1], "n_train": len(ytr), "seconds": time.perf_counter() - t0}


def paired_delta(run_a: str, run_b: str, *, seed: int) -> dict[str, Any]:
    """Bootstrap CI of test R²(a) − R²(b) on the same studies (paired resampling)."""
    from hidim.evaluate import bootstrap_ci, r2

    cols = ["study_uid", "target", "score"]
    a = pd.read_parquet(Path(run_a) / "predictions.parquet")
    b = pd.read_parquet(Path(run_b) / "predictions.parquet")
    a, b = a[a["split"] == "test"][cols], b[b["split"] == "test"][cols]
    merged = a.merge(b, on="study_uid", suffixes=("_a", "_b"))
    res = bootstrap_ci(
        lambda y, sa, sb: r2(y, sa) - r2(y, sb),
        merged["target_a"].to_numpy(float),
        merged["score_a"].to_numpy(float),
        merged["score_b"].to_numpy(float),
        n_boot=2000,
        seed=seed,
    )
    return res.as_dict()


def _ci(entry: dict[str, Any]) -> str:
    return f"{entry['estimate']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/hidim_ssl"))
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--fps", type=float, default=20.0)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--clip", type=int, default=16, help="frames per clip at --fps")
    ap.add_argument("--widths", type=int, nargs=4, default=[8, 16, 32, 64])
    ap.add_argument("--method", choices=["simclr", "vicreg"], default="simclr")
    ap.add_argument("--ssl-epochs", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=15, help="downstream epochs")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.2, 1.0])
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = prepare_store(
        args.work, patients=args.patients, seed=args.seed, fps=args.fps, size=args.size
    )
    prep = time.perf_counter() - t0
    t1 = time.perf_counter()
    ssl_dir, ssl_summary = ssl_run(store, args.work, args)
    ssl_seconds = ssl_summary.get("seconds", time.perf_counter() - t1)
    first, last = ssl_summary["curve"][0], ssl_summary["curve"][-1]
    print(
        f"store {prep:.0f} s; SSL ({args.method}, {ssl_summary['epochs']} epochs, "
        f"{ssl_summary['data']['train_series']} series) {ssl_seconds:.0f} s: held-out loss "
        f"{first.get('val_loss', float('nan')):.3f} -> {last.get('val_loss', float('nan')):.3f}, "
        f"partner top-1 {first.get('val_top1', float('nan')):.2f} -> "
        f"{last.get('val_top1', float('nan')):.2f}"
    )
    summary: dict[str, Any] = {
        "setup": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "ssl": {"seconds": ssl_seconds, "curve": ssl_summary["curve"], "data": ssl_summary["data"]},
        "results": {},
    }
    for fraction in args.fractions:
        tag = f"labels_{int(round(fraction * 100))}pct"
        labelled = label_store(store, args.work, fraction, seed=args.seed)
        results = {name: downstream(name, labelled, ssl_dir, args.work, tag, args) for name in ARMS}
        for name, source in (("ridge_random", None), ("ridge_ssl", ssl_dir)):
            results[name] = ridge_probe(labelled, source, args)
        for a, b in PAIRS:
            results[f"{a}-{b}"] = paired_delta(
                results[a]["run_dir"], results[b]["run_dir"], seed=args.seed
            )
        summary["results"][tag] = results
        (args.work / "pretrain_ssl.json").write_text(json.dumps(summary, indent=2))
        for name in (*ARMS, "ridge_random", "ridge_ssl"):
            r = results[name]
            print(f"  {tag} {name:14s} R2 {_ci(r['r2'])}  {r['seconds']:6.1f} s")
    print()
    header = "| arm | " + " | ".join(
        f"{int(f * 100)} % labels: test R² [95 % CI]" for f in args.fractions
    )
    print(header + " | seconds |")
    print("|---" * (len(args.fractions) + 2) + "|")
    tags = [f"labels_{int(round(f * 100))}pct" for f in args.fractions]
    for name in (*ARMS, "ridge_random", "ridge_ssl"):
        cells = [_ci(summary["results"][t][name]["r2"]) for t in tags]
        secs = " / ".join(f"{summary['results'][t][name]['seconds']:.0f}" for t in tags)
        print(f"| {name} | " + " | ".join(cells) + f" | {secs} |")
    for a, b in PAIRS:
        cells = [_ci(summary["results"][t][f"{a}-{b}"]) for t in tags]
        print(f"| Δ {a} − {b} (paired) | " + " | ".join(cells) + " | |")
    print(f"SSL pretraining: {ssl_seconds:.0f} s; total {time.perf_counter() - t0:.0f} s")
    print(f"summary: {args.work / 'pretrain_ssl.json'}")


if __name__ == "__main__":
    main()
