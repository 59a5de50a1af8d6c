"""The demo's out-of-distribution stage: inputs that are not echocardiograms, through the same
path as patients (de-identify → curate → :func:`hidim.training.ood_check.ood_check`: predict
with the run's validation-calibrated abstain rule applied unchanged), the result written to
``RUN/uncertainty/summary.json`` for the report.

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
    from hidim.curate.pipeline import curate
    from hidim.deidentify.pipeline import deidentify
    from hidim.store import Store
    from hidim.training.ood_check import ood_check

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
    kinds = ood_kinds(phantom / "truth.json", reid, Store(store).manifest)
    by_series = {key: kind for kind, keys in kinds.items() for key in keys}
    summary = ood_check(run, store, kinds=by_series, n_boot=n_boot, seed=seed, show_progress=False)
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
