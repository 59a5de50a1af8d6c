"""hidim.training: config, DataModule, LightningModule, training runs, prediction, HPO.

* :mod:`~hidim.training.config` — frozen YAML config (``load_config``), CLI overrides;
* :mod:`~hidim.training.datamodule` — ``HidimDataModule`` over a store (group codes,
  balanced/event batches, patient folds); :mod:`~hidim.training.samplers`;
* :mod:`~hidim.training.module` — ``HidimModule`` (network + head loss + penalties + metrics);
* :mod:`~hidim.training.train` — ``train(config, out_dir)``: runs, ensembles, CV folds;
* :mod:`~hidim.training.predict` — per-clip/per-study predictions, uncertainty, abstention;
* :mod:`~hidim.training.bundle` — ``load_run(run_dir)`` for prediction and explanation;
* :mod:`~hidim.training.tune` — Optuna search; :mod:`~hidim.training.cv` — patient folds;
* :mod:`~hidim.training.metrics` — per-task metrics with bootstrap CIs;
* :mod:`~hidim.training.fairness` — fairness penalties.

See ``docs/training.md``.
"""
