"""Hand-built run directories in the formats hidim's commands write (for the report tests).

``make_run(tmp_path, ...)`` writes a store (manifest / labels / ledger Parquet), a
de-identification audit, and a training run directory (run.json, config.yaml, metrics.json,
predictions, survival curves, uncertainty, explain and audit summaries) with known numbers,
so each report section and flag can be checked against what was planted.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from hidim.provenance import write_run_json


def _png(seed: int, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    img = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def make_store(root: Path, *, n_patients: int = 120, failed_files: int = 1, seed: int = 0) -> Path:
    """A small store: two views per patient, three sites, a ledger with failures."""
    rng = np.random.default_rng(seed)
    store = root / "store"
    store.mkdir(parents=True)
    pk = [f"P{i:04d}" for i in range(n_patients)]
    split = np.where(
        np.arange(n_patients) % 5 == 0,
        "test",
        np.where(np.arange(n_patients) % 5 == 1, "val", "train"),
    )
    rows = []
    for i, p in enumerate(pk):
        for v in ("A4C", "PLAX"):
            rows.append(
                {
                    "series_key": f"{i:08x}{v}",
                    "study_uid": f"2.25.{i}",
                    "patient_key": p,
                    "modality": "US",
                    "view": v,
                    "n_frames": 32,
                    "fps_original": [30.0, 50.0, 80.0][i % 3],
                    "fps": 30.0,
                    "manufacturer": ["Acme", "Borealis", "Cetus"][i % 3],
                    "split": split[i],
                }
            )
    pd.DataFrame(rows).to_parquet(store / "manifest.parquet")
    age = rng.uniform(35, 90, n_patients)
    time = rng.exponential(3.0, n_patients) + 0.1
    event = rng.random(n_patients) < 0.6
    pd.DataFrame(
        {
            "patient_key": pk,
            "time": time,
            "event": event,
            "ef": rng.uniform(20, 70, n_patients),
            "age": age,
            "sex": np.where(np.arange(n_patients) % 2, "F", "M"),
            "ethnicity": np.array(["A", "B", "C"])[np.arange(n_patients) % 3],
            "site": np.array(["site_a", "site_b", "site_c"])[np.arange(n_patients) % 3],
        }
    ).to_parquet(store / "labels.parquet")
    ledger = [
        {"input_id": f"{i:016x}", "status": "ok", "reason": "", "series_key": rows[i]["series_key"]}
        for i in range(len(rows))
    ]
    ledger += [
        {
            "input_id": f"bad{i:013x}",
            "status": "failed",
            "reason": "truncated pixel data",
            "series_key": None,
        }
        for i in range(failed_files)
    ]
    ledger += [
        {
            "input_id": "sr00000000000001",
            "status": "skipped",
            "reason": "unsupported SOP class: Basic Text SR",
            "series_key": None,
        }
    ]
    pd.DataFrame(ledger).to_parquet(store / "ledger.parquet")
    return store


def make_deid_audit(root: Path, *, quarantined: int = 2) -> Path:
    """A ``deid_audit.parquet`` in the columns ``hidim deid`` writes."""
    n = 20
    base = {
        "removed": 12,
        "emptied": 3,
        "dummied": 5,
        "uids_remapped": 4,
        "dates_shifted": 6,
        "pseudonyms": 2,
        "private_removed": 7,
        "overlays_removed": 0,
    }
    rows = [
        {
            "input_id": f"{i:016x}",
            "status": "ok",
            "reason": "",
            **base,
            "pixel_decision": "sector",
            "sector_source": "us_regions",
            "masked_fraction": 0.3,
            "ocr_boxes": 0,
        }
        for i in range(n)
    ]
    rows += [
        {
            "input_id": f"q{i:015x}",
            "status": "quarantined",
            "reason": "burned-in text check needs OCR, which is unavailable (no tesseract)",
            **{k: 0 for k in base},
            "pixel_decision": "needs_ocr",
            "sector_source": "none",
            "masked_fraction": 0.0,
            "ocr_boxes": 0,
        }
        for i in range(quarantined)
    ]
    rows += [
        {
            "input_id": "f000000000000001",
            "status": "failed",
            "reason": "not DICOM",
            **{k: 0 for k in base},
            "pixel_decision": "",
            "sector_source": "",
            "masked_fraction": 0.0,
            "ocr_boxes": 0,
        }
    ]
    path = root / "deid_audit.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def make_run(
    root: Path,
    *,
    store: Path | None = None,
    shortcut: bool = True,
    subgroup_gap: bool = True,
    sanity_fail: bool = False,
    abstention: float = 0.08,
    ood_rate: float = 0.95,
    c_index: tuple[float, float, float] = (0.74, 0.66, 0.81),
    miscalibrated: bool = False,
    sections: tuple[str, ...] = ("metrics", "predictions", "uncertainty", "explain", "audit"),
    seed: int = 0,
) -> Path:
    """A training run directory with the given planted evidence."""
    rng = np.random.default_rng(seed)
    store = store if store is not None else make_store(root)
    run = root / "run"
    run.mkdir(parents=True)
    config = {
        "seed": seed,
        "intended_use": "Research: risk of death or HF admission from an apical 4-chamber echo.",
        "data": {
            "store": str(store),
            "views": ["A4C"],
            "clip_frames": 16,
            "tabular": ["age", "sex"],
        },
        "model": {"backbone": "small3d", "weights": None},
        "task": {"kind": "survival", "head": "cox"},
        "training": {"epochs": 5, "batch_size": 8, "lr": 0.001},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    write_run_json(
        run,
        command="train",
        config=config,
        seed=seed,
        input_hashes={"store/manifest.parquet": "ab" * 32},
        extra={"split_counts": {"train": 72, "val": 24, "test": 24}},
    )
    labels = pd.read_parquet(store / "labels.parquet")
    manifest = pd.read_parquet(store / "manifest.parquet")
    split = manifest.drop_duplicates("patient_key").set_index("patient_key")["split"]
    if "metrics" in sections:
        metrics = {
            "test": {
                "c_index": {"value": c_index[0], "lower": c_index[1], "upper": c_index[2], "n": 24},
                "ibs": {"value": 0.18, "lower": 0.15, "upper": 0.21},
            },
            "val": {"c_index": {"value": 0.75, "lower": 0.68, "upper": 0.82}},
        }
        (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    if "predictions" in sections:
        risk = -np.log(labels["time"].to_numpy()) + rng.normal(0, 0.6, len(labels))
        unc = rng.random(len(labels))
        preds = pd.DataFrame(
            {
                "patient_key": labels["patient_key"],
                "study_uid": [f"2.25.{i}" for i in range(len(labels))],
                "split": split.reindex(labels["patient_key"]).to_numpy(),
                "risk": risk,
                "time": labels["time"],
                "event": labels["event"],
                "uncertainty": unc,
                "abstain": unc > np.quantile(unc, 1 - abstention),
            }
        )
        preds.to_parquet(run / "predictions.parquet")
        grid = np.linspace(0.5, 10, 20)
        scale = 3.0 if not miscalibrated else 30.0
        surv = np.exp(-np.outer(np.exp(risk - risk.mean()), grid) / scale)
        long = pd.DataFrame(
            {
                "study_uid": np.repeat(preds["study_uid"].to_numpy(), len(grid)),
                "time": np.tile(grid, len(preds)),
                "survival": surv.ravel(),
            }
        )
        long.to_parquet(run / "survival_curves.parquet")
    if "uncertainty" in sections:
        (run / "uncertainty").mkdir()
        summary = {
            "method": "deep ensemble (3)",
            "target_coverage": 0.9,
            "threshold": 0.42,
            "abstention_rate": abstention,
            "n": 24,
            "ood": {
                "ct_volume": {
                    "n": 10,
                    "abstained": round(10 * ood_rate),
                    "rate": round(10 * ood_rate) / 10,
                },
                "noise": {"n": 10, "abstained": 10, "rate": 1.0},
                "in_distribution": {
                    "n": 24,
                    "abstained": 2,
                    "rate": 2 / 24,
                    "in_distribution": True,
                },
            },
            "ood_auroc": {"value": 0.97, "lower": 0.93, "upper": 1.0},
        }
        (run / "uncertainty" / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    if "explain" in sections:
        ex = run / "explain"
        (ex / "cases").mkdir(parents=True)
        cases = []
        for i in range(4):
            (ex / "cases" / f"case{i}.png").write_bytes(_png(i))
            cases.append(
                {
                    "case_id": f"study {i}",
                    "correct": i % 2 == 0,
                    "caption": "Grad-CAM",
                    "image": f"cases/case{i}.png",
                }
            )
        drop_marker = (0.12, 0.07, 0.17, 0.001) if shortcut else (0.004, -0.01, 0.02, 0.6)
        summary = {
            "methods": ["gradcam", "integrated_gradients"],
            "sanity_checks": [
                {
                    "method": "gradcam",
                    "test": "model_randomisation",
                    "similarity": 0.9 if sanity_fail else 0.12,
                    "threshold": 0.5,
                    "passed": not sanity_fail,
                },
                {
                    "method": "integrated_gradients",
                    "test": "data_randomisation",
                    "similarity": 0.2,
                    "threshold": 0.5,
                    "passed": True,
                },
            ],
            "occlusion": [
                {
                    "region": "marker",
                    "anatomical": False,
                    "metric": "C-index",
                    "original": 0.74,
                    "occluded": 0.74 - drop_marker[0],
                    "drop": {
                        "value": drop_marker[0],
                        "lower": drop_marker[1],
                        "upper": drop_marker[2],
                    },
                    "p_value": drop_marker[3],
                    "subset": "site_a",
                },
                {
                    "region": "lv_cavity",
                    "anatomical": True,
                    "metric": "C-index",
                    "original": 0.74,
                    "occluded": 0.55,
                    "drop": {"value": 0.19, "lower": 0.12, "upper": 0.26},
                    "p_value": 0.0005,
                },
            ],
            "phases": [
                {
                    "phase": "systole",
                    "metric": "C-index",
                    "drop": {"value": 0.1, "lower": 0.04, "upper": 0.16},
                    "p_value": 0.002,
                },
                {
                    "phase": "diastole",
                    "metric": "C-index",
                    "drop": {"value": 0.03, "lower": -0.01, "upper": 0.07},
                    "p_value": 0.2,
                },
            ],
            "frame_importance": {
                "frames": list(range(16)),
                "importance": list(np.abs(np.sin(np.arange(16) / 3)) / 10),
                "phase": ["systole"] * 8 + ["diastole"] * 8,
            },
            "cases": cases,
            "shapley": {"image": 0.31, "age": 0.08, "sex": 0.01},
        }
        (ex / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    if "audit" in sections:
        (run / "audit").mkdir()
        rows = []
        for attr, groups in (
            ("sex", ("F", "M")),
            ("ethnicity", ("A", "B", "C")),
            ("site", ("site_a", "site_b", "site_c")),
        ):
            for g in groups:
                gap = subgroup_gap and attr == "ethnicity" and g == "C"
                v = 0.58 if gap else 0.75
                d = (-0.16, -0.27, -0.05) if gap else (0.01, -0.08, 0.1)
                rows.append(
                    {
                        "attribute": attr,
                        "group": g,
                        "metric": "C-index",
                        "n": 40,
                        "events": 24,
                        "estimate": {"value": v, "lower": v - 0.08, "upper": v + 0.08},
                        "difference": {"value": d[0], "lower": d[1], "upper": d[2]},
                    }
                )
        rows.append(
            {
                "attribute": "sex×ethnicity",
                "group": "F×C",
                "metric": "C-index",
                "n": 9,
                "events": 4,
                "estimate": {"value": 0.6, "lower": 0.3, "upper": 0.9},
                "difference": {"value": -0.14, "lower": -0.45, "upper": 0.16},
                "small_n": True,
            }
        )
        table = [
            {
                "attribute": "overall",
                "group": "overall",
                "metric": "c_index",
                "n": 120,
                "events": 70,
                "estimate": 0.74,
                "lower": 0.68,
                "upper": 0.8,
            }
        ]
        summary = {
            "schema": "hidim.audit/1",
            "settings": {"task": "survival", "n": 120, "n_boot": 1000, "reference": "overall"},
            "attributes": ["sex", "ethnicity", "site"],
            "metrics": ["c_index"],
            "rows": rows,
            "table": table,
            "predictions": "predictions.parquet",
            "tradeoff": {
                "performance_metric": "C-index",
                "disparity_metric": "C-index gap",
                "points": [
                    {"weight": w, "performance": 0.75 - 0.02 * k, "disparity": 0.16 / (1 + 2 * k)}
                    for k, w in enumerate((0.0, 0.1, 1.0))
                ],
            },
        }
        (run / "audit" / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run
