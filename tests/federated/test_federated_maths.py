"""The federated maths against pooled-data oracles: moments, quantiles, Cox baseline,
feature densities, the FedProx term, the exchanged-parameter layout and the protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from hidim.errors import FederatedError
from hidim.federated import protocol as P
from hidim.federated.aggregates import (
    density_moments,
    fill_density,
    merge_density_moments,
    merge_moments,
    merge_quantiles,
    moments,
    pack_arrays,
    pem_cumulative_hazard,
    pem_statistics,
    site_quantiles,
    unpack_arrays,
)
from hidim.federated.parameters import ParameterLayout
from hidim.federated.proximal import ProximalPenalty, proximal_term
from hidim.federated.site_compute import refine_grid
from hidim.tasks.cox import breslow_cumulative_hazard
from hidim.tasks.feature_density import FeatureDensity

_finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(_finite, min_size=0, max_size=20), min_size=1, max_size=5))
def test_merged_moments_equal_pooled_mean_and_sd(parts: list[list[float]]) -> None:
    pooled = np.concatenate([np.asarray(p, dtype=float) for p in parts])
    n, mean, m2 = merge_moments([moments(np.asarray(p)) for p in parts])
    assert n == pooled.size
    if n:
        np.testing.assert_allclose(mean, pooled.mean(), atol=1e-9)
        np.testing.assert_allclose(np.sqrt(m2 / n), pooled.std(), atol=1e-6)


def test_merged_quantiles_one_site_exact_several_sites_close() -> None:
    rng = np.random.default_rng(0)
    x = rng.exponential(300, 500)
    levels = np.array([0.1, 0.5, 0.9, 0.99])
    one = merge_quantiles([site_quantiles(x)], [x.size], levels)
    np.testing.assert_allclose(one, np.quantile(x, levels), rtol=1e-12)
    parts = [rng.exponential(s, n) for s, n in ((100, 300), (400, 150), (900, 50))]
    pooled = np.concatenate(parts)
    merged = merge_quantiles([site_quantiles(p) for p in parts], [p.size for p in parts], levels)
    truth = np.quantile(pooled, levels)
    # within the 1/200 level spacing of the sites' quantile functions
    cdf = np.searchsorted(np.sort(pooled), merged) / pooled.size
    np.testing.assert_allclose(cdf, levels, atol=0.01)
    np.testing.assert_allclose(merged[:3], truth[:3], rtol=0.05)


def test_pem_baseline_sums_over_sites_and_approaches_breslow() -> None:
    rng = np.random.default_rng(1)
    n = 600
    eta = rng.normal(0, 0.8, n)
    t_event = rng.weibull(1.3, n) * 1000 / np.exp(eta / 1.3)
    cens = rng.exponential(1500, n)
    time = np.minimum(t_event, cens)
    event = t_event <= cens
    coarse = np.linspace(0, time[event].max(), 21)
    fine = refine_grid(coarse)
    # two sites' aggregates sum to the pooled aggregates exactly
    a, b = slice(0, 250), slice(250, n)
    da, ea = pem_statistics(eta[a], time[a], event[a], fine)
    db, eb = pem_statistics(eta[b], time[b], event[b], fine)
    d, e = pem_statistics(eta, time, event, fine)
    np.testing.assert_allclose(da + db, d)
    np.testing.assert_allclose(ea + eb, e, rtol=1e-12)
    fed = pem_cumulative_hazard(da + db, ea + eb, fine, coarse[1:])
    times, cumhaz = breslow_cumulative_hazard(eta, time, event)
    breslow = cumhaz[np.searchsorted(times, coarse[1:], side="right") - 1]
    at_risk = (time[None, :] >= coarse[1:, None]).sum(axis=1)
    big = at_risk >= 50  # where the risk set is large, PEM and Breslow agree closely
    np.testing.assert_allclose(fed[big], breslow[big], rtol=0.02)
    np.testing.assert_allclose(fed, breslow, rtol=0.1)  # the sparse tail: within 10 %


def test_density_from_site_moments_equals_pooled_fit() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=(120, 4)) @ rng.normal(size=(4, 4))
    y = (rng.random(120) < 0.4).astype(int)
    z[y == 1] += 1.5
    central = FeatureDensity(in_features=4, n_classes=2)
    central.fit(z, y)
    parts = [density_moments(z[s], y[s], 2) for s in (slice(0, 30), slice(30, 90), slice(90, 120))]
    fed = FeatureDensity(in_features=4, n_classes=2)
    fill_density(fed, merge_density_moments(parts))
    torch.testing.assert_close(fed.means, central.means)
    torch.testing.assert_close(fed.whitener, central.whitener)
    x = torch.as_tensor(rng.normal(size=(10, 4)))
    torch.testing.assert_close(fed.mahalanobis_sq(x), central.mahalanobis_sq(x))


def test_density_needs_two_items_per_class() -> None:
    m = density_moments(np.ones((3, 2)), np.array([0, 0, 1]), 2)
    with pytest.raises(FederatedError, match=">= 2 training samples"):
        fill_density(FeatureDensity(in_features=2, n_classes=2), m)


def test_pack_round_trip_refuses_pickles() -> None:
    data = pack_arrays({"a": np.arange(3.0), "b": np.eye(2)})
    out = unpack_arrays(data)
    np.testing.assert_array_equal(out["b"], np.eye(2))


# ---- FedProx ----------------------------------------------------------------------------------
def test_proximal_term_zero_at_mu_zero_and_at_the_anchor() -> None:
    w = [torch.randn(3, 2, requires_grad=True), torch.randn(4, requires_grad=True)]
    anchors = [p.detach() + 1.0 for p in w]
    assert float(proximal_term(w, anchors, 0.0)) == 0.0
    assert float(proximal_term(w, [p.detach() for p in w], 0.5)) == 0.0
    value = proximal_term(w, anchors, 0.5)
    assert float(value) == pytest.approx(0.25 * 10)  # mu/2 * ||w - w0||^2, 10 entries of 1
    value.backward()
    for p, a in zip(w, anchors, strict=True):  # gradient mu (w - w0): descent moves to w0
        torch.testing.assert_close(p.grad, 0.5 * (p.detach() - a))
    with pytest.raises(FederatedError, match="mu must be >= 0"):
        proximal_term(w, anchors, -1.0)


def test_proximal_penalty_pulls_towards_the_global_weights() -> None:
    net = nn.Linear(3, 1)
    penalty = ProximalPenalty(mu=1.0)
    penalty.anchor(net)
    start = [p.detach().clone() for p in net.parameters()]
    assert float(penalty({}, {})) == 0.0
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    dist = [sum(float((p - s).pow(2).sum()) for p, s in zip(net.parameters(), start, strict=True))]
    for _ in range(5):
        opt.zero_grad()
        penalty({}, {}).backward()
        opt.step()
        dist.append(
            sum(float((p - s).pow(2).sum()) for p, s in zip(net.parameters(), start, strict=True))
        )
    assert all(b < a for a, b in zip(dist, dist[1:], strict=False))


# ---- parameter layout ---------------------------------------------------------------------------
class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 3)
        self.bn = nn.BatchNorm3d(2)
        self.fc = nn.Linear(2, 1)
        self.register_buffer("target_mean", torch.zeros(()))


def test_layout_exchanges_parameters_and_bn_statistics_only() -> None:
    net = _Net()
    layout = ParameterLayout.of(net)
    assert layout.keys == (
        "conv.weight",
        "conv.bias",
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "fc.weight",
        "fc.bias",
    )
    assert layout.batchnorm == {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"}
    assert layout.digest == ParameterLayout.of(_Net()).digest
    arrays = [np.full(s, 7.0, dtype=np.float32) for s in layout.shapes]
    layout.set(net, arrays, skip=layout.local_keys("local"))
    assert float(net.bn.running_var[0]) == 1.0  # kept local (FedBN)
    assert float(net.fc.weight[0, 0]) == 7.0
    layout.set(net, arrays)
    assert float(net.bn.running_var[0]) == 7.0
    assert int(net.bn.num_batches_tracked) == 0  # integer buffers never travel
    with pytest.raises(FederatedError, match="conv.weight should have shape"):
        layout.set(net, [np.zeros((1,), np.float32)] + arrays[1:])
    with pytest.raises(FederatedError, match="expected 8 arrays"):
        layout.check(arrays[:3])


def test_protocol_rejects_errors_and_unknown_keys() -> None:
    assert P.check_reply("fit", {"site": "north", "train_loss": 1.0}) == "north"
    with pytest.raises(FederatedError, match="site 'north': no training data"):
        P.check_reply("fit", {"site": "north", "error": "no training data"})
    with pytest.raises(FederatedError, match=r"outside the hidim protocol.*\['patient_key'\]"):
        P.check_reply("fit", {"site": "north", "patient_key": "P001"})
