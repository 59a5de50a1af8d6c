"""``hidim ood-check RUN STORE``: does a trained model say "I don't know" on inputs that are
not what it was trained on?

The inputs (a store curated from, e.g., another modality, phantom test objects, screen
recordings, or another hospital's data) go through :func:`hidim.training.predict.predict`
exactly as patients do, and the run's own abstain rule — uncertainty and image-density
gate, thresholds fitted on the training store's validation split (``abstention.json``) —
is applied unchanged. Series the model refuses before scoring (no view it takes) count as
abstained, with the reason. The summary (per-kind abstention, in-distribution test
abstention, OOD AUROC with a bootstrap CI) goes to ``RUN/uncertainty/summary.json``, where
``hidim report`` reads it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hidim.errors import TrainingError
from hidim.provenance import atomic_write_text
from hidim.store import Store

__all__ = ["ood_check", "SUMMARY_FILE"]

SUMMARY_FILE = Path("uncertainty") / "summary.json"


def ood_check(
    run_dir: str | os.PathLike[str],
    store: str | os.PathLike[str],
    *,
    kinds: Mapping[str, str] | None = None,
    kind_column: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Predict every series of ``store`` with the run and summarise its abstentions.

    Args:
        run_dir: A finished ``hidim train`` run whose ``predictions.parquet`` (on its
            training store) exists: its validation/test studies are the in-distribution
            reference and ``abstention.json`` holds the rule.
        store: The store of out-of-distribution inputs.
        kinds: ``{series_key: kind}`` to report abstention per kind (e.g. ``ct_volume``,
            ``noise``); series not in it are ``other``.
        kind_column: Or a manifest column naming each series' kind (e.g. ``modality``).
        n_boot, seed: Bootstrap of the OOD AUROC.
        show_progress: Progress bar while predicting.

    Returns:
        The summary written to ``RUN/uncertainty/summary.json``.

    Raises:
        TrainingError: the run has not been predicted on its training store yet.
    """
    from hidim.evaluate.uncertainty import ood_abstention_summary
    from hidim.training.predict import predict

    run = Path(run_dir)
    ref_file = run / "predictions.parquet"
    if not ref_file.is_file():
        raise TrainingError(
            f"expected {ref_file} (the run's predictions on its training store); run "
            f"`hidim predict {run}` first: it also fits the abstain rule on validation"
        )
    studies = pd.read_parquet(ref_file)
    info = json.loads((run / "predictions.json").read_text(encoding="utf-8"))
    st = Store(store)
    scored = predict(
        run, st, out=run / "uncertainty" / "ood_predictions.parquet", show_progress=show_progress
    )
    manifest = st.manifest.set_index("series_key")
    if kinds is None and kind_column is not None:
        if kind_column not in manifest:
            raise TrainingError(
                f"kind_column {kind_column!r} is not a manifest column of {st.path}; "
                f"choose one of {sorted(manifest.columns)}"
            )
        kinds = {str(k): str(v) for k, v in manifest[kind_column].items()}
    kind_of = dict(kinds or {})

    def kind(key: str) -> str:
        return kind_of.get(key, "other" if kind_of else "ood")

    column = "abstain_score" if "abstain_score" in studies else "uncertainty"
    series = scored.studies.assign(kind=[kind(str(k)) for k in scored.studies["series_key"]])
    values = {k: g[column].to_numpy(float) for k, g in series.groupby("kind", sort=True)}
    refused = scored.refused if scored.refused is not None else pd.DataFrame()
    if not values:
        raise TrainingError(
            f"the model scored no series of {st.path} (all refused before the model: "
            f"{len(refused)}); there is nothing to check its uncertainty on"
        )
    summary = ood_abstention_summary(
        studies.loc[studies["split"] == "val", column].to_numpy(),
        studies.loc[studies["split"] == "test", column].to_numpy(),
        values,
        target_coverage=float(info["coverage"]),
        n_boot=n_boot,
        seed=seed,
        threshold=1.0 if column == "abstain_score" else None,
    )
    if "abstain_reason" in series:
        for k, g in series.groupby("kind", sort=True):
            summary["ood"][k]["by_gate"] = int((g["abstain_reason"] == "out_of_distribution").sum())
    for k, g in refused.assign(kind=[kind(str(s)) for s in refused.get("series_key", [])]).groupby(
        "kind", sort=True
    ):
        row = summary["ood"].get(k)
        n_ref = len(g)
        if row is None:
            summary["ood"][k] = {
                "abstention": 1.0,
                "n": n_ref,
                "note": f"refused before the model: {g['reason'].iloc[0]}",
            }
        else:  # some scored, some refused: refused ones count as abstained
            answered = (1 - row["abstention"]) * row["n"]
            row["n"] += n_ref
            row["abstention"] = float(1 - answered / row["n"])
            row["note"] = f"{n_ref} refused before the model"
    n_all = sum(int(r["n"]) for r in summary["ood"].values())
    summary["ood_abstention"] = float(
        np.sum([r["abstention"] * r["n"] for r in summary["ood"].values()]) / max(n_all, 1)
    )
    summary["n_ood"] = n_all
    summary.update(
        score=column,
        store=str(st.path.resolve()),
        abstain_rule=info.get("abstain_rule"),
        uncertainty_source=info.get("uncertainty_source"),
        uncertainty_threshold=info.get("abstain_threshold"),
        ood_threshold=info.get("ood_threshold"),
    )
    atomic_write_text(run / SUMMARY_FILE, json.dumps(summary, indent=2, default=float))
    return summary
