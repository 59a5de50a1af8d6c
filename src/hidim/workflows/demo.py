"""``hidim demo``: the whole pipeline on the built-in phantom, raw DICOM to a readiness report.

Stages (each calls the owning stage's library function; nothing here computes results):

1. ``phantom``     synthetic multi-site echo cohort: DICOM with PHI, a planted shortcut,
                   planted under-recording of outcomes in one group, OOD inputs, truth.
2. ``deidentify``  PS3.15 profile + burned-in PHI masking → release folder, audit, reid table.
3. ``curate``      release folder → store (fps normalisation, patient-level splits).
4. ``labels``      labels.csv (hospital IDs) → labels.parquet through the reid table.
5. ``pretrain``    supervised pretraining: the small video model regresses EF (every echo
                   has one; outcomes are scarce).
6. ``train``       Cox head on that encoder (fine-tuned), deep ensemble; predictions + metrics.
7. ``baseline``    (``--baseline``) the 2-D-per-frame baseline on the same data.
8. ``ood``         the OOD inputs de-identified, curated and predicted: does it abstain?
9. ``explain``     saliency + sanity checks, occlusion (marker, outside sector), phases.
10. ``audit``      subgroup audit with bootstrap CIs.
11. ``report``     the HTML readiness report + report.json.

Each stage prints a line with its wall time; the library functions show their own rich
progress bars. ``run_demo`` returns a :class:`DemoResult` with the report path, the headline
numbers and the per-stage timings, and writes ``run.json`` in the output folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hidim.errors import HidimError
from hidim.provenance import write_run_json
from hidim.workflows.demo_ood import ood_stage
from hidim.workflows.demo_settings import (
    FULL,
    INTENDED_USE,
    QUICK,
    DemoSettings,
    demo_key,
    explain_options,
    phantom_config,
    pretrain_config,
    training_config,
)

__all__ = ["Stage", "DemoContext", "DemoResult", "STAGES", "run_demo", "DemoError"]


class DemoError(HidimError):
    """A demo stage could not run."""


@dataclass
class DemoContext:
    """Paths, settings and what earlier stages produced (filled as the demo runs)."""

    out: Path
    settings: DemoSettings
    seed: int
    console: Console
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def phantom(self) -> Path:
        return self.out / "phantom"

    @property
    def secrets(self) -> Path:
        """Key and re-identification table: kept outside every released folder."""
        return self.out / "secrets"

    @property
    def deid(self) -> Path:
        return self.out / "deid"

    @property
    def store(self) -> Path:
        return self.out / "store"

    @property
    def run(self) -> Path:
        return self.out / "run"

    @property
    def pretrain_run(self) -> Path:
        return self.out / "pretrain"

    @property
    def baseline_run(self) -> Path:
        return self.out / "baseline"

    @property
    def report(self) -> Path:
        return self.out / "report.html"


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: a name, what it does, and the function that does it."""

    name: str
    description: str
    run: Callable[[DemoContext], str]
    enabled: Callable[[DemoSettings], bool] = lambda s: True


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` produced."""

    out_dir: Path
    report_html: Path | None
    report_json: Path | None
    headline: dict[str, Any]
    timings: dict[str, float]
    ok: bool


# --- stages ----------------------------------------------------------------------------


def _phantom(ctx: DemoContext) -> str:
    from hidim.phantom.generate import generate

    res = generate(ctx.phantom, phantom_config(ctx.settings, ctx.seed), show_progress=True)
    ctx.results["phantom"] = res
    return f"{res.n_patients} patients, {res.n_series} cine loops, {res.n_ood_files} OOD files"


def _deidentify(ctx: DemoContext) -> str:
    from hidim.deidentify.keys import create_key
    from hidim.deidentify.pipeline import deidentify

    # Seed-derived key (synthetic data only): pseudonyms, hence store keys and the
    # patient-level splits, are the same in every run with this seed.
    key = create_key(ctx.secrets / "project.key", key=demo_key(ctx.seed), overwrite=True)
    summary = deidentify(
        [ctx.phantom / "dicom"],
        ctx.deid,
        key_file=key,
        reid_table=ctx.secrets / "reid.csv",
        show_progress=True,
        console=ctx.console,
    )
    ctx.results["deid"] = summary
    n = {s: summary.count(s) for s in ("ok", "quarantined", "failed")}
    return f"{n['ok']} written, {n['quarantined']} quarantined, {n['failed']} failed"


def _curate(ctx: DemoContext) -> str:
    from hidim.curate.pipeline import curate

    res = curate(
        ctx.deid,
        ctx.store,
        fps=ctx.settings.fps,
        seed=ctx.seed,
        fractions=ctx.settings.split_fractions,
    )
    ctx.results["curate"] = res
    return f"{res.n_series} series ({res.written} written, {res.resumed} resumed), {len(res.failed)} failed"


def _labels(ctx: DemoContext) -> str:
    from hidim.curate.labels import import_labels

    res = import_labels(ctx.store, ctx.phantom / "labels.csv", id_map=ctx.secrets / "reid.csv")
    if not res.n_written:
        raise DemoError(
            "no label row matched the store: the re-identification table did not map IDs"
        )
    return f"{res.n_written} patients labelled ({len(res.unmatched_lines)} unmatched rows)"


def _pretrain(ctx: DemoContext) -> str:
    from hidim.training.train import train

    res = train(
        pretrain_config(ctx.settings, ctx.store, ctx.seed), ctx.pretrain_run, overwrite=True
    )
    test = (res.metrics.get("test") or {}).get("metrics", {})
    return (
        f"{res.seconds:.0f} s, EF regression test R² {test.get('r2', float('nan')):.3f}, "
        f"MAE {test.get('mae', float('nan')):.1f} points"
    )


def _train(ctx: DemoContext, *, baseline: bool = False) -> str:
    from hidim.training.train import train

    out = ctx.baseline_run if baseline else ctx.run
    pretrained = ctx.settings.pretrain_epochs > 0 and not baseline
    config = training_config(
        ctx.settings,
        ctx.store,
        ctx.seed,
        baseline=baseline,
        init_from=ctx.pretrain_run if pretrained else None,
    )
    res = train(config, out, ensemble=1 if baseline else ctx.settings.ensemble, overwrite=True)
    _write_model_card(out, baseline=baseline)
    test = (res.metrics.get("test") or {}).get("metrics", {})
    return f"{res.seconds:.0f} s, test C-index {test.get('cindex', float('nan')):.3f}"


def _write_model_card(run: Path, *, baseline: bool) -> None:
    import yaml

    from hidim.provenance import atomic_write_text

    card = {
        "intended_use": INTENDED_USE if not baseline else "2-D per-frame baseline for comparison."
    }
    atomic_write_text(run / "model_card.yaml", yaml.safe_dump(card))


def _ood_stage(ctx: DemoContext) -> str:
    return ood_stage(
        phantom=ctx.phantom,
        run=ctx.run,
        out=ctx.out,
        secrets=ctx.secrets,
        fps=ctx.settings.fps,
        n_boot=ctx.settings.n_boot,
        seed=ctx.seed,
    )


def _explain(ctx: DemoContext) -> str:
    from hidim.explain import explain_run

    summary = explain_run(
        ctx.run,
        store=ctx.store,
        truth=ctx.phantom / "truth.json",
        reid_table=ctx.secrets / "reid.csv",
        options=explain_options(ctx.settings, ctx.seed),
    )
    checks = summary.get("sanity_checks") or []
    passed = sum(bool(c.get("passed")) for c in checks)
    return (
        f"{len(summary.get('occlusion') or [])} occlusion tests, "
        f"{passed}/{len(checks)} sanity checks passed, {len(summary.get('cases') or [])} cases"
    )


def _audit(ctx: DemoContext) -> str:
    from hidim.evaluate.subgroup_run import audit_run

    res = audit_run(
        ctx.run, by=("sex", "ethnicity", "site"), n_boot=ctx.settings.n_boot, seed=ctx.seed
    )
    return f"{len(res.rows())} subgroup rows, {len(res.warnings)} warnings"


def _report(ctx: DemoContext) -> str:
    from hidim.report import build_report

    baseline = ctx.baseline_run if (ctx.baseline_run / "metrics.json").is_file() else None
    res = build_report(
        ctx.run,
        ctx.report,
        store=ctx.store,
        deid_audit=ctx.deid / "deid_audit.parquet",
        baseline_run=baseline,
    )
    ctx.results["report"] = res
    return f"{len(res.flags)} flags"


STAGES: tuple[Stage, ...] = (
    Stage("phantom", "synthetic echo cohort with PHI, shortcut, subgroup bias, OOD", _phantom),
    Stage("deidentify", "PS3.15 profile, UID remap, burned-in PHI masking", _deidentify),
    Stage("curate", "DICOM → store: fps normalisation, patient-level splits", _curate),
    Stage("labels", "outcomes + demographics through the re-identification table", _labels),
    Stage(
        "pretrain",
        "supervised pretraining: the video encoder learns EF, which every echo has",
        _pretrain,
        enabled=lambda s: s.pretrain_epochs > 0,
    ),
    Stage(
        "train",
        "Cox head on the pretrained video encoder (fine-tuned), deep ensemble; predictions",
        _train,
    ),
    Stage(
        "baseline",
        "2-D-per-frame baseline (ResNet-18 per frame)",
        lambda ctx: _train(ctx, baseline=True),
        enabled=lambda s: s.baseline,
    ),
    Stage("ood", "out-of-distribution inputs: does the model say 'I don't know'?", _ood_stage),
    Stage("explain", "saliency + sanity checks, occlusion tests, phase importance", _explain),
    Stage("audit", "subgroup audit with bootstrap CIs", _audit),
    Stage("report", "the translational-readiness report", _report),
)
"""The demo's stages, in order (explicit: a missing stage is obvious)."""


# --- orchestration ---------------------------------------------------------------------


def _headline(ctx: DemoContext) -> dict[str, Any]:
    res = ctx.results.get("report")
    if res is None:
        return {}
    r = res.report
    head: dict[str, Any] = {"report": str(res.html_path)}
    for m in r.performance.metrics:
        if m.split == r.performance.eval_split and m.estimate.value is not None:
            head.setdefault("metric", f"{m.name} ({m.split})")
            head.setdefault("value", m.estimate.value)
            head.setdefault("ci", (m.estimate.lower, m.estimate.upper))
    head["abstention_rate"] = r.uncertainty.abstention_rate
    head["flags"] = [f"{f.severity}: {f.title}" for f in r.flags if f.severity != "info"]
    return head


def _print_headline(console: Console, head: dict[str, Any], timings: dict[str, float]) -> None:
    table = Table(title="hidim demo", show_header=False)
    table.add_column("what")
    table.add_column("value")
    if "value" in head:
        lo, hi = head["ci"]
        ci = f" (95 % CI {lo:.3f} to {hi:.3f})" if lo is not None and hi is not None else ""
        table.add_row(head["metric"], f"{head['value']:.3f}{ci}")
    if head.get("abstention_rate") is not None:
        table.add_row("abstained (test)", f"{100 * head['abstention_rate']:.1f} %")
    for flag in head.get("flags", []):
        table.add_row("flag", flag)
    table.add_row("wall time", f"{sum(timings.values()):.0f} s")
    console.print(table)
    if "report" in head:
        console.print(f"report: [bold]{head['report']}[/bold]")


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    quick: bool = False,
    seed: int = 0,
    baseline: bool | None = None,
    console: Console | None = None,
    stages: Sequence[Stage] = STAGES,
    threads: int | None = 1,
) -> DemoResult:
    """Run every demo stage into ``out_dir`` and return the report path and headline numbers.

    Args:
        out_dir: Folder for all stages' outputs (created; re-running resumes or refreshes).
        quick: The small configuration (about 2 minutes on 2 CPU cores) used in tests.
        seed: Seed of the phantom, the de-identification key (synthetic data only: see
            :func:`~hidim.workflows.demo_settings.demo_key`), the splits and training.
        baseline: Also train the 2-D-per-frame baseline (default: the settings' choice, off;
            it adds several minutes on a CPU).
        console: Where to print progress (default: a new rich console).
        stages: The stages to run (default :data:`STAGES`, all of them).
        threads: CPU threads for torch during the demo (restored afterwards). One seed gives
            identical results only at one thread count (float sums in the convolutions are
            ordered by thread and training amplifies the difference), so the default 1
            makes the demo reproducible on any machine; ``None`` keeps torch's setting.

    Returns:
        A :class:`DemoResult`.

    Raises:
        DemoError: a stage is unavailable or failed; the message names the stage.
    """
    import torch

    if threads is not None and threads < 1:
        raise DemoError(f"threads must be >= 1 (or None for torch's default), got {threads}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_demo(
            out_dir, quick=quick, seed=seed, baseline=baseline, console=console, stages=stages
        )
    finally:
        torch.set_num_threads(before)


def _run_demo(
    out_dir: str | os.PathLike[str],
    *,
    quick: bool,
    seed: int,
    baseline: bool | None,
    console: Console | None,
    stages: Sequence[Stage],
) -> DemoResult:
    import torch

    console = console or Console()
    settings = QUICK if quick else FULL
    if baseline is not None:
        settings = replace(settings, baseline=baseline)
    ctx = DemoContext(out=Path(out_dir), settings=settings, seed=seed, console=console)
    ctx.out.mkdir(parents=True, exist_ok=True)
    todo = [s for s in stages if s.enabled(settings)]
    timings: dict[str, float] = {}
    console.rule(f"hidim demo ({'quick' if quick else 'full'}) → {ctx.out}")
    for i, stage in enumerate(todo, start=1):
        console.print(f"[bold cyan][{i}/{len(todo)}] {stage.name}[/]: {stage.description}")
        start = time.perf_counter()
        try:
            summary = stage.run(ctx)
        except HidimError as exc:
            raise DemoError(f"demo stage {stage.name!r} failed: {exc}") from exc
        timings[stage.name] = time.perf_counter() - start
        console.print(f"    [green]✓[/] {summary} [dim]({timings[stage.name]:.1f} s)[/]")
    head = _headline(ctx)
    _print_headline(console, head, timings)

    write_run_json(
        ctx.out,
        command="demo",
        config={"quick": quick, "settings": settings.__dict__},
        seed=seed,
        extra={
            "timings_s": {k: round(v, 2) for k, v in timings.items()},
            "headline": head,
            # One seed gives identical results only at one CPU thread count: float sums in
            # the convolutions are ordered by thread, and training amplifies the difference.
            "torch_threads": torch.get_num_threads(),
        },
    )
    report = ctx.results.get("report")
    return DemoResult(
        out_dir=ctx.out,
        report_html=report.html_path if report else None,
        report_json=report.json_path if report else None,
        headline=head,
        timings=timings,
        ok=report is not None,
    )
