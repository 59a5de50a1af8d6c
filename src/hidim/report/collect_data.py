"""Section 1 (Data): the cohort in the store, its labels, de-identification and the ledger.

Reads the store's Parquet files directly with pandas (the store format is documented to be
readable without hidim) and the de-identification audit Parquet. Nothing here echoes PHI:
inputs are identified by the hashed ``input_id`` the ledgers already use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hidim.report.sections import (
    CohortSummary,
    CountRow,
    DataSection,
    DeidSummary,
    LabelSummary,
    LedgerFailure,
    Summary,
)

__all__ = [
    "collect_data",
    "cohort_summary",
    "label_summary",
    "deid_summary",
    "DEID_ACTIONS",
    "counts",
    "DEMOGRAPHIC_COLUMNS",
    "MAX_LEDGER_ROWS",
]

DEMOGRAPHIC_COLUMNS = ("sex", "ethnicity", "site", "income", "age_band")
"""Label columns shown as demographic counts (``age`` is shown as bands)."""

MAX_LEDGER_ROWS = 50
"""At most this many failed/skipped inputs are listed in the HTML (all are counted)."""

_KEY_COLUMNS = {"patient_key", "study_uid", "series_key", "time", "event", "split"}

_OK_STATUSES = ("ok", "written", "deidentified", "resumed", "skipped_existing", "unchanged")
"""Ledger/audit statuses that mean the input was used."""

AGE_BANDS = ((0, 50, "<50"), (50, 65, "50-64"), (65, 80, "65-79"), (80, 200, "80+"))


def counts(
    values: pd.Series, *, missing: str = "unknown", order: tuple[str, ...] = ()
) -> tuple[CountRow, ...]:
    """Value counts as rows; nulls counted as ``missing``.

    Labels listed in ``order`` come first in that order; the rest most frequent first
    (ties by label).
    """
    vc = values.astype("object").where(values.notna(), missing).astype(str).value_counts()
    rank = {k: i for i, k in enumerate(order)}
    items = sorted(vc.items(), key=lambda kv: (rank.get(kv[0], len(rank)), -int(kv[1]), kv[0]))
    return tuple(CountRow(label=str(k), count=int(v)) for k, v in items)


def _summary(df: pd.DataFrame, column: str) -> Summary:
    if column not in df.columns:
        return Summary()
    x = pd.to_numeric(df[column], errors="coerce").dropna().to_numpy(dtype=float)
    if x.size == 0:
        return Summary()
    return Summary(min=float(x.min()), median=float(np.median(x)), max=float(x.max()))


def cohort_summary(manifest: pd.DataFrame) -> CohortSummary:
    """Patients, studies, series, views, scanners, splits and frame rates of a manifest."""
    patients = manifest["patient_key"] if "patient_key" in manifest else pd.Series(dtype=str)
    splits: tuple[CountRow, ...] = ()
    if "split" in manifest.columns and "patient_key" in manifest.columns:
        per_split = manifest.groupby(manifest["split"].fillna("unassigned"))[
            "patient_key"
        ].nunique()
        splits = tuple(
            CountRow(label=str(k), count=int(v))
            for k, v in sorted(
                per_split.items(),
                key=lambda kv: (
                    ["train", "val", "test"].index(kv[0])
                    if kv[0] in ("train", "val", "test")
                    else 9
                ),
            )
        )
    return CohortSummary(
        n_patients=int(patients.nunique()),
        n_studies=int(manifest["study_uid"].nunique()) if "study_uid" in manifest else 0,
        n_series=len(manifest),
        modalities=counts(manifest["modality"]) if "modality" in manifest else (),
        views=counts(manifest["view"]) if "view" in manifest else (),
        manufacturers=counts(manifest["manufacturer"]) if "manufacturer" in manifest else (),
        splits=splits,
        fps_original=_summary(manifest, "fps_original"),
        fps_normalised=_summary(manifest, "fps"),
        n_frames=_summary(manifest, "n_frames"),
    )


def _median_follow_up(time: np.ndarray, event: np.ndarray) -> float | None:
    """Median follow-up by the reverse Kaplan–Meier method (censoring as the 'event')."""
    from lifelines import KaplanMeierFitter

    if time.size == 0 or (~event).sum() == 0:
        return None
    km = KaplanMeierFitter().fit(time, event_observed=~event)
    med = float(km.median_survival_time_)
    return med if np.isfinite(med) else float(np.max(time))


def label_summary(labels: pd.DataFrame) -> LabelSummary:
    """Labelled patients, events, follow-up, targets and demographic counts."""
    n_events = event_rate = follow_up = None
    if "event" in labels.columns and "time" in labels.columns:
        ok = labels["time"].notna() & labels["event"].notna()
        ev = labels.loc[ok, "event"].astype(bool).to_numpy()
        tm = labels.loc[ok, "time"].astype(float).to_numpy()
        n_events = int(ev.sum())
        event_rate = float(ev.mean()) if ev.size else None
        follow_up = _median_follow_up(tm, ev)
    demo: dict[str, tuple[CountRow, ...]] = {}
    frame = labels.copy()
    if "age" in frame.columns and "age_band" not in frame.columns:
        age = pd.to_numeric(frame["age"], errors="coerce")
        band = pd.Series([None] * len(frame), index=frame.index, dtype="object")
        for lo, hi, name in AGE_BANDS:
            band[(age >= lo) & (age < hi)] = name
        frame["age_band"] = band
    for col in DEMOGRAPHIC_COLUMNS:
        if col in frame.columns:
            order = tuple(b[2] for b in AGE_BANDS) if col == "age_band" else ()
            demo[col] = counts(frame[col], order=order)
    targets = tuple(
        c
        for c in labels.columns
        if c not in _KEY_COLUMNS and c not in DEMOGRAPHIC_COLUMNS and c != "age"
    )
    n = labels["patient_key"].nunique() if "patient_key" in labels.columns else len(labels)
    return LabelSummary(
        n_labelled=int(n),
        n_events=n_events,
        event_rate=event_rate,
        median_follow_up=follow_up,
        targets=targets,
        demographics=demo,
    )


def _sum_int(df: pd.DataFrame, column: str) -> int | None:
    if column not in df.columns:
        return None
    return int(pd.to_numeric(df[column], errors="coerce").fillna(0).sum())


DEID_ACTIONS: dict[str, str] = {
    "removed": "attributes removed (X)",
    "emptied": "attributes emptied (Z)",
    "dummied": "replaced by dummy values (D)",
    "uids_remapped": "UIDs remapped (U)",
    "dates_shifted": "dates shifted",
    "pseudonyms": "IDs and names pseudonymised",
    "clean_removed": "free text removed (clean)",
    "private_removed": "private attributes removed",
    "overlays_removed": "overlays removed",
    "curves_removed": "curves removed",
    "unknown_removed": "unknown attributes removed",
}
"""Audit count columns of ``hidim deid`` (``deid_audit.parquet``) and how the report names them."""


def deid_summary(audit: pd.DataFrame) -> DeidSummary:
    """What the de-identification audit Parquet says happened (counts only, no PHI)."""
    status = (
        audit["status"].astype(str) if "status" in audit.columns else pd.Series(["ok"] * len(audit))
    )
    quarantined = status.eq("quarantined")
    actions = [
        CountRow(label=label, count=total)
        for col, label in DEID_ACTIONS.items()
        if (total := _sum_int(audit, col))
    ]
    reasons = counts(audit.loc[quarantined, "reason"]) if "reason" in audit.columns else ()
    masked = None
    if "masked_fraction" in audit.columns:
        masked = int((pd.to_numeric(audit["masked_fraction"], errors="coerce").fillna(0) > 0).sum())
    decisions: tuple[CountRow, ...] = ()
    if "pixel_decision" in audit.columns:
        decisions = counts(audit.loc[status.eq("ok"), "pixel_decision"].replace("", None))
    return DeidSummary(
        n_inputs=len(audit),
        n_written=int(status.isin(_OK_STATUSES).sum()),
        n_quarantined=int(quarantined.sum()),
        n_failed=int(status.isin(["failed", "error"]).sum()),
        n_skipped=int(status.eq("skipped").sum()),
        actions=tuple(actions),
        pixel_decisions=decisions,
        files_pixels_masked=masked,
        ocr_text_boxes=_sum_int(audit, "ocr_boxes"),
        quarantine_reasons=reasons,
    )


def _ledger_failures(ledger: pd.DataFrame, stage: str) -> list[LedgerFailure]:
    """Rows of a ledger/audit whose status is not a success (failed, skipped, quarantined)."""
    if "status" not in ledger.columns:
        return []
    bad = ledger[~ledger["status"].astype(str).isin(_OK_STATUSES)]
    ids = (
        bad["input_id"]
        if "input_id" in bad.columns
        else pd.Series(range(len(bad)), index=bad.index)
    )
    reasons = (
        bad["reason"] if "reason" in bad.columns else pd.Series([""] * len(bad), index=bad.index)
    )
    return [
        LedgerFailure(input_id=str(i), stage=stage, status=str(s), reason=str(r or ""))
        for i, s, r in zip(ids, bad["status"], reasons, strict=True)
    ]


def collect_data(store_dir: Path | None, deid_audit: Path | None = None) -> DataSection:
    """Section 1 from a store directory and (optionally) a de-identification audit Parquet."""
    sources: list[str] = []
    cohort = labels = deid = None
    failures: list[LedgerFailure] = []
    ledger_counts: tuple[CountRow, ...] = ()
    missing: list[str] = []
    if store_dir is not None and (store_dir / "manifest.parquet").is_file():
        cohort = cohort_summary(pd.read_parquet(store_dir / "manifest.parquet"))
        sources.append(str(store_dir / "manifest.parquet"))
    else:
        missing.append("store manifest")
    if store_dir is not None and (store_dir / "labels.parquet").is_file():
        labels = label_summary(pd.read_parquet(store_dir / "labels.parquet"))
        sources.append(str(store_dir / "labels.parquet"))
    if store_dir is not None and (store_dir / "ledger.parquet").is_file():
        ledger = pd.read_parquet(store_dir / "ledger.parquet")
        ledger_counts = counts(ledger["status"]) if "status" in ledger.columns else ()
        failures.extend(_ledger_failures(ledger, "curate"))
        sources.append(str(store_dir / "ledger.parquet"))
    if deid_audit is not None and deid_audit.is_file():
        audit = pd.read_parquet(deid_audit)
        deid = deid_summary(audit)
        failures.extend(
            f for f in _ledger_failures(audit, "de-identify") if f.status != "quarantined"
        )
        sources.append(str(deid_audit))
    if cohort is None and deid is None:
        return DataSection(
            status="not_run",
            note="No store found for this run: pass --store STORE (the folder `hidim curate` wrote).",
        )
    failures.sort(key=lambda f: (f.status != "failed", f.stage, f.input_id))
    return DataSection(
        status="partial" if missing else "ok",
        note=("Missing: " + ", ".join(missing) + ".") if missing else "",
        sources=tuple(sources),
        cohort=cohort,
        labels=labels,
        deid=deid,
        ledger_counts=ledger_counts,
        ledger_failures=tuple(failures[:MAX_LEDGER_ROWS]),
        n_ledger_failures=sum(f.status == "failed" for f in failures),
        n_ledger_not_used=len(failures),
    )
