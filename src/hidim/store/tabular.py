"""Join labels to series and encode tabular (clinical/demographic) columns as features.

Labels are patient-level (``study_uid`` null) or study-level rows. A series takes the values
of its study's row where that row has them, otherwise its patient's row.

:class:`TabularEncoder` turns label columns into a float vector ``[F]`` plus a bool mask
``[F]`` of missing values: numbers and booleans are one feature each (z-scored with the
statistics of the rows it was fitted on — the training split — so no information leaks from
validation or test), text columns are one-hot over the categories seen when fitting.
A missing value is encoded as 0 with its mask bit set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hidim.errors import LabelError

__all__ = ["labels_per_series", "TabularEncoder"]


def labels_per_series(manifest: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Label columns aligned row-for-row with ``manifest`` (same index).

    Args:
        manifest: store manifest (needs ``patient_key`` and ``study_uid``).
        labels: ``labels.parquet`` (``patient_key`` and optional ``study_uid`` plus targets).

    Returns:
        A DataFrame with the label columns (keys excluded), NaN/None where no label exists.
    """
    if "patient_key" not in labels.columns:
        raise LabelError(
            "expected a 'patient_key' column in labels.parquet, found columns "
            f"{list(labels.columns)}; re-import labels with `hidim labels import`"
        )
    value_cols = [c for c in labels.columns if c not in ("patient_key", "study_uid")]
    left = manifest[["patient_key", "study_uid"]].reset_index(drop=True)
    has_study = "study_uid" in labels.columns
    study_rows = labels[labels["study_uid"].notna()] if has_study else labels.iloc[0:0]
    patient_rows = labels[labels["study_uid"].isna()] if has_study else labels
    by_patient = left[["patient_key"]].merge(
        patient_rows[["patient_key", *value_cols]].drop_duplicates("patient_key"),
        on="patient_key",
        how="left",
    )
    out = by_patient[value_cols]
    if len(study_rows):
        by_study = left[["study_uid"]].merge(
            study_rows[["study_uid", *value_cols]].drop_duplicates("study_uid"),
            on="study_uid",
            how="left",
        )[value_cols]
        out = by_study.combine_first(out)[value_cols]
    out.index = manifest.index
    return out


@dataclass
class TabularEncoder:
    """Encode label columns into ``[F]`` float features + ``[F]`` missing mask.

    Build with :meth:`fit`; apply with :meth:`transform`.

    Attributes:
        columns: the label columns encoded, in order.
        names: feature names (``col`` for numbers, ``col=value`` for one-hot text).
        means, stds: z-score statistics per numeric column (from the fitted rows).
        categories: one-hot categories per text column.
    """

    columns: tuple[str, ...] = ()
    names: list[str] = field(default_factory=list)
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, columns: Sequence[str], *, standardise: bool = True
    ) -> TabularEncoder:
        """Learn feature layout (and z-score statistics) from ``frame``'s ``columns``.

        Raises:
            LabelError: a column is absent (the message lists the available ones).
        """
        enc = cls(columns=tuple(columns))
        for col in columns:
            if col not in frame.columns:
                raise LabelError(
                    f"expected tabular column {col!r} in the labels, available: "
                    f"{sorted(c for c in frame.columns if c not in ('patient_key', 'study_uid'))}; "
                    "import it with `hidim labels import` or fix the name"
                )
            s = frame[col]
            if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
                x = pd.to_numeric(s, errors="coerce").astype(float)
                mean = float(np.nanmean(x)) if x.notna().any() and standardise else 0.0
                std = float(np.nanstd(x)) if x.notna().sum() > 1 and standardise else 1.0
                enc.means[col], enc.stds[col] = mean, (std if std > 0 else 1.0)
                enc.names.append(col)
            else:
                cats = sorted({str(v) for v in s.dropna()})
                enc.categories[col] = cats
                enc.names.extend(f"{col}={c}" for c in cats)
        return enc

    @property
    def n_features(self) -> int:
        """F, the length of the feature vector."""
        return len(self.names)

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Features ``[N, F]`` float32 and missing mask ``[N, F]`` bool for ``frame``'s rows."""
        n = len(frame)
        values = np.zeros((n, self.n_features), dtype=np.float32)
        missing = np.zeros((n, self.n_features), dtype=bool)
        j = 0
        for col in self.columns:
            s = frame[col] if col in frame.columns else pd.Series([None] * n, index=frame.index)
            if col in self.categories:
                cats = self.categories[col]
                absent = s.isna().to_numpy()
                text = s.astype(object).map(
                    lambda v: (
                        None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                    )
                )
                for k, cat in enumerate(cats):
                    values[:, j + k] = (text == cat).to_numpy(dtype=np.float32)
                    missing[:, j + k] = absent
                j += len(cats)
            else:
                x = pd.to_numeric(s, errors="coerce").astype(float).to_numpy()
                absent = np.isnan(x)
                values[:, j] = np.where(absent, 0.0, (x - self.means[col]) / self.stds[col])
                missing[:, j] = absent
                j += 1
        return values, missing
