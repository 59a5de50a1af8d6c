"""Tolerant readers of run artefacts: JSON/YAML/Parquet files and the numbers inside them.

The report reads what other commands wrote; a missing or unreadable file is reported, not
raised. Estimates are recognised in the shapes hidim's commands write
(``{"value", "lower", "upper"}``, ``{"estimate", "ci": [lo, hi]}``, ``{"ci_low", "ci_high"}``
and plain numbers).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from hidim.report.sections import Estimate

__all__ = [
    "read_json",
    "read_yaml",
    "read_parquet",
    "as_estimate",
    "is_estimate",
    "walk_estimates",
    "flatten",
    "first",
    "finite",
]

_VALUE_KEYS = ("value", "estimate", "point", "mean")
_LOWER_KEYS = ("lower", "ci_low", "ci_lower", "lo", "low")
_UPPER_KEYS = ("upper", "ci_high", "ci_upper", "hi", "high")
_OTHER_KEYS = (
    "ci",
    "n",
    "n_samples",
    "se",
    "std",
    "sd",
    "level",
    "alpha",
    "n_boot",
    "n_bootstrap",
    "p_value",
    "method",
    "n_events",
)


def read_json(path: Path) -> Any | None:
    """Parsed JSON, or ``None`` when the file does not exist."""
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def read_yaml(path: Path) -> Any | None:
    """Parsed YAML (safe loader), or ``None`` when the file does not exist."""
    import yaml

    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def read_parquet(path: Path) -> pd.DataFrame | None:
    """A Parquet file as a DataFrame, or ``None`` when it does not exist."""
    if not path.is_file():
        return None
    return pd.read_parquet(path)


def finite(x: Any) -> float | None:
    """``float(x)`` when it is a finite number, else ``None``."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def first(mapping: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    """The value of the first of ``keys`` present (and not None) in ``mapping``."""
    for k in keys:
        if k in mapping and mapping[k] is not None:
            return mapping[k]
    return default


def is_estimate(obj: Any) -> bool:
    """Whether ``obj`` is a number or a mapping shaped like an estimate with a CI."""
    if finite(obj) is not None:
        return True
    return (
        isinstance(obj, Mapping)
        and any(k in obj for k in _VALUE_KEYS)
        and (any(k in obj for k in _LOWER_KEYS) or "ci" in obj or len(obj) <= 3)
    )


def as_estimate(obj: Any) -> Estimate:
    """An :class:`Estimate` from a number or an estimate-shaped mapping (else empty)."""
    if isinstance(obj, Estimate):
        return obj
    x = finite(obj)
    if x is not None:
        return Estimate(value=x)
    if not isinstance(obj, Mapping):
        return Estimate()
    value = finite(first(obj, *_VALUE_KEYS))
    lower = finite(first(obj, *_LOWER_KEYS))
    upper = finite(first(obj, *_UPPER_KEYS))
    ci = obj.get("ci")
    if (lower is None or upper is None) and isinstance(ci, (list, tuple)) and len(ci) == 2:
        lower, upper = finite(ci[0]), finite(ci[1])
    return Estimate(value=value, lower=lower, upper=upper)


def walk_estimates(
    obj: Any, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Estimate]]:
    """Every estimate inside a nested JSON object, with its key path."""
    if isinstance(obj, Mapping):
        if path and is_estimate(obj) and not any(isinstance(v, Mapping) for v in obj.values()):
            yield path, as_estimate(obj)
            return
        for k, v in obj.items():
            yield from walk_estimates(v, (*path, str(k)))
    elif finite(obj) is not None and path:
        yield path, as_estimate(obj)


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """A nested mapping as ``{"a.b.c": "value"}`` strings (lists JSON-encoded)."""
    out: dict[str, str] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, Mapping) and v:
                out.update(flatten(v, key))
            elif isinstance(v, (list, tuple)):
                out[key] = json.dumps(v, default=str)
            else:
                out[key] = "null" if v is None else str(v)
    return out
