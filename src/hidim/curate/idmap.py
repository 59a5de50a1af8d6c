"""The re-identification table written by ``hidim deid`` (``kind,original,pseudonym`` CSV).

Label files and annotation exports made in the hospital carry the *original* identifiers
(MRN, StudyInstanceUID...). The table maps them to the pseudonyms the de-identified store
holds. It contains PHI: keep it outside the store; hidim reads it, never copies it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from hidim.errors import LabelError

__all__ = ["IdMap", "load_id_map"]

IdMap = dict[str, dict[str, str]]

_COLUMNS = ("kind", "original", "pseudonym")


def load_id_map(path: str | os.PathLike[str]) -> IdMap:
    """Read a re-identification table into ``{kind: {original: pseudonym}}``.

    Raises:
        LabelError: the file is missing, lacks the three columns, or maps one original to
            two pseudonyms (the message names the file, kind and line).
    """
    p = Path(path)
    if not p.is_file():
        raise LabelError(
            f"expected the re-identification table (CSV from `hidim deid --reid-table`) at {p}, found no file"
        )
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise LabelError(
            f"{p}: expected a CSV with columns {_COLUMNS}, could not parse it ({exc})"
        ) from None
    missing = [c for c in _COLUMNS if c not in df.columns]
    if missing:
        raise LabelError(
            f"{p}: expected columns {list(_COLUMNS)}, missing {missing} (found {list(df.columns)}); "
            "pass the table written by `hidim deid --reid-table`"
        )
    out: IdMap = {}
    for i, (kind, original, pseudonym) in enumerate(
        zip(df["kind"], df["original"], df["pseudonym"], strict=True)
    ):
        table = out.setdefault(kind.strip(), {})
        prev = table.get(original)
        if prev is not None and prev != pseudonym:
            raise LabelError(
                f"{p} line {i + 2}: kind {kind!r} maps one original to two pseudonyms; "
                "use the table from a single `hidim deid` key"
            )
        table[original] = pseudonym
    return out
