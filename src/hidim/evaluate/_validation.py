"""Input validation shared by every metric: numpy in, helpful :class:`EvaluationError` out."""

from __future__ import annotations

from typing import Any

import numpy as np

from hidim.errors import EvaluationError

__all__ = ["as_1d_float", "as_2d_float", "as_binary_labels", "check_same_length", "to_numpy"]


def to_numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_1d_float(x: Any, name: str, *, allow_nan: bool = False) -> np.ndarray:
    """A 1-D float64 array of finite values (``[n, 1]`` columns are flattened)."""
    a = to_numpy(x)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise EvaluationError(f"{name}: expected a 1-D array [n], received shape {a.shape}")
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.number):
        if a.dtype != np.bool_:
            raise EvaluationError(f"{name}: expected numbers, received dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    bad = ~np.isfinite(a) if not allow_nan else np.isinf(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EvaluationError(
            f"{name}: expected finite values, received {a[i]} at index {i}; "
            "drop or impute the sample before computing the metric"
        )
    return a


def as_2d_float(x: Any, name: str, *, n_rows: int | None = None) -> np.ndarray:
    """A 2-D float64 array ``[n, k]`` of finite values."""
    a = to_numpy(x)
    if a.ndim != 2:
        raise EvaluationError(f"{name}: expected a 2-D array [n, k], received shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    if n_rows is not None and a.shape[0] != n_rows:
        raise EvaluationError(f"{name}: expected {n_rows} rows, received {a.shape[0]}")
    if not np.isfinite(a).all():
        i, j = np.argwhere(~np.isfinite(a))[0]
        raise EvaluationError(f"{name}: expected finite values, received {a[i, j]} at [{i}, {j}]")
    return a


def as_binary_labels(y: Any, name: str = "labels") -> np.ndarray:
    """Binary labels as a bool array (accepts bool or exactly 0/1 numbers)."""
    a = to_numpy(y)
    if a.ndim != 1:
        raise EvaluationError(f"{name}: expected a 1-D array [n], received shape {a.shape}")
    if a.dtype == np.bool_:
        return a
    if not np.issubdtype(a.dtype, np.number):
        raise EvaluationError(f"{name}: expected 0/1 or bool labels, received dtype {a.dtype}")
    bad = (a != 0) & (a != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EvaluationError(
            f"{name}: expected binary labels 0/1, received {a[i].item()!r} at index {i}; "
            "binarise multi-class labels one-vs-rest first"
        )
    return a.astype(bool)


def check_same_length(**arrays: np.ndarray) -> int:
    """The common length of the named arrays, or an error listing every length."""
    lengths = {k: int(v.shape[0]) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise EvaluationError(f"inputs must have one entry per sample; received lengths {lengths}")
    return next(iter(lengths.values()))
