"""Collect a run directory's artefacts into the typed report sections.

``collect(run_dir)`` reads ``run.json``, ``config.yaml``, ``metrics.json``, the prediction
Parquet files, the store (manifest, labels, ledger), the de-identification audit,
``uncertainty/``, ``explain/summary.json`` and ``audit/summary.json``. Each section is
collected on its own: an absent artefact gives a ``not_run`` section with a note saying
which command produces it, and an unreadable one an ``error`` section with the reason; the
report is still built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from hidim.report.collect_data import collect_data
from hidim.report.collect_evidence import collect_bias, collect_explanations
from hidim.report.collect_perf import collect_performance, load_predictions
from hidim.report.collect_uncertainty import UNCERTAINTY_SOURCES, collect_uncertainty
from hidim.report.readers import flatten, read_json, read_yaml
from hidim.report.sections import ModelCardSection, ReportSections, Section

__all__ = ["RunArtefacts", "collect", "locate_store", "locate_deid_audit", "DEFAULT_INTENDED_USE"]

DEFAULT_INTENDED_USE = (
    "Research use only. Not validated for clinical decisions. State the intended use, "
    "population and setting in RUN/model_card.yaml (key `intended_use`)."
)

S = TypeVar("S", bound=Section)


class RunArtefacts:
    """Paths and parsed top-level files of a run directory (read once, shared by sections).

    Args:
        run_dir: The training run directory.
        store: The store the run was trained on (default: from the run's config).
        deid_audit: The de-identification audit Parquet (default: found near the store).
    """

    def __init__(self, run_dir: Path, *, store: Path | None = None, deid_audit: Path | None = None):
        self.run_dir = run_dir
        self.run_json: dict[str, Any] = _read_mapping(run_dir / "run.json")
        self.config: dict[str, Any] = _read_mapping(run_dir / "config.yaml", yaml=True) or dict(
            self.run_json.get("config") or {}
        )
        self.store = store if store is not None else locate_store(self)
        self.deid_audit = deid_audit if deid_audit is not None else locate_deid_audit(self.store)


def _read_mapping(path: Path, *, yaml: bool = False) -> dict[str, Any]:
    try:
        data = read_yaml(path) if yaml else read_json(path)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the section using it
        return {}
    return dict(data) if isinstance(data, Mapping) else {}


def _lookup(config: Mapping[str, Any], *dotted: str) -> Any:
    for key in dotted:
        node: Any = config
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            return node
    return None


def locate_store(art: RunArtefacts) -> Path | None:
    """The store a run used: from its config (``data.store`` / ``store``), else ``None``."""
    value = _lookup(art.config, "data.store", "store", "data.store_dir", "data.path")
    if value is None:
        value = _lookup(art.run_json, "config.data.store", "config.store", "extra.store")
    if value is None:
        return None
    path = Path(str(value))
    if not path.is_absolute():
        for base in (art.run_dir, art.run_dir.parent, Path.cwd()):
            if (base / path).is_dir():
                return (base / path).resolve()
    return path


def locate_deid_audit(store: Path | None) -> Path | None:
    """The de-identification audit beside a store, when the pipeline kept it there.

    Looks for ``deid_audit.parquet`` / ``audit.parquet`` in the store and, through the
    store's ``run.json`` (``extra.deid_audits``, recorded by ``hidim curate`` for input
    folders that are ``hidim deid`` releases), in the de-identified folder.
    """
    if store is None:
        return None
    candidates = [store / "deid_audit.parquet", store / "deid" / "audit.parquet"]
    run = _read_mapping(store / "run.json")
    recorded = _lookup(run, "extra.deid_audits")  # written by `hidim curate`
    if isinstance(recorded, list):
        candidates += [Path(str(a)) for a in recorded]
    source = _lookup(run, "config.input", "config.inputs", "config.in_dir", "extra.input")
    if isinstance(source, list) and source:
        source = source[0]
    if isinstance(source, str):
        candidates += [Path(source) / "deid_audit.parquet", Path(source) / "audit.parquet"]
    return next((c for c in candidates if c.is_file()), None)


def _safe(build: Callable[[], S], fallback: type[S], what: str) -> S:
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - one bad artefact must not stop the report
        return fallback(
            status="error", note=f"Could not read the {what}: {type(exc).__name__}: {exc}"
        )


def _task_name(cfg: Mapping[str, Any]) -> str | None:
    node = _lookup(cfg, "task")
    if isinstance(node, Mapping):
        node = _lookup(node, "kind", "type", "name", "head")
    return str(node) if node else None


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def collect_model_card(art: RunArtefacts) -> ModelCardSection:
    """Section 2 from ``run.json``, ``config.yaml``, ``model_card.yaml`` and ``predictions.json``.

    ``RUN/model_card.yaml`` is optional and written by people: ``intended_use`` plus any
    other keys (population, out of scope, limitations...) shown as they are.
    """
    if not art.run_json and not art.config:
        return ModelCardSection(
            status="not_run",
            note="No run.json or config.yaml in the run directory: is this a `hidim train` --out folder?",
        )
    cfg, rj = art.config, art.run_json
    card = _read_mapping(art.run_dir / "model_card.yaml", yaml=True)
    info = _read_mapping(art.run_dir / "predictions.json")
    metrics = _read_mapping(art.run_dir / "metrics.json")
    head = _lookup(cfg, "task.head", "head")
    fusion = []
    views = _as_list(_lookup(cfg, "data.views", "views"))
    if views:
        fusion.append("views: " + ", ".join(views))
    multiview = _lookup(cfg, "model.multiview")
    if isinstance(multiview, Mapping) and len(views) > 1:
        fusion[-1] += f" (fused by {multiview.get('pooling', 'mean')})"
    if _lookup(cfg, "model.tabular"):
        fusion.append("tabular: " + ", ".join(_as_list(_lookup(cfg, "data.tabular"))))
    parts = []
    ensemble = _lookup(rj, "extra.ensemble")
    folds = _lookup(rj, "extra.folds")
    if isinstance(ensemble, int) and ensemble > 1:
        parts.append(f"deep ensemble of {ensemble} models")
    if isinstance(folds, int) and folds > 1:
        parts.append(f"{folds} cross-validation fold models")
    source = info.get("uncertainty_source")
    if source:
        parts.append("uncertainty = " + UNCERTAINTY_SOURCES.get(str(source), str(source)))
    if head and "evidential" in str(head) and not source:
        parts.append("evidential head")
    seed = rj.get("seed")
    if seed is None:
        seed = _lookup(cfg, "trainer.seed", "seed")
    task = metrics.get("task") or _task_name(cfg)
    extra_card = {str(k): str(v) for k, v in card.items() if k != "intended_use" and v is not None}
    return ModelCardSection(
        status="ok",
        sources=tuple(
            str(p)
            for p in (art.run_dir / n for n in ("run.json", "config.yaml", "model_card.yaml"))
            if p.is_file()
        ),
        intended_use=str(card.get("intended_use") or DEFAULT_INTENDED_USE),
        card=extra_card,
        task=str(task) if task else None,
        targets=tuple(_as_list(_lookup(cfg, "data.target", "task.target", "target"))),
        backbone=_text(_lookup(cfg, "model.backbone", "backbone")),
        pretrained=_pretraining(cfg, art.run_dir),
        head=_text(head),
        fusion_inputs=tuple(fusion),
        uncertainty_method="; ".join(parts) or None,
        training=flatten(cfg),
        seed=int(seed) if isinstance(seed, int) else None,
        command=rj.get("command"),
        created_utc=rj.get("created_utc"),
        git_revision=rj.get("git_revision"),
        versions={
            str(k): (None if v is None else str(v)) for k, v in (rj.get("versions") or {}).items()
        },
        input_hashes={str(k): str(v) for k, v in (rj.get("input_hashes") or {}).items()},
    )


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") and not isinstance(value, Mapping) else None


def _pretraining(cfg: Any, run_dir: Path) -> str | None:
    """Pretrained weights and/or the hidim run the image encoder started from, in words."""
    parts = []
    if (weights := _text(_lookup(cfg, "model.weights", "weights"))) is not None:
        parts.append(weights)
    pre = read_json(run_dir / "preprocessing.json")
    if not isinstance(pre, Mapping) or not isinstance(pre.get("init_from"), Mapping):
        members = read_json(run_dir / "members.json")
        entries = members.get("members") if isinstance(members, Mapping) else None
        if isinstance(entries, list) and entries and isinstance(entries[0], Mapping):
            pre = read_json(run_dir / str(entries[0].get("dir", ".")) / "preprocessing.json")
    init = pre.get("init_from") if isinstance(pre, Mapping) else None
    if isinstance(init, Mapping):
        task = str(init.get("task") or "another task")
        target = f" of {init['target']}" if init.get("target") else ""
        frozen = _lookup(cfg, "model.freeze_encoder") is True
        how = f"{'frozen' if frozen else 'fine-tuned'}; sha256 {str(init.get('sha256', ''))[:12]}"
        if task.startswith("ssl_"):
            parts.append(
                f"self-supervised ({task[4:].upper()}, hidim pretrain on unlabelled loops): "
                f"image encoder ({how})"
            )
        else:
            parts.append(
                f"supervised: image encoder from a hidim run trained for {task}{target} ({how})"
            )
    return "; ".join(parts) or None


def collect(
    run_dir: str | Path,
    *,
    store: str | Path | None = None,
    deid_audit: str | Path | None = None,
    baseline_run: str | Path | None = None,
) -> ReportSections:
    """Read every artefact of a run into report sections (never raises for missing parts).

    Args:
        run_dir: A training run directory (``hidim train --out RUN``).
        store: The store the run used (default: the ``data.store`` of its config).
        deid_audit: The de-identification audit Parquet (default: looked up near the store).
        baseline_run: A 2-D-per-frame baseline run directory to compare against.

    Returns:
        The six evidence sections.
    """
    run = Path(run_dir)
    art = RunArtefacts(
        run,
        store=Path(store) if store is not None else None,
        deid_audit=Path(deid_audit) if deid_audit is not None else None,
    )
    from hidim.report.sections import (
        BiasSection,
        DataSection,
        ExplanationSection,
        PerformanceSection,
        UncertaintySection,
    )

    cache: dict[str, Any] = {}

    def preds() -> Any:
        if "p" not in cache:
            cache["p"] = load_predictions(run)
        return cache["p"]

    data = _safe(lambda: collect_data(art.store, art.deid_audit), DataSection, "store")
    card = _safe(lambda: collect_model_card(art), ModelCardSection, "run configuration")
    if card.status == "ok" and not card.splits and data.cohort is not None:
        card = card.model_copy(update={"splits": data.cohort.splits})
    return ReportSections(
        data=data,
        model_card=card,
        performance=_safe(
            lambda: collect_performance(
                run, preds(), baseline_run=Path(baseline_run) if baseline_run else None
            ),
            PerformanceSection,
            "performance artefacts",
        ),
        uncertainty=_safe(
            lambda: collect_uncertainty(run, preds()), UncertaintySection, "uncertainty artefacts"
        ),
        explanations=_safe(
            lambda: collect_explanations(run), ExplanationSection, "explain/summary.json"
        ),
        bias=_safe(lambda: collect_bias(run), BiasSection, "audit/summary.json"),
    )
