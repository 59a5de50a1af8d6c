"""Acceptance of the uncertainty/survival issue on the phantom, end to end on CPU.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/acceptance_uncertainty.py --out /tmp/acc``
(a few CPU minutes; stages already done in ``--out`` are reused).

1. phantom (A4C cine loops with known truth, plus the four OOD inputs: CT-like volume,
   natural-image-like clip, noise, blank) -> ``curate`` -> labels; the OOD DICOM is curated
   into a second store, every OOD series labelled view A4C (the CT too: a mislabelled
   series that slipped past metadata QC, so the *model* must refuse it).
2. four runs with ``hidim.training.train``: an evidential classifier (EF < 40 %) with its
   feature-density gate fitted after training; a deep ensemble of plain binary classifiers
   (uncertainty = member spread, what ``hidim predict`` reports for them); a deep ensemble
   of evidential classifiers (scored both by the members' mean evidential uncertainty, what
   ``hidim predict`` reports for them, and by the member spread); a Cox model on image +
   age + sex with a memory bank of 64.
3. ``hidim.training.predict`` on the test store and on the OOD store; the abstain threshold
   is fitted on the *validation* studies for 95 % coverage
   (:func:`hidim.evaluate.uncertainty.fit_abstention_threshold`) and applied unchanged.

Acceptance: OOD abstention >= 90 % at <= 10 % in-distribution (test) abstention for the
evidential head and for the ensemble; the Cox model's test C-index has a bootstrap CI above
0.5 and is close to the C-index of the true risk score from ``truth.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

PATIENTS = 400
EPOCHS = 8
ENSEMBLE = 3
COVERAGE = 0.95  # answer 95 % of validation studies: ID abstention ~5 %, margin to 10 %
SPLIT = (0.5, 0.25, 0.25)  # train / val / test patients: 100 val studies for the threshold
OOD_SEEDS = 10  # OOD sets (4 kinds each) from this many extra one-patient phantoms


def _phantom_config(patients: int, seed: int) -> Any:
    from hidim.phantom.config import CohortConfig, EffectsConfig, PhantomConfig

    return PhantomConfig(
        patients=patients,
        seed=seed,
        size=32,
        views=("A4C",),
        cohort=CohortConfig(weibull_scale_days=1300.0),
        effects=EffectsConfig(ood=True),
    )


def _phantoms(out: Path) -> tuple[Path, list[Path]]:
    """The training phantom, and extra one-patient phantoms for more OOD inputs."""
    from hidim.phantom.generate import generate

    res = generate(out / "phantom", _phantom_config(PATIENTS, 0))
    print(f"phantom: {res.n_patients} patients, {res.n_series} loops")
    extra = [out / "ood_phantoms" / str(s) for s in range(1, OOD_SEEDS + 1)]
    for seed, folder in enumerate(extra, start=1):
        generate(folder, _phantom_config(1, seed))
    return out / "phantom", [out / "phantom", *extra]


def _curate(phantom: Path, ood_sources: list[Path], out: Path) -> tuple[Path, Path, dict[str, str]]:
    from hidim.curate.labels import import_labels
    from hidim.curate.pipeline import curate
    from hidim.store import Store
    from hidim.store.writer import write_manifest

    store, ood = out / "store", out / "ood_store"
    if not (store / "labels.parquet").is_file():
        curate(
            phantom / "dicom",
            store,
            fps=25.0,
            allow_identified=True,
            fractions=SPLIT,
            show_progress=False,
        )
        import_labels(store, phantom / "labels.csv")
    if not (ood / "manifest.parquet").is_file():
        curate(
            [p / "ood" for p in ood_sources],
            ood,
            fps=25.0,
            allow_identified=True,
            show_progress=False,
        )
    man = Store(ood).manifest.copy()
    if (man["view"] != "A4C").any():
        man["view"] = "A4C"  # mislabelled on purpose (see module doc)
        write_manifest(ood, man.to_dict("records"))
    kind_of = {}
    for p in ood_sources:
        for item in json.loads((p / "truth.json").read_text())["ood"]:
            kind_of[str(item["patient_id"])] = str(item["kind"])
    print(
        f"stores: {len(Store(store).manifest)} series in-distribution, {len(man)} OOD series "
        f"({', '.join(sorted(man['modality'].astype(str).unique()))})"
    )
    return store, ood, kind_of


def _config(
    store: Path,
    head: str,
    tabular: tuple[str, ...] = (),
    model: dict[str, Any] | None = None,
    epochs: int | None = None,
    **task: Any,
) -> Any:
    from hidim.training.config import config_from_dict

    binary = head not in ("cox", "regression")
    raw = {
        "data": {
            "store": str(store),
            "views": ["A4C"],
            "clip_frames": 16,
            "batch_size": 8,
            "tabular": list(tabular),
            **(
                {
                    "target": "ef",
                    "threshold": 40,
                    "positive_below": True,
                    "balanced_batches": "classes",
                }
                if binary
                else (
                    {"target": "ef"}
                    if head == "regression"
                    else {"balanced_batches": "events", "min_events": 2}
                )
            ),
        },
        "model": {
            "backbone": "small3d",
            "backbone_kwargs": {"widths": [8, 16, 32, 64], "dropout": 0.1},
            "tabular": bool(tabular),
            **(model or {}),
        },
        "task": {"head": head, "params": task},
        "optim": {"lr": 3e-3, "weight_decay": 1e-4},
        "trainer": {
            "max_epochs": epochs or EPOCHS,
            "seed": 0,
            "early_stopping_patience": 4,
            "loggers": ["csv"],
            "progress_bar": False,
        },
        "uncertainty": {"coverage": COVERAGE},
    }
    return config_from_dict(raw)


def _train(
    store: Path,
    out: Path,
    name: str,
    head: str,
    ensemble: int = 1,
    tabular: tuple[str, ...] = (),
    model: dict[str, Any] | None = None,
    epochs: int | None = None,
    **task: Any,
) -> Path:
    from hidim.training.train import train

    run = out / name
    if not (run / "predictions.parquet").is_file():
        t0 = time.perf_counter()
        config = _config(store, head, tabular, model, epochs, **task)
        train(config, run, ensemble=ensemble, overwrite=True)
        print(f"trained {name} in {time.perf_counter() - t0:.0f} s")
    return run


def _abstention(
    run: Path, ood_store: Path, kind_of: dict[str, str], label: str, column: str = "uncertainty"
) -> dict[str, Any]:
    """Abstention on test and OOD studies with the threshold fitted on validation studies.

    ``column``: ``uncertainty`` (what ``hidim predict`` chose: for ensembles of evidential
    heads the members' mean head uncertainty, for other ensembles the member spread),
    ``uncertainty_spread`` (the member spread, reported next to it for every ensemble), or
    ``abstain_score`` (``hidim predict``'s full rule: that uncertainty *or* the
    image-density gate, both fitted on validation; abstains above 1).
    """
    from hidim.evaluate.uncertainty import ood_abstention_summary
    from hidim.training.predict import predict

    studies = pd.read_parquet(run / "predictions.parquet")
    ood_file = run / "ood" / "predictions.parquet"
    if ood_file.is_file():
        ood = pd.read_parquet(ood_file)
    else:
        ood = predict(run, ood_store, out=ood_file, batch_size=1, show_progress=False).studies
    kinds = ood["patient_key"].astype(str).map(kind_of)
    summary = ood_abstention_summary(
        studies.loc[studies["split"] == "val", column].to_numpy(),
        studies.loc[studies["split"] == "test", column].to_numpy(),
        {k: ood.loc[kinds == k, column].to_numpy() for k in sorted(set(kinds))},
        target_coverage=COVERAGE,
        n_boot=500,
        threshold=1.0 if column == "abstain_score" else None,
    )
    src = {
        "uncertainty": str(studies["uncertainty_source"].iloc[0]),
        "uncertainty_spread": "member spread (uncertainty_spread)",
        "abstain_score": f"{studies['uncertainty_source'].iloc[0]} + image-density gate",
    }[column]
    print(
        f"\n[{label}] uncertainty = {src}; threshold {summary['threshold']:.4g} (val, coverage {COVERAGE})"
    )
    print(
        f"  in-distribution test abstention: {summary['id_abstention']:.1%} (n={summary['n_id']})"
    )
    for kind, row in summary["ood"].items():
        print(f"  OOD {kind:<14} abstention {row['abstention']:.0%} (n={row['n']})")
    print(
        f"  OOD overall abstention {summary['ood_abstention']:.1%}; OOD AUROC "
        f"{summary['ood_auroc']['estimate']:.3f} [{summary['ood_auroc']['low']:.3f}, "
        f"{summary['ood_auroc']['high']:.3f}]"
    )
    ok = summary["ood_abstention"] >= 0.9 and summary["id_abstention"] <= 0.1
    print(f"  acceptance (OOD >= 90 % at ID <= 10 %): {'PASS' if ok else 'FAIL'}")
    return {**summary, "uncertainty_source": src, "pass": ok}


def _survival(runs: dict[str, Path], phantom: Path) -> dict[str, Any]:
    """Test C-index of each Cox model next to the true risk's (same test patients)."""
    from hidim.evaluate import bootstrap_ci, concordance_index
    from hidim.phantom.truth import load_truth

    truth = load_truth(phantom)
    beta_ef = truth.parameters["survival_model"]["beta_ef_per_10"]
    first = pd.read_parquet(next(iter(runs.values())) / "predictions.parquet")
    test = first[first["split"] == "test"].dropna(subset=["time", "event"])
    rows = [truth.patient(str(p)) for p in test["patient_key"]]
    t, e = test["time"].to_numpy(float), test["event"].to_numpy(bool)
    risks: dict[str, np.ndarray] = {}
    for label, run in runs.items():
        studies = pd.read_parquet(run / "predictions.parquet").set_index("study_uid")
        risks[label] = studies.loc[test["study_uid"], "score"].to_numpy(float)
    risks["true risk eta"] = np.array([r["true_risk"] for r in rows], dtype=float)
    risks["true EF term only"] = (
        beta_ef * (np.array([r["true_ef"] for r in rows], dtype=float) - 55) / 10
    )
    print(f"\n[cox] test n={len(test)}, events={int(e.sum())}")
    out: dict[str, Any] = {"n": len(test), "events": int(e.sum())}
    for name, r in risks.items():
        ci = bootstrap_ci(concordance_index, t, e, r, n_boot=1000, stratify=e)
        print(f"  {name:<44} C-index {ci.estimate:.3f} [{ci.low:.3f}, {ci.high:.3f}]")
        out[name] = ci.as_dict()
    truth_c = out["true risk eta"]["estimate"]
    for name in runs:
        out[name]["gap_to_true_risk"] = truth_c - out[name]["estimate"]
    return out


def _survival_runs(store: Path, out: Path) -> dict[str, Path]:
    """Cox on image + age + sex from scratch, and from an EF-regression-pretrained encoder."""
    scratch = _train(store, out, "cox", "cox", tabular=("age", "sex"), memory_size=64)
    ef = _train(store, out, "ef_pretrain", "regression", epochs=2 * EPOCHS)
    init = {"init_from": str(ef)}
    frozen = _train(
        store,
        out,
        "cox_pretrained_frozen",
        "cox",
        tabular=("age", "sex"),
        model={**init, "freeze_encoder": True},
        memory_size=64,
    )
    tuned = _train(
        store, out, "cox_pretrained", "cox", tabular=("age", "sex"), model=init, memory_size=64
    )
    return {
        "cox from scratch (image + age + sex)": scratch,
        "cox, EF-pretrained encoder frozen (+ age, sex)": frozen,
        "cox, EF-pretrained encoder fine-tuned (+ age, sex)": tuned,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("acceptance_uncertainty"))
    parser.add_argument(
        "--only",
        choices=("all", "uncertainty", "survival"),
        default="all",
        help="run only the abstention checks or only the survival models",
    )
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    phantom, ood_sources = _phantoms(out)
    store, ood, kind_of = _curate(phantom, ood_sources, out)
    results: dict[str, Any] = {}
    if args.only in ("all", "uncertainty"):
        results.update(_uncertainty(store, out, ood, kind_of))
    if args.only in ("all", "survival"):
        results["survival"] = _survival(_survival_runs(store, out), phantom)
    results["seconds"] = time.perf_counter() - t0
    (out / f"acceptance_{args.only}.json").write_text(json.dumps(results, indent=2, default=float))
    print(f"\ntotal {results['seconds']:.0f} s; summary in {out / f'acceptance_{args.only}.json'}")


def _uncertainty(store: Path, out: Path, ood: Path, kind_of: dict[str, str]) -> dict[str, Any]:
    """The abstention checks: each uncertainty alone, and with the image-density gate."""
    evidential = _train(store, out, "evidential", "evidential_classification", n_classes=2)
    ensemble = _train(store, out, "ensemble", "binary", ensemble=ENSEMBLE)
    evi_ens = _train(
        store, out, "evidential_ensemble", "evidential_classification", ENSEMBLE, n_classes=2
    )
    ens = f"ensemble x{ENSEMBLE}"
    checks = {
        "evidential": (evidential, "evidential head", "uncertainty"),
        "evidential_gate": (evidential, "evidential head + gate", "abstain_score"),
        "ensemble": (ensemble, f"{ens} of binary heads, member spread", "uncertainty"),
        "ensemble_gate": (ensemble, f"{ens} of binary heads + gate", "abstain_score"),
        "evidential_ensemble_spread": (
            evi_ens,
            f"{ens} of evidential heads, member spread",
            "uncertainty_spread",
        ),
        "evidential_ensemble_mean": (
            evi_ens,
            f"{ens} of evidential heads, mean head uncertainty",
            "uncertainty",
        ),
        "evidential_ensemble_gate": (
            evi_ens,
            f"{ens} of evidential heads, mean head uncertainty + gate",
            "abstain_score",
        ),
    }
    return {
        name: _abstention(run, ood, kind_of, label, column=column)
        for name, (run, label, column) in checks.items()
    }


if __name__ == "__main__":
    main()
