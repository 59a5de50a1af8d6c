"""``hidim train``, ``hidim predict``, ``hidim tune``: thin adapters over :mod:`hidim.training`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from hidim.errors import HidimError

_console = Console()


def _fmt(entry: Any) -> str:
    if entry is None:
        return "-"
    if isinstance(entry, dict):
        est, lo, hi = entry.get("estimate"), entry.get("low"), entry.get("high")
        return f"{est:.3f} [{lo:.3f}, {hi:.3f}]"
    return "-" if isinstance(entry, float) and math.isnan(entry) else f"{entry:.3f}"


def _metrics_table(metrics: dict[str, Any]) -> Table:
    table = Table(title=f"{metrics.get('task', '')} metrics per study (95 % bootstrap CI)")
    table.add_column("metric")
    table.add_column("val")
    table.add_column("test")
    names: list[str] = []
    for split in ("val", "test"):
        part = metrics.get(split) or {}
        names += [n for n in part.get("metrics", {}) if n not in names]
    for name in names:
        cells = []
        for split in ("val", "test"):
            part = metrics.get(split) or {}
            ci = (part.get("ci") or {}).get(name)
            cells.append(_fmt(ci) if ci else _fmt(part.get("metrics", {}).get(name)))
        table.add_row(name, *cells)
    return table


def _fail(exc: HidimError) -> None:
    _console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code=2)


def register(app: typer.Typer) -> None:
    """Add ``train``, ``predict`` and ``tune`` to the root app."""

    @app.command("train")
    def train_cmd(
        config: Path = typer.Argument(..., help="YAML training config (see configs/)."),
        out: Path = typer.Option(..., "--out", "-o", help="Run directory to create."),
        set_: list[str] = typer.Option(
            [], "--set", help="Override a config key: --set optim.lr=3e-4 (repeatable)."
        ),
        ensemble: int = typer.Option(1, help="Train K members with seeds seed..seed+K-1."),
        folds: int | None = typer.Option(None, help="K patient-level cross-validation folds."),
        weights: str | None = typer.Option(
            None, help="Pretrained weights: a name (kinetics400, imagenet) or a local file."
        ),
        overwrite: bool = typer.Option(False, help="Replace a finished run in --out."),
    ) -> None:
        """Train a model on a hidim store: checkpoints, logs, predictions and metrics.json.

        RUN gets config.yaml, checkpoints/, logs/, predictions.parquet (per study),
        metrics.json (val + test, bootstrap CIs) and run.json. Re-run to resume.
        """
        from hidim.training.config import load_config
        from hidim.training.train import train

        overrides = list(set_) + ([f"model.weights={weights}"] if weights else [])
        try:
            cfg = load_config(config, overrides=overrides)
            result = train(cfg, out, ensemble=ensemble, folds=folds, overwrite=overwrite)
        except HidimError as exc:
            _fail(exc)
            return
        _console.print(_metrics_table(result.metrics))
        _console.print(f"run written to [bold]{result.run_dir}[/bold] ({result.seconds:.1f} s)")

    @app.command("predict")
    def predict_cmd(
        run: Path = typer.Argument(..., help="A `hidim train` run directory."),
        store: Path | None = typer.Argument(
            None, help="Store to predict (default: training store)."
        ),
        out: Path | None = typer.Option(
            None, "--out", "-o", help="Output folder or per-study .parquet path (default: RUN)."
        ),
        split: list[str] = typer.Option([], help="Only these splits (repeatable)."),
        mc_dropout: int | None = typer.Option(None, help="MC-dropout passes (default: config)."),
        coverage: float | None = typer.Option(
            None, help="Share of validation studies to answer; sets the abstention threshold."
        ),
    ) -> None:
        """Predict every clip and study of a store (test-time averaging over all clips).

        Writes predictions.parquet (per study), predictions_clips.parquet and, for
        survival heads, survival_curves.parquet.
        """
        from hidim.training.predict import predict

        try:
            result = predict(
                run, store, out=out, splits=split or None, mc_dropout=mc_dropout, coverage=coverage
            )
        except HidimError as exc:
            _fail(exc)
            return
        n_abstain = int(result.studies["abstain"].sum())
        n_ood = int((result.studies["abstain_reason"] == "out_of_distribution").sum())
        _console.print(
            f"{len(result.studies)} studies ({len(result.clips)} clips) predicted; "
            f"uncertainty = {result.uncertainty_source}; {n_abstain} abstained "
            f"({n_ood} as unlike the training data)"
        )
        for name, path in result.paths.items():
            _console.print(f"  {name}: {path}")

    @app.command("ood-check")
    def ood_check_cmd(
        run: Path = typer.Argument(..., help="A `hidim train` run, already predicted."),
        store: Path = typer.Argument(..., help="A store of inputs the model should refuse."),
        kind_column: str | None = typer.Option(
            None,
            "--kind-column",
            help="Manifest column that names each series' kind (e.g. modality); "
            "abstention is reported per kind.",
        ),
        n_boot: int = typer.Option(1000, help="Bootstrap replicates of the OOD AUROC."),
    ) -> None:
        """Check that the model says "I don't know" on inputs unlike its training data.

        Predicts every series of STORE with the run's abstain rule (uncertainty + image-
        density gate, fitted on the training store's validation split) applied unchanged,
        and writes RUN/uncertainty/summary.json (read by `hidim report`): abstention per
        kind, on in-distribution test studies, and the OOD AUROC.
        """
        from rich.table import Table

        from hidim.training.ood_check import SUMMARY_FILE, ood_check

        try:
            summary = ood_check(run, store, kind_column=kind_column, n_boot=n_boot)
        except HidimError as exc:
            _fail(exc)
            return
        table = Table(title="does the model abstain?")
        table.add_column("inputs")
        table.add_column("n", justify="right")
        table.add_column("abstained", justify="right")
        table.add_column("note")
        table.add_row(
            "in-distribution test",
            str(summary["n_id"]),
            f"{100 * summary['id_abstention']:.0f} %",
            "",
        )
        for kind, row in summary["ood"].items():
            table.add_row(
                kind, str(row["n"]), f"{100 * row['abstention']:.0f} %", row.get("note", "")
            )
        _console.print(table)
        auroc = summary["ood_auroc"]
        _console.print(
            f"OOD AUROC {auroc['estimate']:.3f} [{auroc['low']:.3f}, {auroc['high']:.3f}]; "
            f"summary: {Path(run) / SUMMARY_FILE}"
        )

    @app.command("tune")
    def tune_cmd(
        config: Path = typer.Argument(..., help="YAML config with a tune.space section."),
        trials: int = typer.Option(..., help="Total finished trials the study should hold."),
        out: Path = typer.Option(Path("tune"), "--out", "-o", help="Output folder."),
        storage: str | None = typer.Option(
            None, help="Optuna storage URL shared by workers (default: SQLite in --out)."
        ),
        study: str | None = typer.Option(None, help="Study name (default: hidim)."),
        set_: list[str] = typer.Option([], "--set", help="Override a config key (repeatable)."),
    ) -> None:
        """Search hyper-parameters with Optuna (pruning; resumable; distributed via --storage)."""
        import yaml

        from hidim.training.config import load_config
        from hidim.training.tune import tune

        try:
            cfg = load_config(config, overrides=set_)
            raw = yaml.safe_load(config.read_text(encoding="utf-8"))
            from hidim.training.config import apply_overrides

            result = tune(
                cfg,
                out,
                trials=trials,
                storage=storage,
                study_name=study,
                raw_config=apply_overrides(raw, set_) | {"data": cfg.data.model_dump(mode="json")},
            )
        except HidimError as exc:
            _fail(exc)
            return
        _console.print(
            f"study {result.study_name!r}: {result.n_trials} trials; best value "
            f"{result.best_value} with {result.best_params}"
        )
        _console.print(f"best config: {result.out_dir / 'best_config.yaml'}")
