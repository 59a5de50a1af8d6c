"""Who takes part: one :class:`Site` per hospital, each reading only its own data.

A site is a store (``hidim curate`` output) and, optionally, the subset of its patients
that belongs to the site. Two ways to define sites:

* :func:`sites_from_stores` — real federations: each hospital has its own store
  (``--site-store north=/data/north_store``);
* :func:`sites_from_column` — simulation: one store split by a label or manifest column
  (``--split-by site``). The column must give every patient exactly one value.

A site uses its store's ``split`` column: it trains on its own ``train`` patients,
validates on its ``val`` patients and is tested on its ``test`` patients.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hidim.errors import FederatedError, HidimError
from hidim.store import Store

__all__ = ["Site", "sites_from_stores", "sites_from_column", "check_site_name"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_site_name(name: str) -> str:
    """Return ``name`` if it is a valid site name (letters, digits, ``_.-``; 1–64 chars)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise FederatedError(
            f"site names must be 1-64 letters, digits, '_', '.' or '-', received {name!r}; "
            "rename the site (it appears in file names and logs)"
        )
    return name


@dataclass(frozen=True)
class Site:
    """One participating hospital.

    Attributes:
        name: Site name (unique in a federation; appears in ``federated.json``).
        store: Path of the site's store.
        patients: The site's ``patient_key`` values in ``store`` (``None``: all of them).
    """

    name: str
    store: Path
    patients: frozenset[str] | None = None

    def __post_init__(self) -> None:
        check_site_name(self.name)

    def describe(self) -> dict[str, object]:
        """A JSON-able summary (no patient identifiers: only the count)."""
        return {
            "name": self.name,
            "store": str(self.store),
            "n_patients": None if self.patients is None else len(self.patients),
        }


def _open(path: Path, what: str) -> Store:
    try:
        return Store(path)
    except HidimError as exc:
        raise FederatedError(f"{what}: {exc}") from exc


def sites_from_stores(stores: Mapping[str, str | os.PathLike[str]]) -> list[Site]:
    """One site per store: ``{"north": "/data/north_store", ...}``.

    Raises:
        FederatedError: fewer than one site, a bad name, or a path that is not a store.
    """
    if not stores:
        raise FederatedError("expected at least one site (NAME=STORE), received none")
    sites = []
    for name, path in stores.items():
        check_site_name(name)
        store = Path(path).resolve()
        _open(store, f"site {name!r}")
        sites.append(Site(name=name, store=store))
    return sites


def _patient_values(store: Store, column: str) -> pd.Series:
    """One value of ``column`` per patient (labels first, then the manifest)."""
    labels = store.labels if store.has_labels else None
    if labels is not None and column in labels.columns:
        frame = labels[["patient_key", column]]
        source = "labels.parquet"
    elif column in store.manifest.columns:
        frame = store.manifest[["patient_key", column]]
        source = "manifest.parquet"
    else:
        available = sorted(
            set(store.manifest.columns) | (set(labels.columns) if labels is not None else set())
        )
        raise FederatedError(
            f"--split-by {column!r}: no such column in {store.path}'s labels or manifest; "
            f"available: {available}"
        )
    frame = frame.dropna(subset=[column])
    n_values = frame.groupby("patient_key")[column].nunique()
    mixed = n_values[n_values > 1]
    if len(mixed):
        raise FederatedError(
            f"--split-by {column!r} ({source}): {len(mixed)} patients have more than one "
            "value, so they would sit in two sites; pick a patient-level column"
        )
    values = frame.drop_duplicates("patient_key").set_index("patient_key")[column]
    patients = set(store.manifest["patient_key"].astype(str))
    missing = patients - set(values.index.astype(str))
    if missing:
        raise FederatedError(
            f"--split-by {column!r} ({source}): {len(missing)} of {len(patients)} patients "
            "have no value; fill the column for every patient (nothing is dropped silently)"
        )
    return values.astype(str)


def sites_from_column(store: str | os.PathLike[str], column: str) -> list[Site]:
    """Simulate a federation: split one store's patients by ``column`` (e.g. ``site``).

    Args:
        store: Path of the store.
        column: A ``labels.parquet`` or ``manifest.parquet`` column with one value per
            patient; each distinct value becomes a site (sorted by name).

    Returns:
        One :class:`Site` per value, all pointing at ``store``.
    """
    path = Path(store).resolve()
    st = _open(path, f"--split-by {column!r}")
    values = _patient_values(st, column)
    sites = []
    for value in sorted(values.unique()):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", value)[:64] or "site"
        patients = frozenset(str(p) for p in values.index[values == value])
        sites.append(Site(name=name, store=path, patients=patients))
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        raise FederatedError(
            f"--split-by {column!r}: values {sorted(values.unique())} give clashing site "
            "names after cleaning; rename the values"
        )
    return sites
