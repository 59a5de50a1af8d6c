"""Evidential heads: losses against closed forms, training on toys, OOD uncertainty."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hidim.errors import TaskError
from hidim.evaluate import ood_auroc
from hidim.tasks.base import get_head
from hidim.tasks.evidential import (
    EvidentialClassificationHead,
    EvidentialRegressionHead,
    dirichlet_kl_uniform,
    nig_nll,
)


def test_survival_dirichlet_kl_matches_torch_distributions() -> None:
    alpha = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.5, 7.0], [30.0, 1.2, 1.0]], dtype=torch.float64)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Dirichlet(alpha), torch.distributions.Dirichlet(torch.ones_like(alpha))
    )
    torch.testing.assert_close(dirichlet_kl_uniform(alpha), ref)


def test_survival_nig_nll_is_the_student_t_marginal() -> None:
    from scipy.stats import t as student_t

    gamma, nu, alpha, beta, y = 0.3, 2.0, 3.0, 1.5, 1.1
    # marginal of NIG: Student-t, df = 2 alpha, loc gamma, scale^2 = beta (1 + nu) / (nu alpha)
    ref = -student_t.logpdf(
        y, df=2 * alpha, loc=gamma, scale=np.sqrt(beta * (1 + nu) / (nu * alpha))
    )
    got = nig_nll(*(torch.tensor(v, dtype=torch.float64) for v in (y, gamma, nu, alpha, beta)))
    assert float(got) == pytest.approx(ref, rel=1e-12)


def _blobs(n: int, rng: np.random.Generator):
    ang = np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])
    centres = 2.5 * np.stack([np.cos(ang), np.sin(ang)], 1)
    y = rng.integers(0, 3, n)
    return torch.tensor(centres[y] + rng.normal(size=(n, 2)), dtype=torch.float32), torch.tensor(y)


def test_survival_evidential_classification_learns_and_flags_ood() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = _blobs(1500, rng)
    body = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh())
    head = get_head("evidential_classification")(in_features=32, n_classes=3, annealing_epochs=10)
    opt = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=1e-2)
    losses = []
    for epoch in range(25):
        perm = torch.randperm(1500)
        total = 0.0
        for s in range(0, 1500, 100):
            b = perm[s : s + 100]
            loss = head.loss(head(body(x[b])), {"target": y[b], "epoch": epoch})
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        losses.append(total)
    assert losses[-1] < 0.6 * losses[0]
    with pytest.raises(TaskError, match="missing"):
        head.loss(head(body(x[:2])), {"target": torch.tensor([0.0, float("nan")]), "epoch": 0})
    head.eval()
    xt, yt = _blobs(600, rng)
    ood = torch.tensor(rng.normal(size=(300, 2)) * 0.3, dtype=torch.float32)  # unseen cluster
    with torch.no_grad():
        pid, pood = head.predict(head(body(xt))), head.predict(head(body(ood)))
    assert float((pid["prob"].argmax(1) == yt).float().mean()) > 0.85
    assert torch.allclose(pid["prob"].sum(1), torch.ones(600))
    assert bool(((pid["uncertainty"] > 0) & (pid["uncertainty"] <= 1)).all())
    assert float(pood["uncertainty"].mean()) > 2 * float(pid["uncertainty"].mean())
    assert ood_auroc(pid["uncertainty"].numpy(), pood["uncertainty"].numpy()) > 0.85
    # far-away inputs: Sensoy's evidence alone stays confident; the density gate refuses them
    far = torch.tensor(
        rng.normal(size=(300, 2)) * 0.5 + np.array([12.0, -9.0]), dtype=torch.float32
    )
    with torch.no_grad():
        u_far_plain = head.predict(head(body(far)))["uncertainty"]
        head.fit_density(body(x), y)
        gated_id = head.predict(head(body(xt)))
        gated_far = head.predict(head(body(far)))
    assert float(u_far_plain.median()) < 0.5
    assert float(gated_far["uncertainty"].min()) > 0.99
    assert ood_auroc(gated_id["uncertainty"].numpy(), gated_far["uncertainty"].numpy()) > 0.99
    assert float((gated_id["prob"].argmax(1) == yt).float().mean()) > 0.85  # ID unchanged
    assert "feature_distance" in gated_id


def test_survival_feature_density_matches_a_direct_mahalanobis_computation() -> None:
    from hidim.tasks.feature_density import FeatureDensity

    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 600)
    z = rng.normal(size=(600, 4)) @ rng.normal(size=(4, 4)) + y[:, None] * 3.0
    dens = FeatureDensity(in_features=4, n_classes=3, shrinkage=0.0)
    dens.fit(z, y)
    mu = np.stack([z[y == k].mean(0) for k in range(3)])
    resid = z - mu[y]
    prec = np.linalg.inv(resid.T @ resid / (600 - 3))
    probe = rng.normal(size=(5, 4)) * 4
    direct = np.min([np.einsum("ij,jk,ik->i", probe - m, prec, probe - m) for m in mu], axis=0)
    np.testing.assert_allclose(dens.mahalanobis_sq(torch.tensor(probe)).numpy(), direct, rtol=1e-10)
    gate = dens.log_gate(torch.tensor(z, dtype=torch.float32))
    assert float((gate == 0).float().mean()) == pytest.approx(0.99, abs=0.005)
    with pytest.raises(TaskError, match="every class needs >= 2"):
        dens.fit(z[:3], np.array([0, 0, 1]))


def test_survival_evidential_classification_needs_the_epoch_while_training() -> None:
    head = EvidentialClassificationHead(in_features=4, n_classes=2)
    out = head(torch.zeros(3, 4))
    batch = {"target": torch.tensor([0, 1, 1])}
    with pytest.raises(TaskError, match=r"batch\['epoch'\] = current_epoch or call head.set_epoch"):
        head.loss(out, batch)
    head.set_epoch(5)
    assert head.kl_weight(batch) == 0.5
    assert head.kl_weight({**batch, "epoch": 20}) == 1.0
    head.eval()
    head.epoch = None
    assert head.kl_weight(batch) == 1.0
    with pytest.raises(TaskError, match=r"class indices must lie in 0..1"):
        head.loss(out, {"target": torch.tensor([0, 2, 1]), "epoch": 0})
    binary = head.predict(out)
    assert binary["score"].shape == (3,)
    torch.testing.assert_close(binary["uncertainty"], 2 / (out["evidence"].sum(1) + 2))


def test_survival_evidential_regression_learns_and_epistemic_grows_off_support() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, 1000)
    y = np.sin(x) + rng.normal(size=1000) * 0.1 * (1 + np.abs(x))
    xt = torch.tensor(x[:, None], dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    body = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh())
    head = get_head("evidential_regression")(in_features=64, coeff=0.01)
    assert isinstance(head, EvidentialRegressionHead)
    y = 50.0 + 10.0 * y  # in "percent": the head standardises internally
    yt = torch.tensor(y, dtype=torch.float32)
    head.fit_target(y)
    opt = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=5e-3)
    first = last = 0.0
    for epoch in range(40):
        perm = torch.randperm(1000)
        total = 0.0
        for s in range(0, 1000, 100):
            b = perm[s : s + 100]
            loss = head.loss(head(body(xt[b])), {"target": yt[b]})
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        first = total if epoch == 0 else first
        last = total
    assert last < first - 5.0
    with torch.no_grad():
        pin = head.predict(head(body(xt)))
        pout = head.predict(
            head(body(torch.tensor(rng.uniform(5, 7, (200, 1)), dtype=torch.float32)))
        )
    assert float(((pin["value"] - yt) ** 2).mean()) < 15.0  # noise variance ~ 4 to 16
    assert float(pout["epistemic"].median()) > 3 * float(pin["epistemic"].median())
    # aleatoric variance tracks the heteroscedastic noise: larger at |x| > 2 than |x| < 1
    noisy, calm = np.abs(x) > 2, np.abs(x) < 1
    assert float(pin["aleatoric"][noisy].mean()) > float(pin["aleatoric"][calm].mean())


@pytest.mark.parametrize("name", ["evidential_classification", "evidential_regression"])
def test_survival_evidential_head_contract(name) -> None:
    torch.manual_seed(0)
    head = get_head(name)(in_features=6)
    feats = torch.randn(10, 6)
    target = torch.tensor([0, 1] * 5) if "class" in name else torch.randn(10) * 5 + 50
    if hasattr(head, "fit_target"):
        head.fit_target(target.numpy())
    out = head(feats)
    loss = head.loss(out, {"target": target, "epoch": 3, "sample_weight": torch.ones(10)})
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in head.parameters())
    pred = head.predict(out)
    for key in ("score", "uncertainty"):
        assert pred[key].shape == (10,) and bool(torch.isfinite(pred[key]).all())
    assert bool((pred["uncertainty"] > 0).all())
    if hasattr(head, "fit_density"):
        head.fit_density(feats, target)
    clone = get_head(name)(in_features=6)
    clone.load_state_dict(head.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(
            clone.predict(clone(feats))["score"], head.predict(head(feats))["score"]
        )
