"""hidim.store — the on-disk store: Parquet tables + lossless chunked arrays, and Datasets.

See ``docs/store.md`` for the format (readable without hidim) and
:mod:`hidim.store.layout` for the exact columns.
"""

from hidim.store.dataset import ClipDataset
from hidim.store.intensity import apply_intensity_norm, parse_intensity_norm
from hidim.store.layout import SPLITS, array_relpath, input_id, series_key
from hidim.store.store import Store
from hidim.store.study_dataset import StudyDataset
from hidim.store.tabular import TabularEncoder, labels_per_series

__all__ = [
    "SPLITS",
    "ClipDataset",
    "Store",
    "StudyDataset",
    "TabularEncoder",
    "apply_intensity_norm",
    "array_relpath",
    "input_id",
    "labels_per_series",
    "parse_intensity_norm",
    "series_key",
]
