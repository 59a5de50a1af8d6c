"""Classification and regression heads against torch's losses; metrics against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from hidim.errors import TaskError
from hidim.tasks.base import get_head
from hidim.tasks.classification import BinaryHead, MulticlassHead, binary_entropy
from hidim.tasks.regression import RegressionHead
from hidim.training.metrics import auprc, auroc, metrics_with_ci, r2


def test_heads_are_registered() -> None:
    assert get_head("binary") is BinaryHead
    assert get_head("multiclass") is MulticlassHead
    assert get_head("regression") is RegressionHead


def test_binary_head_loss_and_predictions() -> None:
    torch.manual_seed(0)
    head = BinaryHead(in_features=4, pos_weight=2.0)
    feats = torch.randn(6, 4)
    batch = {
        "target": torch.tensor([0.0, 1, 1, 0, 1, 0]),
        "sample_weight": torch.tensor([1.0, 2, 1, 1, 0.5, 1]),
    }
    out = head(feats)
    ref = F.binary_cross_entropy_with_logits(
        out["logits"], batch["target"], pos_weight=torch.tensor(2.0), reduction="none"
    )
    w = batch["sample_weight"]
    torch.testing.assert_close(head.loss(out, batch), (ref * w).sum() / w.sum())
    pred = head.predict(out)
    torch.testing.assert_close(pred["prob"].sum(dim=1), torch.ones(6))
    torch.testing.assert_close(pred["score"], torch.sigmoid(out["logits"]))
    assert binary_entropy(torch.tensor([0.5]))[0] == pytest.approx(1.0)
    assert (pred["uncertainty"] <= 1).all() and (pred["uncertainty"] >= 0).all()
    head.fit_target(np.array([1, 0, 0, 0]))
    assert head.linear.bias.item() == pytest.approx(math.log(0.25 / 0.75))


def test_binary_head_rejects_bad_targets() -> None:
    head = BinaryHead(in_features=2)
    out = head(torch.randn(2, 2))
    with pytest.raises(TaskError, match="must be 0 or 1"):
        head.loss(out, {"target": torch.tensor([0.0, 2.0])})
    with pytest.raises(TaskError, match="missing values"):
        head.loss(out, {"target": torch.tensor([0.0, float("nan")])})
    with pytest.raises(TaskError, match="data.target"):
        head.loss(out, {})


def test_multiclass_head_matches_cross_entropy() -> None:
    torch.manual_seed(0)
    head = MulticlassHead(
        in_features=5, n_classes=3, class_weights=[1.0, 2.0, 0.5], label_smoothing=0.1
    )
    out = head(torch.randn(7, 5))
    y = torch.tensor([0, 1, 2, 2, 1, 0, 1])
    ref = F.cross_entropy(
        out["logits"],
        y,
        weight=torch.tensor([1.0, 2.0, 0.5]),
        label_smoothing=0.1,
        reduction="none",
    )
    torch.testing.assert_close(head.loss(out, {"target": y.float()}), ref.mean())
    pred = head.predict(out)
    assert pred["prob"].shape == (7, 3) and pred["label"].dtype == torch.long
    assert ((pred["uncertainty"] >= 0) & (pred["uncertainty"] <= 1 + 1e-6)).all()
    with pytest.raises(TaskError, match="codes 0..2"):
        head.loss(out, {"target": torch.tensor([0, 1, 2, 3, 1, 0, 1])})


def test_regression_head_standardises_and_reports_in_target_units() -> None:
    torch.manual_seed(0)
    head = RegressionHead(in_features=3, loss="mse")
    head.fit_target(np.array([30.0, 50.0, 70.0]))
    assert head.target_mean.item() == pytest.approx(50.0)
    out = head(torch.randn(4, 3))
    y = torch.tensor([40.0, 55.0, 60.0, 35.0])
    t = (y - 50.0) / head.target_std
    torch.testing.assert_close(head.loss(out, {"target": y}), F.mse_loss(out["z"], t))
    pred = head.predict(out)
    torch.testing.assert_close(pred["value"], out["z"] * head.target_std + 50.0)
    assert "uncertainty" not in pred


def test_heteroscedastic_regression_predicts_an_sd() -> None:
    torch.manual_seed(0)
    head = RegressionHead(in_features=3, heteroscedastic=True, target_std=10.0)
    out = head(torch.randn(4, 3))
    y = torch.randn(4)
    var = out["log_var"].exp()
    manual = 0.5 * (var.log() + (out["z"] - y / 10.0) ** 2 / var)
    torch.testing.assert_close(head.loss(out, {"target": y}), manual.mean())
    torch.testing.assert_close(
        head.predict(out)["uncertainty"], (0.5 * out["log_var"]).exp() * 10.0
    )
    with pytest.raises(TaskError, match="missing/infinite"):
        head.loss(out, {"target": torch.tensor([1.0, float("nan"), 0.0, 0.0])})
    with pytest.raises(TaskError, match="loss must be one of"):
        RegressionHead(in_features=3, loss="l3")  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    y=st.lists(st.integers(0, 1), min_size=4, max_size=40),
    seed=st.integers(0, 10_000),
    ties=st.booleans(),
)
def test_fast_metrics_equal_scikit_learn(y: list[int], seed: int, ties: bool) -> None:
    yy = np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 4, yy.size).astype(float) if ties else rng.random(yy.size)
    if 0 < yy.sum() < yy.size:
        assert auroc(yy, s) == pytest.approx(skm.roc_auc_score(yy, s))
        assert auprc(yy, s) == pytest.approx(skm.average_precision_score(yy, s))
    else:
        assert math.isnan(auroc(yy, s))
    cont = rng.normal(size=yy.size)
    assert r2(cont, cont * 0.5 + 0.1) == pytest.approx(skm.r2_score(cont, cont * 0.5 + 0.1))


def test_metrics_with_ci_brackets_the_estimate_and_skips_undefined() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60).astype(float)
    s = np.clip(y * 0.6 + rng.random(60) * 0.5, 0, 1)
    res = metrics_with_ci("binary", score=s, target=y, n_boot=200)
    ci = res["ci"]["auroc"]
    assert ci["low"] <= res["metrics"]["auroc"] <= ci["high"]
    one_class = metrics_with_ci("binary", score=s, target=np.ones(60), n_boot=50)
    assert one_class["ci"]["auroc"] is None and math.isnan(one_class["metrics"]["auroc"])
