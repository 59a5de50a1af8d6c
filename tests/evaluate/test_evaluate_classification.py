"""Classification/regression metrics against scikit-learn, and the bootstrap."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from hidim.errors import EvaluationError
from hidim.evaluate import (
    auprc,
    auroc,
    binary_metrics,
    bootstrap_ci,
    concordance_index,
    concordance_index_ipcw,
    mae,
    operating_point,
    r2,
    regression_metrics,
    rmse,
    sensitivity,
)


def test_evaluate_classification_metrics_match_sklearn() -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

    x, y = load_breast_cancer(return_X_y=True)
    score = x[:, 0] / x[:, 0].max()
    assert auroc(y, score) == roc_auc_score(y, score)
    assert auprc(y, score) == average_precision_score(y, score)
    tn, fp, fn, tp = confusion_matrix(y, score >= 0.5).ravel()
    op = operating_point(y, score, 0.5)
    assert op["sensitivity"] == tp / (tp + fn) and op["specificity"] == tn / (tn + fp)
    assert op["accuracy"] == (tp + tn) / len(y)
    with pytest.raises(EvaluationError, match="needs both classes"):
        auroc([1, 1], [0.2, 0.3])
    with pytest.raises(EvaluationError, match=r"expected binary labels 0/1, received 2 at index 1"):
        auroc([0, 2], [0.2, 0.3])
    with pytest.raises(EvaluationError, match="at least one positive"):
        sensitivity([0, 0], [0.2, 0.3])


def test_evaluate_regression_metrics_match_sklearn() -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    x, y = load_diabetes(return_X_y=True)
    pred = y.mean() + 300 * x[:, 2]
    assert mae(y, pred) == pytest.approx(mean_absolute_error(y, pred), rel=1e-14)
    assert rmse(y, pred) == pytest.approx(np.sqrt(mean_squared_error(y, pred)), rel=1e-14)
    assert r2(y, pred) == pytest.approx(r2_score(y, pred), rel=1e-14)
    res = regression_metrics(y, pred, n_boot=200)
    assert res["r2"].low < res["r2"].estimate < res["r2"].high


def test_evaluate_binary_metrics_ci_covers_and_is_stratified() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.2
    s = y * 1.0 + rng.normal(size=400)
    res = binary_metrics(y, s, threshold=0.5, n_boot=300)
    for r in res.values():
        assert r.low <= r.estimate <= r.high and r.n_failed == 0
    assert 0.7 < res["auroc"].estimate < 0.85


def test_evaluate_bootstrap_percentile_ci_covers_the_mean_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(1)
    hits = 0
    for rep in range(100):
        x = rng.exponential(size=80)
        r = bootstrap_ci(np.mean, x, n_boot=300, seed=rep)
        hits += r.low <= 1.0 <= r.high
    assert 85 <= hits <= 100  # ~95 % nominal, percentile intervals run a little short


def test_evaluate_bootstrap_on_survival_paired_unpaired_and_vector_metrics() -> None:
    from sksurv.datasets import load_veterans_lung_cancer

    x, y = load_veterans_lung_cancer()
    t, e = y["Survival_in_days"].astype(float), y["Status"].astype(bool)
    risk = x["Karnofsky_score"].to_numpy(float) * -1.0
    res = bootstrap_ci(concordance_index, t, e, risk, n_boot=300, stratify=e)
    assert res.estimate == concordance_index(t, e, risk)
    assert 0.5 < res.low < res.estimate < res.high
    # a metric bound to training data with partial, and a difference between two models
    uno = functools.partial(concordance_index_ipcw, train_time=t, train_event=e, tau=400.0)
    assert bootstrap_ci(uno, t, e, risk, n_boot=100).low > 0.5
    diff = bootstrap_ci(
        lambda a, b, r1, r2: concordance_index(a, b, r1) - concordance_index(a, b, r2),
        t,
        e,
        risk,
        -risk,
        n_boot=200,
    )
    assert diff.low > 0
    # unpaired: arrays of different lengths; vector-valued metric
    vec = bootstrap_ci(
        lambda a, b: np.array([a.mean(), b.mean()]), t[:50], t, n_boot=100, paired=False
    )
    assert vec.estimate.shape == (2,) and (vec.low <= vec.high).all()
    assert set(res.as_dict()) == {"estimate", "low", "high", "alpha", "n_boot", "n_failed"}


def test_evaluate_bootstrap_counts_undefined_replicates_and_validates() -> None:
    t = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    e = np.array([True, False, False, False, False, False])
    r = np.arange(6.0)
    res = bootstrap_ci(concordance_index, t, e, r, n_boot=200, max_failed_fraction=0.9)
    assert res.n_failed > 0 and res.replicates.shape[0] == 200 - res.n_failed
    with pytest.raises(EvaluationError, match="undefined on .* of 200 replicates"):
        bootstrap_ci(concordance_index, t, e, r, n_boot=200)
    with pytest.raises(EvaluationError, match="paired=False"):
        bootstrap_ci(lambda a, b: 0.0, t, t[:3])
    with pytest.raises(EvaluationError, match="undefined on the data"):
        bootstrap_ci(concordance_index, t, ~np.ones(6, bool), r)


def test_evaluate_bootstrap_vector_metric_with_undefined_entries() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=40)

    def metric(a: np.ndarray) -> np.ndarray:  # second entry undefined when a[0] < 0
        return np.array([a.mean(), a.max() if a[0] >= 0 else np.nan])

    res = bootstrap_ci(metric, x, n_boot=200)
    assert np.isfinite(res.low).all() and (res.low <= res.high).all()

    def defined_on_the_original_only(a: np.ndarray) -> float:
        if a is not x:  # resamples are copies
            raise ValueError("undefined")
        return 0.0

    always = bootstrap_ci(defined_on_the_original_only, x, n_boot=20, max_failed_fraction=1.0)
    assert always.n_failed == 20 and np.isnan(always.low) and always.replicates.shape[0] == 0


def test_rank_auroc_equals_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    from hidim.evaluate.classification import rank_auroc

    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.3
    s = np.round(rng.normal(size=300) + y, 1)  # many ties
    assert rank_auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert np.isnan(rank_auroc(np.zeros(5, bool), np.arange(5.0)))
