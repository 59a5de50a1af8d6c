"""The demo's out-of-distribution stage: inputs that are not echocardiograms, through the same
path as patients (de-identify → curate → predict), then the abstain rule calibrated on
validation is applied unchanged (:func:`hidim.evaluate.uncertainty.ood_abstention_summary`)
and the result written to ``RUN/uncertainty/summary.json`` for the report.

Inputs that never reach the model (a CT volume has no A4C loop, so ``predict`` does not
score it) are recorded as refused before the model, with that note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["ood_stage", "ood_kinds"]


def ood_stage(
    *, phantom: Path, run: Path, out: Path, secrets: Path, fps: float, n_boot: int, seed: int
) -> str:
    """De-identify, curate and predict the phantom's OOD inputs; write the OOD summary.

    Args:
        phantom: The phantom folder (``ood/`` inputs and ``truth.json``).
        run: The trained run (its validation/test uncertainties set the reference).
        out: The demo folder (``deid_ood/`` and ``store_ood/`` are written there).
        secrets: Folder of the project key; the OOD re-identification table goes there.
        fps: Frame rate the OOD loops are resampled to (as the patients' were).
        n_boot: Bootstrap replicates of the OOD AUROC.
        seed: Bootstrap seed.

    Returns:
        A one-line summary for the demo's progress output.
    """
    import json

    import pandas as pd

    from hidim.curate.pipeline import curate
    from hidim.deidentify.pipeline import deidentify
    from hidim.evaluate.uncertainty import ood_abstention_summary
    from hidim.provenance import atomic_write_text
    from hidim.store import Store
    from hidim.training.predict import predict

    reid = secrets / "reid_ood.csv"
    deidentify(
        [phantom / "ood"],
        out / "deid_ood",
        key_file=secrets / "project.key",
        reid_table=reid,
        show_progress=False,
    )
    store = out / "store_ood"
    curate(out / "deid_ood", store, fps=fps, show_progress=False)
    folder = run / "uncertainty"
    scored = predict(run, store, out=folder / "ood_predictions.parquet", show_progress=False)
    kinds = ood_kinds(phantom / "truth.json", reid, Store(store).manifest)
    studies = pd.read_parquet(run / "predictions.parquet")
    info = json.loads((run / "predictions.json").read_text(encoding="utf-8"))
    # predict's own rule (uncertainty and image-density gate, fitted on validation): its
    # abstain_score is above 1 exactly where it abstains
    column = "abstain_score" if "abstain_score" in studies else "uncertainty"
    by_series = scored.studies.set_index("series_key")[column]
    # series predict did not score (a CT has no A4C loop) are handled below
    ood = {
        k: by_series.loc[[s for s in keys if s in by_series.index]].to_numpy(float)
        for k, keys in kinds.items()
    }
    summary = ood_abstention_summary(
        studies.loc[studies["split"] == "val", column].to_numpy(),
        studies.loc[studies["split"] == "test", column].to_numpy(),
        {k: v for k, v in ood.items() if v.size},
        target_coverage=float(info["coverage"]),
        n_boot=n_boot,
        seed=seed,
        threshold=1.0 if column == "abstain_score" else None,
    )
    summary["score"] = column
    summary["abstain_rule"] = info.get("abstain_rule")
    summary["ood_threshold"] = info.get("ood_threshold")
    summary["uncertainty_threshold"] = info.get("abstain_threshold")
    for kind, keys in kinds.items():
        if not ood[kind].size:  # e.g. a CT volume: no A4C loop, so the model never saw it
            summary["ood"][kind] = {
                "abstention": 1.0,
                "n": len(keys),
                "note": "refused before the model: not an A4C echo loop",
            }
    atomic_write_text(folder / "summary.json", json.dumps(summary, indent=2))
    rates = ", ".join(f"{k} {100 * v['abstention']:.0f} %" for k, v in summary["ood"].items())
    return f"abstained on OOD: {rates}; on test echoes {100 * summary['id_abstention']:.0f} %"


def ood_kinds(truth: Path, reid: Path, manifest: Any) -> dict[str, list[str]]:
    """Store series keys of each OOD kind: phantom truth UIDs → re-identification table."""
    import json

    import pandas as pd

    table = pd.read_csv(reid)
    pseudonym = dict(
        zip(
            table.loc[table["kind"] == "series_uid", "original"],
            table.loc[table["kind"] == "series_uid", "pseudonym"],
            strict=True,
        )
    )
    key_of = dict(zip(manifest["series_uid"], manifest["series_key"], strict=True))
    kinds: dict[str, list[str]] = {}
    for entry in json.loads(truth.read_text(encoding="utf-8"))["ood"]:
        uid = pseudonym.get(entry["series_uid"])
        if uid in key_of:
            kinds.setdefault(entry["kind"], []).append(key_of[uid])
    return kinds
