"""``hidim pretrain``: thin adapter over :func:`hidim.pretrain.pretrain`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hidim.errors import HidimError

_console = Console()


def register(app: typer.Typer) -> None:
    """Add ``pretrain`` to the root app."""

    @app.command(
        "pretrain",
        help=(
            "Self-supervised pretraining of the video encoder on unlabelled clips of a store."
            "\n\nUse it when a store holds many more loops than labels (or labels for another "
            "question): the encoder learns from pairs of clips of the same series at different "
            "start times (SimCLR NT-Xent or VICReg, video-consistent augmentations). Then "
            "start a supervised model from it with `model.init_from: RUN` (same "
            "model.backbone and backbone_kwargs; `model.freeze_encoder: true` keeps it fixed)."
            "\n\nRUN gets checkpoints/model.pt, logs/metrics.csv, pretrain.json (loss curve) "
            "and run.json. By default the store's train and val splits are used, never test. "
            "Re-run with the same arguments to resume."
        ),
    )
    def pretrain_cmd(
        config: Path = typer.Argument(
            ..., help="YAML pretraining config (configs/ssl_pretrain.yaml)."
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Run directory to create (or resume)."),
        set_: list[str] = typer.Option(
            [], "--set", help="Override a config key: --set ssl.method=vicreg (repeatable)."
        ),
        all_splits: bool = typer.Option(
            False,
            "--all-splits",
            help="Also use the store's test patients (no labels are read). Only when the "
            "downstream model is evaluated on another store: otherwise its test patients "
            "would have been seen during pretraining.",
        ),
        overwrite: bool = typer.Option(False, help="Replace a finished run in --out."),
    ) -> None:
        """Self-supervised pretraining (see the command help)."""
        from hidim.pretrain import load_ssl_config, pretrain

        overrides = list(set_) + (["data.splits=[train,val,test]"] if all_splits else [])
        try:
            cfg = load_ssl_config(config, overrides=overrides)
            result = pretrain(cfg, out, overwrite=overwrite)
        except HidimError as exc:
            _console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(code=2) from None
        summary = result.summary
        table = Table(title=f"{summary['method']} pretraining of {summary['backbone']}")
        for name in ("epoch", "train_loss", "train_top1", "val_loss", "val_top1"):
            table.add_column(name)
        for row in summary["curve"]:
            table.add_row(
                *(
                    "-" if row.get(k) is None else f"{row[k]:.3f}" if k != "epoch" else str(row[k])
                    for k in ("epoch", "train_loss", "train_top1", "val_loss", "val_top1")
                )
            )
        _console.print(table)
        data = summary["data"]
        _console.print(
            f"{data['train_series']} training + {data['holdout_series']} held-out series "
            f"({data['patients']} patients, splits {', '.join(data['splits'])}); best epoch "
            f"{summary['best_epoch']}; {result.seconds:.1f} s"
        )
        _console.print(
            f"encoder written to [bold]{result.model_file}[/bold]; use it with "
            f"--set model.init_from={result.run_dir}"
        )
