"""Federated vs centralised vs local-only training on a multi-site phantom (same epochs).

Generates a phantom with three hospitals whose scanners differ (``site_shift``: frame rate,
gain, noise, tint; and case mix), curates it (fps and size normalised, per-series z-score,
patient-level 70/15/15 split), imports its labels and trains EF regression with the small
3-D CNN in four ways, every one for the same number of epochs over its data:

* ``central``    — all sites' training patients pooled (``hidim.training.train``);
* ``fedavg``     — FedAvg over the three sites through Flower's gRPC transport (one process
  per site), ``R`` rounds x ``E`` local epochs;
* ``fedprox``    — the same with FedProx (mu = 0.01) — optional, ``--fedprox``;
* ``fedbn``      — FedAvg with batch norm kept at each site (FedBN) — optional, ``--fedbn``;
  scored with each site's personal model (global weights + its own BN) on its own test
  patients, "pooled" being those per-site predictions together;
* ``local:<s>``  — each site alone (a one-site federation of 1 round x ``R*E`` epochs,
  which is plain local training — tested equal in ``tests/federated``).

All arms use AdamW at a constant learning rate (a per-round cosine would restart every
round under FedAvg). Every model is scored on the pooled test split (per-study, all clips)
and on each site's test patients: R^2 of EF and the AUROC of the predicted EF for
EF < 40 %, with 95 % percentile-bootstrap CIs. The summary goes to
``WORK/federated_bench.json``.

    OMP_NUM_THREADS=2 python bench/federated.py --work /tmp/hidim_fed_bench
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np


def prepare_store(work: Path, *, patients: int, seed: int, size: int, fps: float) -> Path:
    """Multi-site phantom (site shift) → curated store with labels (skipped when present)."""
    from hidim.phantom.config import EffectsConfig, PhantomConfig
    from hidim.store import Store
    from phantom_store import prepare_store as _prepare

    cfg = PhantomConfig(
        patients=patients,
        seed=seed,
        size=size,
        views=("A4C",),
        effects=EffectsConfig(site_shift=True),
    )
    store = _prepare(work, cfg, fps=fps, size=size)
    st = Store(store)
    per = st.manifest.merge(st.labels[["patient_key", "site"]], on="patient_key")
    print(per.groupby(["site", "split"]).size().unstack().to_string())
    return store


def base_config(store: Path, *, clip: int, lr: float, epochs: int) -> dict[str, Any]:
    return {
        "data": {
            "store": str(store),
            "views": ["A4C"],
            "target": "ef",
            "clip_frames": clip,
            "batch_size": 8,
        },
        "model": {"backbone": "small3d"},
        "task": {"head": "regression", "params": {"loss": "huber"}},
        "optim": {"lr": lr, "weight_decay": 1e-4, "scheduler": "none"},
        "trainer": {
            "max_epochs": epochs,
            "loggers": ["csv"],
            "progress_bar": False,
            "early_stopping_patience": 0,
            "bootstrap_samples": 1000,
            "seed": 0,
        },
    }


def _auroc_low_ef(ef: np.ndarray, predicted: np.ndarray) -> float:
    from hidim.training.metrics import auroc

    return auroc((ef < 40).astype(float), -predicted)


def score(run_dir: Path, *, n_boot: int = 1000) -> dict[str, Any]:
    """Pooled and per-site test R^2 and AUROC(EF < 40) with bootstrap CIs."""
    import pandas as pd

    from hidim.evaluate.bootstrap import bootstrap_ci
    from hidim.training.metrics import r2

    personal = sorted(p.parent for p in run_dir.glob("sites/*/checkpoints"))
    if personal:  # FedBN: each site's personal model on its own test patients
        frames = []
        for site_dir in personal:
            part = pd.read_parquet(site_dir / "predictions.parquet")
            frames.append(part[(part["split"] == "test") & (part["site"] == site_dir.name)])
        test = pd.concat(frames, ignore_index=True)
    else:
        studies = pd.read_parquet(run_dir / "predictions.parquet")
        test = studies[studies["split"] == "test"]
    groups: dict[str, pd.DataFrame] = {"pooled": test}
    for site, part in test.groupby("site"):
        groups[str(site)] = part
    out: dict[str, Any] = {}
    for name, part in groups.items():
        y = part["target"].to_numpy(float)
        s = part["score"].to_numpy(float)
        entry: dict[str, Any] = {"n": int(len(part))}
        for metric, fn in (("r2", r2), ("auroc_ef40", _auroc_low_ef)):
            ci = bootstrap_ci(partial(fn), y, s, n_boot=n_boot, seed=0)
            entry[metric] = {
                "estimate": float(fn(y, s)),
                "low": float(ci.low),
                "high": float(ci.high),
            }
        out[name] = entry
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/hidim_fed_bench"))
    ap.add_argument("--patients", type=int, default=400)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--fps", type=float, default=20.0)
    ap.add_argument("--clip", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--fedprox", action="store_true", help="also run FedProx (mu = 0.01)")
    ap.add_argument("--fedbn", action="store_true", help="also run FedAvg with local BN (FedBN)")
    args = ap.parse_args()

    from hidim.federated import sites_from_column, train_federated
    from hidim.training.config import config_from_dict
    from hidim.training.train import train

    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = prepare_store(
        args.work, patients=args.patients, seed=args.seed, size=args.size, fps=args.fps
    )
    prep = time.perf_counter() - t0
    epochs = args.rounds * args.local_epochs
    cfg = config_from_dict(base_config(store, clip=args.clip, lr=args.lr, epochs=epochs))
    sites = sites_from_column(store, "site")
    runs = args.work / "runs"
    results: dict[str, dict[str, Any]] = {}

    def record(name: str, run_dir: Path, seconds: float, per_round: list[float] | None) -> None:
        results[name] = {
            "seconds": round(seconds, 1),
            "seconds_per_round": round(float(np.mean(per_round)), 2) if per_round else None,
            "test": score(run_dir),
        }
        pooled = results[name]["test"]["pooled"]
        print(
            f"{name:18s} {seconds:6.0f} s  pooled test R2 {pooled['r2']['estimate']:.3f}  "
            f"AUROC {pooled['auroc_ef40']['estimate']:.3f}",
            flush=True,
        )

    t = time.perf_counter()
    train(cfg, runs / "central", overwrite=True)
    record("central", runs / "central", time.perf_counter() - t, None)

    arms = [("fedavg", "fedavg", "global")]
    arms += [("fedprox", "fedprox", "global")] if args.fedprox else []
    arms += [("fedbn", "fedavg", "local")] if args.fedbn else []
    for name, strategy, bn in arms:
        t = time.perf_counter()
        res = train_federated(
            cfg,
            sites,
            runs / name,
            rounds=args.rounds,
            local_epochs=args.local_epochs,
            strategy=strategy,
            mu=0.01,
            bn=bn,
            transport="grpc",
            overwrite=True,
            show_progress=False,
        )
        fed = json.loads((res.run_dir / "federated.json").read_text())
        record(name, res.run_dir, time.perf_counter() - t, fed["seconds"]["per_round"])

    for site in sites:
        t = time.perf_counter()
        res = train_federated(
            cfg,
            [site],
            runs / f"local_{site.name}",
            rounds=1,
            local_epochs=epochs,
            transport="inprocess",
            overwrite=True,
            show_progress=False,
        )
        record(f"local:{site.name}", res.run_dir, time.perf_counter() - t, None)

    names = [s.name for s in sites]
    header = (
        f"{'arm':18s} {'pooled test R2 [95% CI]':28s} {'AUROC EF<40 [95% CI]':26s} "
        + " ".join(f"{'R2 ' + n:>16s}" for n in names)
        + f" {'s total':>8s} {'s/round':>8s}"
    )
    print()
    print(f"EF regression, {args.patients} patients, {len(sites)} sites, {epochs} epochs per arm")
    print(header)
    for name, r in results.items():
        p = r["test"]["pooled"]
        cells = [
            f"{p['r2']['estimate']:.3f} [{p['r2']['low']:.3f}, {p['r2']['high']:.3f}]",
            f"{p['auroc_ef40']['estimate']:.3f} [{p['auroc_ef40']['low']:.3f}, "
            f"{p['auroc_ef40']['high']:.3f}]",
        ]
        per_site = " ".join(f"{r['test'][n]['r2']['estimate']:16.3f}" for n in names)
        spr = "-" if r["seconds_per_round"] is None else f"{r['seconds_per_round']:.1f}"
        print(f"{name:18s} {cells[0]:28s} {cells[1]:26s} {per_site} {r['seconds']:8.0f} {spr:>8s}")
    central = results["central"]["test"]["pooled"]["r2"]["estimate"]
    fedavg = results["fedavg"]["test"]["pooled"]["r2"]["estimate"]
    print(f"fedavg / central test R2 ratio: {fedavg / central:.3f}")
    summary = {
        "setup": {**{k: str(v) for k, v in vars(args).items()}, "prepare_seconds": round(prep, 1)},
        "results": results,
    }
    path = args.work / "federated_bench.json"
    path.write_text(json.dumps(summary, indent=2))
    print(f"summary: {path}")


if __name__ == "__main__":
    main()
