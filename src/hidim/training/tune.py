"""``tune(config, out_dir, trials=N)``: Optuna hyper-parameter search with pruning.

The search space is the config's ``tune.space``: dotted config keys mapped to ranges or
choices, e.g.::

    tune:
      space:
        optim.lr: {low: 1.0e-4, high: 3.0e-3, log: true}
        model.backbone_kwargs.dropout: {low: 0.0, high: 0.5}
        data.clip_frames: {type: categorical, choices: [16, 32]}

**Architecture search** uses choices that are lists or mappings (offered to Optuna as JSON
text). A mapping choice sets several keys at once, so one dimension can pick whole
architectures, each with its own options::

    tune:
      space:
        model:
          choices:
            - {backbone: small3d, backbone_kwargs: {widths: [8, 16, 32, 64]}}
            - {backbone: small3d, backbone_kwargs: {widths: [16, 32, 64, 128]}}
            - {backbone: small2d, backbone_kwargs: {widths: [8, 16, 32, 64]}}
            - {backbone: resnet10_3d, backbone_kwargs: {}}

Each trial trains one model in ``OUT/trials/<n>/`` and reports the monitored validation
metric every epoch; the pruner (median or Hyperband) stops unpromising trials early.

The study lives in an Optuna storage (default ``sqlite:///OUT/optuna.db``), so an
interrupted search resumes where it stopped, and several machines can share one study
through an RDB URL (``--storage postgresql://...``): ``trials`` is the total number of
finished trials the study should hold, whichever worker ran them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hidim.errors import ConfigError, TrainingError
from hidim.provenance import atomic_write_text, write_run_json
from hidim.training.config import ExperimentConfig, TuneParam, config_from_dict, default_monitor

__all__ = ["TuneResult", "tune", "suggest_overrides", "PruningCallback"]


@dataclass(frozen=True)
class TuneResult:
    """Outcome of a search: the best trial's value and parameters, and where it all is."""

    best_value: float | None
    best_params: dict[str, Any]
    n_trials: int
    study_name: str
    storage: str
    out_dir: Path


def suggest_overrides(trial: Any, space: dict[str, TuneParam]) -> list[str]:
    """Sample every dimension of ``space`` with ``trial`` → ``key=value`` override strings."""
    out = []
    for key, p in space.items():
        if p.type == "categorical" or p.choices is not None:
            value: Any = _suggest_choice(trial, key, list(p.choices or ()))
            if isinstance(value, dict):  # an architecture: one override per key it sets
                out.extend(f"{key}.{k}={json.dumps(v)}" for k, v in value.items())
                continue
        elif p.type == "int":
            value = trial.suggest_int(
                key,
                int(p.low or 0),
                int(p.high or 0),
                step=int(p.step or 1),
                log=p.log,  # type: ignore[arg-type]
            )
        else:
            value = trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)  # type: ignore[arg-type]
        out.append(f"{key}={json.dumps(value)}")
    return out


def _suggest_choice(trial: Any, key: str, choices: list[Any]) -> Any:
    """``trial.suggest_categorical``, also for choices Optuna cannot store (lists, dicts):
    those are offered as their canonical JSON text and decoded back."""
    if all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
        return trial.suggest_categorical(key, choices)
    labels = [json.dumps(c, sort_keys=True) for c in choices]
    return json.loads(trial.suggest_categorical(key, labels))


def _pruning_callback_class() -> type:
    from lightning.pytorch.callbacks import Callback

    class _Pruning(Callback):
        def __init__(self, trial: Any, monitor: str) -> None:
            self.trial = trial
            self.monitor = monitor
            self.pruned = False

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            value = trainer.callback_metrics.get(self.monitor)
            if value is None:
                return
            v = float(value)
            if v != v:  # NaN: nothing to compare
                return
            self.trial.report(v, step=trainer.current_epoch)
            if self.trial.should_prune():
                self.pruned = True
                trainer.should_stop = True

    return _Pruning


def PruningCallback(trial: Any, monitor: str) -> Any:  # noqa: N802 - a class factory
    """A Lightning callback reporting ``monitor`` to an Optuna trial and stopping if pruned."""
    return _pruning_callback_class()(trial, monitor)


def tune(
    config: ExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    trials: int,
    storage: str | None = None,
    study_name: str | None = None,
    raw_config: dict[str, Any] | None = None,
) -> TuneResult:
    """Run (or resume) an Optuna study over ``config.tune.space``.

    Args:
        config: The base config (its ``tune`` section defines the search).
        out_dir: Where trials, ``best_config.yaml``, ``trials.csv`` and ``run.json`` go.
        trials: Total finished (complete or pruned) trials the study should hold.
        storage: Optuna storage URL (default: SQLite in ``out_dir``).
        study_name: Study name (default ``hidim``).
        raw_config: The config as a plain dict (default ``config.model_dump()``).
    """
    import optuna
    from optuna.trial import TrialState

    if trials < 1:
        raise TrainingError(f"trials must be >= 1, got {trials}")
    t = config.tune
    if not t.space:
        raise ConfigError(
            "tune.space is empty: add dotted keys with ranges, e.g. "
            "tune: {space: {optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = raw_config or config.model_dump(mode="json")
    monitor_default, mode = default_monitor(config.task.head)
    monitor = t.metric or config.trainer.monitor or monitor_default
    direction = t.direction or (
        "maximize" if (config.trainer.mode or mode) == "max" else "minimize"
    )
    seed = config.trainer.seed
    sampler = (
        optuna.samplers.RandomSampler(seed=seed)
        if t.sampler == "random"
        else optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, t.startup_trials))
    )
    if t.pruner == "median":
        pruner: optuna.pruners.BasePruner = optuna.pruners.MedianPruner(
            n_startup_trials=t.startup_trials, n_warmup_steps=1
        )
    elif t.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner()
    else:
        pruner = optuna.pruners.NopPruner()
    url = storage or f"sqlite:///{(out / 'optuna.db').resolve()}"
    name = study_name or "hidim"
    study = optuna.create_study(
        study_name=name,
        storage=url,
        direction=direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )

    from hidim.training.train import train_member

    def objective(trial: optuna.Trial) -> float:
        overrides = [*suggest_overrides(trial, t.space), f"trainer.monitor={monitor}"]
        cfg = config_from_dict(base, overrides=overrides, source=f"trial {trial.number}")
        callback = PruningCallback(trial, monitor)
        info = train_member(
            cfg,
            out / "trials" / str(trial.number),
            seed=seed,
            callbacks=[callback],
            max_epochs=t.max_epochs,
        )
        if callback.pruned:
            raise optuna.TrialPruned()
        score = info.get("best_score")
        if score is None:
            raise optuna.TrialPruned(f"{monitor} was never finite")
        return float(score)

    done = (TrialState.COMPLETE, TrialState.PRUNED)
    stop = optuna.study.MaxTrialsCallback(trials, states=done)
    if len(study.get_trials(deepcopy=False, states=done)) < trials:
        study.optimize(objective, n_trials=trials, callbacks=[stop], catch=(TrainingError,))
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best_value = study.best_value if finished else None
    best_params = dict(study.best_params) if finished else {}
    if finished:
        # replay the best trial's choices (decodes JSON-text choices, expands architectures)
        fixed = optuna.trial.FixedTrial(best_params)
        best_cfg = config_from_dict(base, overrides=suggest_overrides(fixed, t.space))
        best_params = {
            k: _suggest_choice(fixed, k, list(t.space[k].choices or ()))
            if t.space[k].choices is not None
            else v
            for k, v in best_params.items()
        }
        atomic_write_text(
            out / "best_config.yaml",
            yaml.safe_dump(best_cfg.model_dump(mode="json"), sort_keys=False),
        )
    frame = study.trials_dataframe()
    atomic_write_text(out / "trials.csv", frame.to_csv(index=False))
    write_run_json(
        out,
        command="tune",
        config=config,
        seed=seed,
        extra={
            "study": name,
            "storage": url if storage is None else "(user storage)",
            "monitor": monitor,
            "direction": direction,
            "best_value": best_value,
            "best_params": best_params,
            "n_trials": len(study.trials),
        },
    )
    return TuneResult(
        best_value=best_value,
        best_params=best_params,
        n_trials=len(study.trials),
        study_name=name,
        storage=url,
        out_dir=out,
    )
