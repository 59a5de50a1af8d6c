"""Federated training without a network (same clients and strategy as over gRPC):
aggregation oracle, 1-site equivalence with central training, FedProx, statistics, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays

from hidim.errors import FederatedError
from hidim.federated import Site, sites_from_column, sites_from_stores, train_federated
from hidim.federated import protocol as P
from hidim.federated.client import SiteClient
from hidim.federated.model import build_module
from hidim.federated.parameters import ParameterLayout
from hidim.federated.server import LocalClientProxy
from hidim.federated.statistics import merge_descriptions
from hidim.federated.strategy import make_strategy
from hidim.store import Store, TabularEncoder, labels_per_series
from hidim.training.config import config_from_dict, dump_config
from hidim.training.datamodule import GroupCoder, HidimDataModule
from hidim.training.train import train_member


def _start(cfg: Any, sites: list[Site]) -> tuple[list[SiteClient], Any, ParameterLayout, dict]:
    """What the server does before round 1, by hand: describe, merge, build, configure."""
    clients = [SiteClient(site=s) for s in sites]
    text = dump_config(cfg)
    replies = [c.get_properties({P.PHASE_KEY: P.DESCRIBE, P.CONFIG_KEY: text}) for c in clients]
    stats = merge_descriptions(cfg, [json.loads(r["description"]) for r in replies])
    L.seed_everything(cfg.trainer.seed, verbose=False)
    module = build_module(cfg, stats)
    layout = ParameterLayout.of(module)
    fit_config = {
        P.CONFIG_KEY: text,
        P.STATISTICS_KEY: stats.to_json(),
        "server_round": 1,
        "local_epochs": 1,
        "bn": "global",
    }
    return clients, stats, layout, {"module": module, "fit": fit_config}


def test_one_round_aggregate_is_the_example_weighted_average(
    fed_store: Path, fed_config: Callable[..., dict]
) -> None:
    cfg = config_from_dict(fed_config())
    sites = [s for s in sites_from_column(fed_store, "site") if s.name in ("east", "north")]
    clients, _stats, layout, ctx = _start(cfg, sites)
    initial = layout.get(ctx["module"])
    ins = FitIns(ndarrays_to_parameters(initial), ctx["fit"])
    results = [
        (LocalClientProxy(str(i), c.to_client()), c.to_client().fit(ins))
        for i, c in enumerate(clients)
    ]
    strategy = make_strategy(name="fedavg", n_sites=2, num_rounds=1, local_epochs=1)
    strategy.start(  # type: ignore[attr-defined]
        layout=layout,
        initial=ndarrays_to_parameters(initial),
        config_text=ctx["fit"][P.CONFIG_KEY],
        statistics_text=ctx["fit"][P.STATISTICS_KEY],
    )
    aggregated, _ = strategy.aggregate_fit(1, list(reversed(results)), [])
    got = parameters_to_ndarrays(aggregated)
    local = [parameters_to_ndarrays(res.parameters) for _, res in results]
    n = np.array([res.num_examples for _, res in results], dtype=float)
    assert sorted(n) == [4.0, 4.0] or n.sum() > 0
    for k, arr in enumerate(got):  # numpy oracle: sum_i n_i w_i / sum_i n_i
        oracle = np.average(np.stack([w[k] for w in local]), axis=0, weights=n)
        np.testing.assert_allclose(arr, oracle, rtol=1e-6, atol=1e-7)
    assert not np.allclose(local[0][0], local[1][0])  # the sites really differed
    weights = strategy.record.rounds[0]["weights"]  # type: ignore[attr-defined]
    assert weights == pytest.approx({"east": n[0] / n.sum(), "north": n[1] / n.sum()})


def test_one_site_one_round_equals_central_training(
    fed_store: Path, fed_config: Callable[..., dict], tmp_path: Path
) -> None:
    cfg = config_from_dict(fed_config(uncertainty={"ood_gate": False}))
    central = tmp_path / "central"
    train_member(cfg, central, seed=cfg.trainer.seed, max_epochs=1)
    result = train_federated(
        cfg,
        sites_from_stores({"all": fed_store}),
        tmp_path / "fed",
        rounds=1,
        local_epochs=1,
        transport="inprocess",
        evaluate=False,
        show_progress=False,
    )
    a = torch.load(central / "checkpoints" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(result.run_dir / "checkpoints" / "model.pt", weights_only=True)["state_dict"]
    float_keys = [k for k, v in a.items() if v.is_floating_point()]
    assert any("running_mean" in k for k in float_keys)
    for key in float_keys:
        torch.testing.assert_close(b[key], a[key], rtol=1e-6, atol=1e-7, msg=key)


def test_fedprox_keeps_local_weights_closer_to_the_global_ones(
    fed_store: Path, fed_config: Callable[..., dict]
) -> None:
    # 4 training items, batch 1, 2 epochs: 8 steps (the term is 0 at the first step)
    raw = fed_config(
        optim={"optimizer": "sgd", "lr": 0.02, "scheduler": "none"}, data={"batch_size": 1}
    )
    cfg = config_from_dict(raw)
    sites = [s for s in sites_from_column(fed_store, "site") if s.name == "north"]
    drift = {}
    for mu in (0.0, 20.0):
        clients, _, layout, ctx = _start(cfg, sites)
        initial = layout.get(ctx["module"])
        arrays, n, metrics = clients[0].fit(
            initial, {**ctx["fit"], "local_epochs": 2, "proximal_mu": mu}
        )
        assert "error" not in metrics, metrics
        drift[mu] = sum(float(((a - b) ** 2).sum()) for a, b in zip(arrays, initial, strict=True))
    assert drift[20.0] < 0.5 * drift[0.0]


def test_statistics_equal_the_pooled_central_ones(
    fed_store: Path, fed_config: Callable[..., dict]
) -> None:
    raw = fed_config(
        data={"tabular": ["age", "sex"], "group_columns": ["site", "sex"]}, model={"tabular": True}
    )
    cfg = config_from_dict(raw)
    clients, stats, _, _ = _start(cfg, sites_from_column(fed_store, "site"))
    dm = HidimDataModule(cfg.data, seed=0)
    dm.setup()
    y = dm.train_arrays()["target"].astype(np.float64)  # as the head's fit_target reads it
    assert stats.target["mean"] == pytest.approx(float(np.mean(y)), rel=1e-12)
    assert stats.target["sd"] == pytest.approx(float(np.std(y)), rel=1e-9)
    store = Store(fed_store)
    m = store.manifest
    rows = m[(m["split"] == "train") & (m["view"] == "A4C")]
    central = TabularEncoder.fit(labels_per_series(rows, store.labels), ["age", "sex"])
    fed = stats.tabular_encoder()
    assert fed.names == central.names and fed.categories == central.categories
    assert fed.means["age"] == pytest.approx(central.means["age"], rel=1e-12)
    assert fed.stds["age"] == pytest.approx(central.stds["age"], rel=1e-9)
    assert stats.group_coder().vocab == GroupCoder.fit(store.labels, ["site", "sex"]).vocab
    assert sum(stats.n_train.values()) == len(dm.datasets["train"])


def test_binary_prior_and_cox_grid_from_counts(
    fed_store: Path, fed_config: Callable[..., dict]
) -> None:
    cfg = config_from_dict(fed_config(data={"threshold": 45.0}, task={"head": "binary"}))
    _, stats, _, ctx = _start(cfg, sites_from_column(fed_store, "site"))
    dm = HidimDataModule(cfg.data, seed=0)
    y = dm.train_arrays()["target"]
    assert stats.class_counts == [int((y == 0).sum()), int((y == 1).sum())]
    p = y.mean()
    bias = float(ctx["module"].head.linear.bias)
    assert bias == pytest.approx(np.log(p / (1 - p)), rel=1e-5)
    cox = config_from_dict(
        fed_config(data={"target": None}, task={"head": "cox", "params": {"n_times": 10}})
    )
    _, cstats, _, _ = _start(cox, sites_from_column(fed_store, "site"))
    arrays = HidimDataModule(cox.data, seed=0).train_arrays()
    t_max = float(arrays["time"][arrays["event"].astype(bool)].max())
    np.testing.assert_allclose(cstats.time_edges, np.linspace(0, t_max, 11))


def test_cox_federation_writes_a_baseline_predict_accepts(
    fed_store: Path, fed_config: Callable[..., dict], tmp_path: Path
) -> None:
    raw = fed_config(data={"target": None}, task={"head": "cox", "params": {"n_times": 10}})
    result = train_federated(
        config_from_dict(raw),
        sites_from_column(fed_store, "site"),
        tmp_path / "cox",
        rounds=1,
        local_epochs=1,
        transport="inprocess",
        show_progress=False,
    )
    state = torch.load(result.run_dir / "checkpoints" / "model.pt", weights_only=True)
    assert bool(state["state_dict"]["net.head.baseline_fitted"])
    h0 = state["state_dict"]["net.head.baseline_cumhaz"].numpy()
    assert (np.diff(h0) >= 0).all() and h0[-1] > 0
    curves = pd.read_parquet(result.run_dir / "survival_curves.parquet")
    assert curves["survival"].between(0, 1).all()
    assert set(result.metrics["sites"]) == {"east", "north", "south"}
    assert "cindex" in result.metrics["test"]["metrics"]


def test_site_without_training_data_is_named(
    fed_store: Path, fed_config: Callable[..., dict], tmp_path: Path
) -> None:
    store = Store(fed_store)
    test_only = frozenset(store.manifest.loc[store.manifest["split"] == "test", "patient_key"])
    sites = [
        Site(name="north", store=fed_store),
        Site(name="hillside", store=fed_store, patients=test_only),
    ]
    with pytest.raises(FederatedError, match="site 'hillside' has no training data"):
        train_federated(
            config_from_dict(fed_config()),
            sites,
            tmp_path / "bad",
            rounds=1,
            local_epochs=1,
            transport="inprocess",
            show_progress=False,
        )
    assert not (tmp_path / "bad" / "run.json").exists()


def test_bad_arguments_fail_before_any_work(
    fed_config: Callable[..., dict], tmp_path: Path, fed_store: Path
) -> None:
    cfg = config_from_dict(fed_config())
    sites = sites_from_stores({"a": fed_store})
    with pytest.raises(FederatedError, match="--strategy must be one of"):
        train_federated(cfg, sites, tmp_path / "x", rounds=1, local_epochs=1, strategy="fedsgd")
    with pytest.raises(FederatedError, match="rounds and local epochs must be >= 1"):
        train_federated(cfg, sites, tmp_path / "x", rounds=0, local_epochs=1)
    with pytest.raises(FederatedError, match="no such column"):
        sites_from_column(fed_store, "hospital")
    with pytest.raises(FederatedError, match="site 'nowhere'"):
        sites_from_stores({"nowhere": tmp_path / "missing"})


def test_fedbn_keeps_batch_norm_local_in_every_round(
    fed_store: Path, fed_config: Callable[..., dict]
) -> None:
    cfg = config_from_dict(fed_config())
    sites = [s for s in sites_from_column(fed_store, "site") if s.name == "south"]
    clients, _, layout, ctx = _start(cfg, sites)
    client = clients[0]
    config = {**ctx["fit"], "bn": "local"}
    arrays, _, _ = client.fit(layout.get(ctx["module"]), config)
    mine = dict(zip(layout.keys, arrays, strict=True))
    other = [a + 1.0 for a in arrays]  # a "global" model different everywhere
    bn = sorted(layout.batchnorm)
    assert bn and any(k.endswith("running_var") for k in bn)

    def state() -> dict[str, np.ndarray]:
        return dict(zip(layout.keys, layout.get(client._state.module), strict=True))

    for final in (False, True):  # per-round and final evaluation: the personal model
        ev = {**config, P.PHASE_KEY: P.ROUND, "final": final}
        _, _, metrics = client.evaluate(other, ev)
        assert "error" not in metrics, metrics
        assert ("test_r2" in metrics) == final
        now = state()
        for key in layout.keys:
            expected = mine[key] if key in layout.batchnorm else mine[key] + 1.0
            np.testing.assert_allclose(now[key], expected, rtol=1e-6, err_msg=key)
    # the statistics phases use the exported global model in full
    _, _, metrics = client.evaluate(other, {**config, P.PHASE_KEY: P.FINALISE})
    assert "aggregates" in metrics
    np.testing.assert_allclose(state()[bn[0]], mine[bn[0]] + 1.0, rtol=1e-6)
