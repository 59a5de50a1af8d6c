"""Acceptance of the explainability and bias tools on the phantom's planted truth (issue 7).

End to end on CPU, in a few minutes: phantom → store → small 3-D CNN → hidim.explain /
hidim.evaluate.subgroup / hidim.training.fairness, with every number checked against what
the phantom planted:

1. Shortcut: a bright marker burned in at one site on most positives. The occlusion test
   on the marker region must show a significant AUROC drop at that site and raise the
   "non-anatomical region" flag; the same cohort without the shortcut must not.
2. Sanity: the trained model's Grad-CAM passes the cascading randomisation test (and label
   randomisation); a randomised copy of the model is flagged (its maps are unlike the
   trained maps and do not localise the heart), and the model-independent edge-detector
   control fails.
3. Temporal: for an ejection-fraction regression model, occluding the end-diastole /
   end-systole windows (true phases from truth.json) costs more than the mid-phase windows.
4. Bias: outcomes under-recorded in women (70 % of true positives recorded negative); a
   model that sees sex under-diagnoses women against the *true* labels — the audit's TPR
   gap CI excludes zero — and the demographic-parity penalty shrinks the gap, at a reported
   cost in AUROC.

Usage: ``python bench/acceptance_explain.py [--out DIR] [--patients N] [--fresh]``.
Prints a table of the acceptance numbers with PASS/FAIL and writes ``acceptance.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

RESULTS: list[tuple[str, str, bool]] = []


def check(name: str, detail: str, ok: bool) -> None:
    RESULTS.append((name, detail, bool(ok)))
    print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)


def build_store(
    root: Path,
    *,
    patients: int,
    seed: int,
    effects: dict[str, Any],
    sites: Any = None,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> Path:
    """Phantom (no burned-in text: synthetic data, curated without de-identification)."""
    from hidim.curate.labels import import_labels
    from hidim.curate.pipeline import curate
    from hidim.phantom.config import EffectsConfig, PhantomConfig
    from hidim.phantom.generate import generate

    extra = {"sites": sites} if sites is not None else {}
    cfg = PhantomConfig(
        patients=patients, seed=seed, size=40, views=("A4C",), burn_in_text=False,
        private_tags=False, effects=EffectsConfig(**effects), **extra,
    )  # fmt: skip
    generate(root / "phantom", cfg)
    if not (root / "store" / "labels.parquet").is_file():
        curate(root / "phantom" / "dicom", root / "store", fps=25.0, allow_identified=True,
               seed=seed, fractions=fractions)  # fmt: skip
        import_labels(root / "store", root / "phantom" / "labels.csv")
    return root / "store"


def config(store: Path, *, head: str, target: str | None, threshold: float | None,
           epochs: int, tabular: list[str] | None = None, seed: int = 0,
           balanced: bool = True) -> Any:  # fmt: skip
    from hidim.training.config import config_from_dict

    data: dict[str, Any] = {
        "store": str(store), "views": ["A4C"], "target": target, "threshold": threshold,
        "clip_frames": 16, "batch_size": 8, "group_columns": ["sex", "site"],
    }  # fmt: skip
    if head == "binary" and balanced:
        data["balanced_batches"] = "classes"
    model: dict[str, Any] = {"backbone": "small3d", "backbone_kwargs": {"widths": [8, 16, 32, 32]}}
    if tabular:
        data["tabular"] = tabular
        model["tabular"] = True
    return config_from_dict({
        "data": data, "model": model, "task": {"head": head}, "optim": {"lr": 3e-3},
        "trainer": {"max_epochs": epochs, "seed": seed, "early_stopping_patience": 0,
                    "loggers": [], "progress_bar": False},
    })  # fmt: skip


def train_once(cfg: Any, run: Path, fresh: bool) -> Path:
    from hidim.training.train import train

    if fresh or not (run / "run.json").is_file():
        t = time.perf_counter()
        res = train(cfg, run, overwrite=True)
        test = (res.metrics.get("test") or {}).get("metrics", {})
        print(f"  trained {run.name} in {time.perf_counter() - t:.0f} s; test {test}", flush=True)
    return run


def marker_rows(summary: dict[str, Any], subset: str | None) -> list[dict[str, Any]]:
    return [
        r
        for r in summary["occlusion"]
        if r["region"] == "shortcut_marker" and r["subset"] == subset
    ]


def fmt_drop(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        d = r["drop"]
        if d["value"] is None:
            out.append(f"{r['metric']} n/a")
            continue
        out.append(f"{r['metric']} {r['original']:.3f}→{r['occluded']:.3f}, drop {d['value']:.3f} "
                   f"[{d['lower']:.3f}, {d['upper']:.3f}], p={r['p_value']:.3g}")  # fmt: skip
    return "; ".join(out) or "n/a"


def shortcut_and_sanity(out: Path, patients: int, epochs: int, fresh: bool, n_boot: int) -> None:
    from hidim.explain import explain_run

    site = "northgate"
    for planted in (True, False):
        root = out / ("shortcut" if planted else "no_shortcut")
        effects = {"shortcut": planted, "shortcut_site": site, "shortcut_p_positive": 0.95,
                   "shortcut_p_negative": 0.02}  # fmt: skip
        store = build_store(root, patients=patients, seed=11, effects=effects)
        run = train_once(
            config(store, head="binary", target="ef", threshold=40.0, epochs=epochs),
            root / "run", fresh,
        )  # fmt: skip
        t = time.perf_counter()
        # The control cohort has no marker: its truth has no marker region, so the marker's
        # *location* comes from the shortcut phantom (same acquisition layout); its series do
        # not match that truth, so only layout regions are tested there.
        truth = out / "shortcut" / "phantom"
        s = explain_run(
            run, truth=truth, n_boot=n_boot, progress=False, grid=(4, 4),
            label_randomisation=planted, retrain_epochs=max(2, epochs // 2),
            sanity_clips=4, sanity_steps=4,
        )  # fmt: skip
        print(f"  explain_run {root.name}: {time.perf_counter() - t:.0f} s", flush=True)
        at_site = marker_rows(s, f"site={site}")
        flagged = [f for f in s["flags"] if f["region"] == "shortcut_marker"]
        sig = any((r["drop"]["lower"] or 0) > 0 for r in at_site)
        print(f"  marker occlusion, all sites: {fmt_drop(marker_rows(s, None))}")
        if planted:
            check("shortcut flagged at its site", fmt_drop(at_site), sig and bool(flagged))
            check("flag message", flagged[0]["message"] if flagged else "no flag", bool(flagged))
            sanity(run, s)
        else:
            # The flag rule: CI above 0 *and* a drop of at least 0.02 metric units (masking any
            # small tissue patch moves the Brier score a little).
            check("no shortcut → no flag", fmt_drop(at_site), bool(at_site) and not flagged)


def sanity(run: Path, s: dict[str, Any]) -> None:
    """Sanity verdicts of the trained model, and the randomised model flagged."""
    import copy

    from hidim.explain.regions import TruthIndex
    from hidim.explain.run_sections import localisation
    from hidim.explain.saliency import explain
    from hidim.explain.sanity import map_similarity, randomise_
    from hidim.store import Store
    from hidim.training.bundle import load_run

    for r in s["sanity_checks"]:
        if r["method"] == "gradcam":
            check(f"trained Grad-CAM passes {r['test']}",
                  f"spearman |map| {r['similarity']:.3f} < {r['threshold']}", r["passed"])  # fmt: skip
    ctrl = s["details"]["sanity"]["negative_control"]
    check("edge-detector control fails", f"similarity {ctrl[0]['similarity']:.3f}",
          not ctrl[0]["passed"])  # fmt: skip
    bundle = load_run(run)
    trained = bundle.scorer("score")
    rand = copy.deepcopy(trained)
    randomise_(rand, seed=123)
    st = Store(bundle.store_path)
    index = TruthIndex(run.parent / "phantom", st.manifest)
    from hidim.training.datamodule import build_dataset

    ds = build_dataset(st, bundle.config.data, split="test", sampling="centre", multiview=False,
                       seed=0, encoder=bundle.tabular_encoder, coder=bundle.group_coder)  # fmt: skip
    sims, lift_t, lift_r, flat = [], [], [], []
    for i in range(min(12, len(ds))):
        item = ds[i]
        if float(item["target"]) != 1.0:
            continue
        a_t = explain(trained, item["clip"], method="gradcam").numpy()
        a_r = explain(rand, item["clip"], method="gradcam").numpy()
        sims.append(map_similarity(a_t, a_r)["spearman_abs"])
        flat.append(float(np.ptp(a_r) == 0))
        heart = np.logical_or(*(index.region_mask(item["series_key"], n, a_t.shape[-2:])
                                for n in ("lv_cavity", "myocardium")))  # fmt: skip
        for a, acc in ((a_t, lift_t), (a_r, lift_r)):
            loc = localisation(a, heart)
            if loc is not None:
                acc.append(loc["lift"])
    med = float(np.median(sims)) if sims else float("nan")
    check("randomised model's maps flagged as unlike the trained maps",
          f"median spearman {med:.3f} over {len(sims)} positives; "
          f"{np.mean(flat):.0%} of randomised maps constant", med < 0.5)  # fmt: skip
    lt, lr = (float(np.median(x)) if x else float("nan") for x in (lift_t, lift_r))
    # Informational: localisation alone cannot flag a random model when the evidence is also
    # the most salient input structure (Adebayo et al.'s point), so it is not a check.
    print(f"  info: Grad-CAM heart lift (share / area) trained {lt:.2f} vs randomised {lr:.2f}")


def temporal(out: Path, patients: int, epochs: int, fresh: bool, n_boot: int) -> None:
    from hidim.explain import explain_run

    root = out / "no_shortcut"
    store = root / "store"
    run = train_once(
        config(store, head="regression", target="ef", threshold=None, epochs=epochs),
        out / "ef_regression", fresh,
    )  # fmt: skip
    s = explain_run(run, truth=root / "phantom", n_boot=n_boot, progress=False, grid=None,
                    n_cases=2, sanity_clips=0, out_dir=run / "explain")  # fmt: skip
    drops = {p["phase"]: p["drop"]["value"] for p in s["phases"]}
    for p in s["phases"]:
        d = p["drop"]
        print(f"  {p['phase']:>13}: MAE +{d['value']:.3f} EF points [{d['lower']:.3f}, "
              f"{d['upper']:.3f}], p={p['p_value']:.3g}")  # fmt: skip
    ends = np.mean([drops["end_diastole"], drops["end_systole"]])
    mids = np.mean([drops["mid_systole"], drops["mid_diastole"]])
    src = s["details"]["temporal"]["phase_source"]
    shift = s["details"]["temporal"]["prediction_shift"]
    for w, v in shift["shift"].items():
        print(f"  {w:>13}: |Δ predicted EF| {v['value']:.3f} [{v['lower']:.3f}, {v['upper']:.3f}]")
    c = shift["contrast"]
    check("ED/ES windows carry more weight than mid-phase windows",
          f"MAE drop ED/ES {ends:.3f} vs mid {mids:.3f}; prediction shift ED/ES − mid "
          f"{c['value']:.3f} [{c['lower']:.3f}, {c['upper']:.3f}] EF points, p={c['p_value']:.3g}, "
          f"n={shift['n']} (phases: {src})", c["lower"] > 0)  # fmt: skip


def bias(out: Path, patients: int, epochs: int, fresh: bool, n_boot: int) -> None:
    """Outcomes under-recorded in women; a model that sees sex learns to under-diagnose them.

    The cohort has more reduced-EF patients than the default (45 % per site) and a 40 % test
    split, so the test split holds enough women with a true positive label for a CI; the
    model fuses ``sex`` with the echo; the audit scores the test split against the *true*
    labels.
    """
    from hidim.evaluate.classification import auroc
    from hidim.evaluate.subgroup import subgroup_audit
    from hidim.phantom.config import DEFAULT_SITES
    from hidim.phantom.truth import Truth
    from hidim.training.config import FairnessConfig
    from hidim.training.fairness import fairness_sweep

    root = out / "bias"
    effects = {"subgroup_bias": True, "subgroup_attribute": "sex", "subgroup_group": "F",
               "subgroup_miss_fraction": 0.8}  # fmt: skip
    sites = tuple(s.model_copy(update={"low_ef_fraction": 0.45}) for s in DEFAULT_SITES)
    store = build_store(root, patients=int(patients * 1.5), seed=5, effects=effects, sites=sites,
                        fractions=(0.5, 0.1, 0.4))  # fmt: skip
    truth = Truth.load(root / "phantom")

    def true_labels(preds: pd.DataFrame) -> pd.DataFrame:
        y = [truth.patient(str(p))["true_ef_lt_40"] for p in preds["patient_key"]]
        return preds.assign(target=np.asarray(y, float))

    cfg = config(store, head="binary", target="ef", threshold=40.0, epochs=epochs,
                 tabular=["sex"], balanced=False)  # fmt: skip
    cfg = cfg.model_copy(
        update={"fairness": FairnessConfig(kind="demographic_parity", group="sex")}
    )

    def operating_point(preds: pd.DataFrame) -> float:
        """The score giving 80 % sensitivity on the validation split's recorded labels —
        what a hospital would do; a penalty compresses probabilities, so 0.5 drifts."""
        val = preds[(preds["split"] == "val") & (preds["target"] == 1)]
        return float(np.quantile(val["score"], 0.2))

    weights = [0.0, 0.5, 2.0]
    sweep_dir = root / "sweep"
    t = time.perf_counter()
    result = fairness_sweep(cfg, weights, sweep_dir, relabel=true_labels, n_boot=n_boot,
                            disparity_metric="tpr", threshold=operating_point)  # fmt: skip
    print(f"  fairness sweep: {time.perf_counter() - t:.0f} s", flush=True)
    gaps = {}
    for p in result["tradeoff"]:
        preds = pd.read_parquet(sweep_dir / p["run"] / "predictions.parquet")
        thr = operating_point(preds)
        test = preds[preds["split"] == "test"]
        recorded_auroc = auroc(test["target"], test["score"])
        preds = true_labels(test)
        audit = subgroup_audit(preds, by=["sex"], task="binary", n_boot=n_boot, min_n=20,
                               min_events=5, threshold=thr)  # fmt: skip
        t = audit.table
        f = t[(t.metric == "tpr") & (t.group == "F")].iloc[0]
        overall_tpr = t[(t.metric == "tpr") & (t.group == "overall")].iloc[0]["estimate"]
        gaps[p["weight"]] = f
        print(f"  λ={p['weight']:g} (threshold {thr:.3f}): AUROC(true) {p['performance']:.3f} "
              f"[{p['performance_lower']:.3f}, {p['performance_upper']:.3f}], AUROC(recorded) "
              f"{recorded_auroc:.3f}; TPR overall "
              f"{overall_tpr:.3f}, women {f['estimate']:.3f} (n pos {f['events']}), diff "
              f"{f['difference']:.3f} [{f['diff_lower']:.3f}, {f['diff_upper']:.3f}]",
              flush=True)  # fmt: skip
    g0 = gaps[0.0]
    check("under-diagnosis of women detected (TPR diff vs overall, CI excludes 0)",
          f"{g0['difference']:.3f} [{g0['diff_lower']:.3f}, {g0['diff_upper']:.3f}]",
          g0["diff_upper"] < 0)  # fmt: skip
    pts = {p["weight"]: p for p in result["tradeoff"]}
    best = min((w for w in gaps if w > 0), key=lambda w: abs(gaps[w]["difference"]))
    g1 = gaps[best]
    check(f"demographic-parity penalty reduces the gap (best λ={best:g})",
          f"TPR diff {g0['difference']:.3f} → {g1['difference']:.3f}; TPR women "
          f"{g0['estimate']:.3f} → {g1['estimate']:.3f}; AUROC {pts[0.0]['performance']:.3f} "
          f"→ {pts[best]['performance']:.3f}",
          abs(g1["difference"]) < abs(g0["difference"]) and g1["estimate"] > g0["estimate"])  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench-out/acceptance_explain"))
    ap.add_argument("--patients", type=int, default=240)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--fresh", action="store_true", help="retrain even if runs exist")
    ap.add_argument("--only", default="shortcut+sanity,temporal,bias",
                    help="comma-separated parts to run")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    timings = {}
    parts = (("shortcut+sanity", shortcut_and_sanity), ("temporal", temporal), ("bias", bias))
    for name, fn in parts:
        if name not in args.only.split(","):
            continue
        t = time.perf_counter()
        print(f"== {name}", flush=True)
        fn(args.out, args.patients, args.epochs, args.fresh, args.n_boot)
        timings[name] = round(time.perf_counter() - t, 1)
    total = time.perf_counter() - start
    print("\n== acceptance")
    for name, detail, ok in RESULTS:
        print(f"{'PASS' if ok else 'FAIL'}  {name}  ({detail})")
    print(f"total {total:.0f} s; per part {timings}")
    (args.out / "acceptance.json").write_text(json.dumps(
        {"results": [{"check": n, "detail": d, "passed": ok} for n, d, ok in RESULTS],
         "seconds": timings, "patients": args.patients, "epochs": args.epochs}, indent=2))  # fmt: skip
    return 0 if all(ok for _, _, ok in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
