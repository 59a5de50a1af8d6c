"""Pre-training statistics of a federation, from per-site aggregates only.

Central training fits a few things on the pooled training split before the first epoch:
the tabular encoder (z-score means/SDs, one-hot categories), the group vocabulary, the
head's target standardisation (regression mean/SD), its prior (binary prevalence, class
frequencies) and, for survival heads, the time grid. In a federation no one holds the
pooled data, so each site *describes* itself (:func:`describe_site`: counts, means and sums
of squared deviations, category sets, the largest event time, event-time quantiles) and
the server merges the descriptions (:func:`merge_descriptions`) into
:class:`FederationStatistics`, which every site and the server apply identically:

* means and SDs are exact (:func:`~hidim.federated.aggregates.merge_moments`);
* categories and vocabularies are the sorted union;
* prevalence and class frequencies are exact (counts);
* the equidistant time grid (Cox) is exact (it needs only the largest event time); the
  quantile grid (discrete-time heads) is the quantile of the count-weighted mixture of the
  sites' event-time quantile functions — approximate to 1/200 of the distribution.

No row-level value leaves a site: a description holds counts, moments, category names,
one maximum and a 201-point quantile function of the event times.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hidim.errors import FederatedError, HidimError
from hidim.federated.aggregates import merge_moments, merge_quantiles, moments, site_quantiles
from hidim.federated.site_data import SiteDataModule
from hidim.federated.sites import Site
from hidim.store import TabularEncoder, labels_per_series
from hidim.tasks.base import Head, get_head
from hidim.tasks.discrete import make_time_grid
from hidim.training.config import ExperimentConfig
from hidim.training.datamodule import GroupCoder
from hidim.training.module import load_task_modules

__all__ = [
    "FederationStatistics",
    "describe_site",
    "merge_descriptions",
    "probe_head",
    "apply_head_statistics",
]


def probe_head(config: ExperimentConfig) -> Head:
    """A throwaway instance of the config's head (to learn what it needs fitted)."""
    load_task_modules()
    cls = get_head(config.task.head)
    return cls(in_features=1, **dict(config.task.params))


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def describe_site(config: ExperimentConfig, site: Site) -> dict[str, Any]:
    """What one site tells the server before training (aggregates only, JSON-able).

    Args:
        config: The federation's experiment config (``data.store`` is replaced by the
            site's store).
        site: The site.

    Returns:
        ``{"site", "n": {split: items}, "channels", "fps", "intensity_methods", "target"
        (n, mean, M2), "class_counts", "survival", "tabular", "vocab"}``.

    Raises:
        FederatedError: the site has no training items (message names the site).
    """
    data = config.data.model_copy(update={"store": site.store})
    dm = SiteDataModule(
        data,
        multiview=config.model.multiview is not None,
        seed=config.trainer.seed,
        patients=site.patients,
    )
    dm.setup()
    n = {split: len(dm.datasets[split]) for split in ("train", "val", "test")}
    if n["train"] == 0:
        raise FederatedError(
            f"site {site.name!r} has no training data: 0 labelled {data.views or 'any'}-view "
            f"series of its patients in the 'train' split of {site.store} "
            f"(val {n['val']}, test {n['test']}); give the site training patients or leave "
            "it out of the federation"
        )
    rows = dm.site_rows()
    out: dict[str, Any] = {
        "site": site.name,
        "n": n,
        "channels": sorted({int(c) for c in rows["channels"].dropna()}),
        "fps": sorted({round(float(v), 3) for v in rows["fps"].dropna()}) if "fps" in rows else [],
        "intensity_methods": sorted(
            {
                json.loads(v).get("method", "?")
                for v in rows["intensity_norm"].dropna().astype(str)
                if v.startswith("{")
            }
        )
        if "intensity_norm" in rows
        else [],
    }
    head = probe_head(config)
    arrays = dm.train_arrays()
    if callable(getattr(head, "fit_time_grid", None)):
        t = np.asarray(arrays["time"], dtype=np.float64)
        e = np.asarray(arrays["event"]).astype(bool)
        ok = np.isfinite(t)
        events = np.unique(t[ok & e])
        surv: dict[str, Any] = {
            "n": int(ok.sum()),
            "n_events": int((ok & e).sum()),
            "max_event_time": float(events.max()) if events.size else None,
            "n_unique_event_times": int(events.size),
        }
        if getattr(head, "default_grid_scheme", "quantile") == "quantile" and events.size:
            surv["event_time_quantiles"] = site_quantiles(events).tolist()
        out["survival"] = surv
    elif callable(getattr(head, "fit_target", None)):
        target = np.asarray(arrays["target"], dtype=np.float64)
        if hasattr(head, "n_classes") or head.task == "binary":
            finite = target[np.isfinite(target)]
            k = int(getattr(head, "n_classes", 2))
            codes = np.round(finite).astype(np.int64)
            if (codes < 0).any() or (codes >= k).any() or (codes != finite).any():
                raise FederatedError(
                    f"site {site.name!r}: class targets must be codes 0..{k - 1}; threshold "
                    "or recode the label"
                )
            out["class_counts"] = np.bincount(codes, minlength=k).tolist()
        else:
            n_t, mean, m2 = moments(target)
            out["target"] = {"n": n_t, "mean": mean, "m2": m2}
    out["tabular"] = _describe_tabular(dm, config.data.tabular)
    out["vocab"] = _describe_vocab(dm, config.data.group_columns)
    return out


def _describe_tabular(dm: SiteDataModule, columns: Sequence[str]) -> dict[str, Any]:
    if not columns:
        return {}
    if not dm.store.has_labels:
        raise FederatedError("data.tabular needs labels.parquet at every site")
    frame = labels_per_series(dm.site_rows("train"), dm.store.labels)
    out: dict[str, Any] = {}
    for col in columns:
        if col not in frame.columns:
            raise FederatedError(
                f"tabular column {col!r} is missing from {dm.store.path}'s labels; import it "
                "with `hidim labels import` at every site"
            )
        s = frame[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            n, mean, m2 = moments(pd.to_numeric(s, errors="coerce").astype(float).to_numpy())
            out[col] = {"kind": "numeric", "n": n, "mean": mean, "m2": m2}
        else:
            out[col] = {"kind": "categorical", "categories": sorted({str(v) for v in s.dropna()})}
    return out


def _describe_vocab(dm: SiteDataModule, columns: Sequence[str]) -> dict[str, list[str]]:
    if not columns:
        return {}
    if not dm.store.has_labels:
        raise FederatedError("data.group_columns needs labels.parquet at every site")
    labels = dm.store.labels
    if dm.patients is not None:
        labels = labels[labels["patient_key"].isin(dm.patients)]
    return GroupCoder.fit(labels, columns).vocab


@dataclass(frozen=True)
class FederationStatistics:
    """Everything fitted before training, merged from site descriptions (JSON round-trips).

    Attributes:
        in_channels: Channels of every site's series.
        n_train: Training items per site.
        encoder: The tabular encoder as ``asdict(TabularEncoder)`` (or ``None``).
        vocab: Group vocabulary per column.
        target: Pooled ``(n, mean, sd)`` of a regression target (or ``None``).
        class_counts: Pooled class counts (or ``None``).
        time_edges: The survival time grid ``[n_bins + 1]`` (or ``None``).
        fps: Frame rates seen across sites; intensity_methods likewise.
    """

    in_channels: int
    n_train: dict[str, int]
    encoder: dict[str, Any] | None = None
    vocab: dict[str, list[str]] = field(default_factory=dict)
    target: dict[str, float] | None = None
    class_counts: list[int] | None = None
    time_edges: list[float] | None = None
    fps: list[float] = field(default_factory=list)
    intensity_methods: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """Compact JSON (sent to every site in the round configuration)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> FederationStatistics:
        """Inverse of :meth:`to_json`."""
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as exc:
            raise FederatedError(f"malformed federation statistics: {exc}") from exc

    def tabular_encoder(self) -> TabularEncoder | None:
        """The shared :class:`~hidim.store.TabularEncoder` (``None`` without tabular data)."""
        if self.encoder is None:
            return None
        e = self.encoder
        return TabularEncoder(
            columns=tuple(e["columns"]),
            names=list(e["names"]),
            means={k: float(v) for k, v in e["means"].items()},
            stds={k: float(v) for k, v in e["stds"].items()},
            categories={k: list(v) for k, v in e["categories"].items()},
        )

    def group_coder(self) -> GroupCoder | None:
        """The shared group vocabulary (``None`` without ``data.group_columns``)."""
        return GroupCoder(vocab={k: list(v) for k, v in self.vocab.items()}) if self.vocab else None


def _merge_encoder(columns: Sequence[str], parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    enc = TabularEncoder(columns=tuple(columns))
    for col in columns:
        kinds = {p[col]["kind"] for p in parts}
        if len(kinds) != 1:
            raise FederatedError(
                f"tabular column {col!r} is numeric at some sites and text at others; make "
                "its type the same everywhere"
            )
        if kinds == {"numeric"}:
            n, mean, m2 = merge_moments(
                [(p[col]["n"], p[col]["mean"], p[col]["m2"]) for p in parts]
            )
            std = math.sqrt(m2 / n) if n > 1 else 1.0
            enc.means[col] = mean if n else 0.0
            enc.stds[col] = std if std > 0 else 1.0
            enc.names.append(col)
        else:
            cats = sorted(set().union(*(p[col]["categories"] for p in parts)))
            enc.categories[col] = cats
            enc.names.extend(f"{col}={c}" for c in cats)
    return asdict(enc)


def _merge_grid(head: Head, parts: Sequence[Mapping[str, Any]]) -> list[float]:
    n_bins = int(getattr(head, "n_bins"))  # noqa: B009 - survival heads only
    scheme = getattr(head, "default_grid_scheme", "quantile")
    maxima = [p["max_event_time"] for p in parts if p.get("max_event_time") is not None]
    if not maxima:
        raise FederatedError("no site has an event in its training split: no time grid")
    if scheme == "equidistant":
        edges = make_time_grid(np.array([max(maxima)]), n_bins, scheme="equidistant")
        return [float(v) for v in edges]
    uniq = sum(int(p["n_unique_event_times"]) for p in parts)
    if uniq < n_bins:
        raise FederatedError(
            f"quantile time grid: {uniq} distinct event times across sites cannot make "
            f"{n_bins} intervals; lower task.params.n_bins"
        )
    quantiles = [
        np.asarray(p["event_time_quantiles"]) for p in parts if p.get("n_unique_event_times")
    ]
    counts = [int(p["n_unique_event_times"]) for p in parts if p.get("n_unique_event_times")]
    inner = merge_quantiles(quantiles, counts, np.linspace(0.0, 1.0, n_bins + 1)[1:])
    edges = np.r_[0.0, inner]
    if not (np.diff(edges) > 0).all():
        raise FederatedError(
            "the merged event-time quantiles are not strictly increasing (ties across "
            "sites); lower task.params.n_bins or use an equidistant grid"
        )
    return [float(v) for v in edges]


def merge_descriptions(
    config: ExperimentConfig, descriptions: Sequence[Mapping[str, Any]]
) -> FederationStatistics:
    """Merge the sites' :func:`describe_site` outputs into :class:`FederationStatistics`."""
    if not descriptions:
        raise FederatedError("no site descriptions to merge")
    names = [str(d["site"]) for d in descriptions]
    if len(set(names)) != len(names):
        raise FederatedError(f"two clients claim the same site name: {sorted(names)}")
    channels = sorted({c for d in descriptions for c in d["channels"]})
    if config.model.in_channels is not None:
        in_channels = int(config.model.in_channels)
    elif len(channels) == 1:
        in_channels = channels[0]
    else:
        raise FederatedError(
            f"sites hold series with channel counts {channels}; curate every site to one "
            "channel count or set model.in_channels"
        )
    head = probe_head(config)
    target = class_counts = edges = None
    if callable(getattr(head, "fit_time_grid", None)):
        edges = _merge_grid(head, [d["survival"] for d in descriptions])
    elif any("class_counts" in d for d in descriptions):
        class_counts = np.sum([d["class_counts"] for d in descriptions], axis=0).tolist()
    elif any("target" in d for d in descriptions):
        n, mean, m2 = merge_moments(
            [(d["target"]["n"], d["target"]["mean"], d["target"]["m2"]) for d in descriptions]
        )
        target = {"n": n, "mean": mean, "sd": math.sqrt(m2 / n) if n else 0.0}
    encoder = (
        _merge_encoder(config.data.tabular, [d["tabular"] for d in descriptions])
        if config.data.tabular
        else None
    )
    vocab: dict[str, list[str]] = {}
    for col in config.data.group_columns:
        vocab[col] = sorted(set().union(*(d["vocab"].get(col, []) for d in descriptions)))
    return FederationStatistics(
        in_channels=in_channels,
        n_train={str(d["site"]): int(d["n"]["train"]) for d in descriptions},
        encoder=encoder,
        vocab=vocab,
        target=target,
        class_counts=[int(c) for c in class_counts] if class_counts is not None else None,
        time_edges=edges,
        fps=sorted({float(f) for d in descriptions for f in d["fps"]}),
        intensity_methods=sorted({str(m) for d in descriptions for m in d["intensity_methods"]}),
    )


def apply_head_statistics(head: Head, stats: FederationStatistics) -> None:
    """Fit the head's data-dependent state from the federation's statistics.

    Uses the head's own ``fit_target`` / ``set_time_grid``, fed with the smallest data that
    has exactly the pooled statistics: ``[mean - sd, mean + sd]`` for a regression target
    (its mean and population SD are the pooled ones), the pooled class counts expanded for
    classification priors.
    """
    try:
        if stats.time_edges is not None and callable(getattr(head, "set_time_grid", None)):
            head.set_time_grid(np.asarray(stats.time_edges))  # type: ignore[operator]
            return
        fit_target = getattr(head, "fit_target", None)
        if not callable(fit_target):
            return
        if stats.class_counts is not None:
            counts = np.asarray(stats.class_counts, dtype=np.int64)
            fit_target(np.repeat(np.arange(counts.shape[0]), counts).astype(np.float64))
        elif stats.target is not None:
            m, s = float(stats.target["mean"]), float(stats.target["sd"])
            fit_target(np.array([m - s, m + s], dtype=np.float64))
    except HidimError as exc:
        raise FederatedError(f"fitting the head from the sites' statistics: {exc}") from exc
