"""What ``hidim inspect STORE`` shows: one line per series and the ledger's problems."""

from __future__ import annotations

import pandas as pd

from hidim.store.store import Store

__all__ = ["series_table", "ledger_summary"]

_SERIES_COLUMNS = (
    "series_key",
    "modality",
    "view",
    "layout",
    "n_frames",
    "fps_original",
    "fps",
    "channels",
    "rows",
    "cols",
    "stored_dtype",
    "split",
)


def series_table(store: Store) -> pd.DataFrame:
    """The manifest's most useful columns, sorted by split, modality and key."""
    m = store.manifest
    cols = [c for c in _SERIES_COLUMNS if c in m.columns]
    return (
        m[cols]
        .sort_values([c for c in ("split", "modality", "series_key") if c in cols], kind="stable")
        .reset_index(drop=True)
    )


def ledger_summary(store: Store) -> tuple[dict[str, int], pd.DataFrame]:
    """Ledger counts by status, and the not-ok files grouped by (status, reason) with counts."""
    ledger = store.ledger
    counts = {str(k): int(v) for k, v in ledger["status"].value_counts().items()}
    problems = (
        ledger[ledger["status"] != "ok"]
        .groupby(["status", "reason"], dropna=False)
        .size()
        .rename("files")
        .reset_index()
        .sort_values(["status", "files"], ascending=[True, False], kind="stable")
        .reset_index(drop=True)
    )
    return counts, problems
