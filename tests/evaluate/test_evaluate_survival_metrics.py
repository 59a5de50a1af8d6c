"""Time-dependent AUC, Brier, IBS, Kaplan-Meier, calibration against sksurv / lifelines."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from hidim.errors import EvaluationError, SurvivalDataError
from hidim.evaluate import (
    brier_score,
    cumulative_dynamic_auc,
    d_calibration,
    integrated_brier_score,
    kaplan_meier,
    one_calibration,
    plot_risk_group_curves,
    risk_group_curves,
    survival_at,
)


@pytest.fixture(scope="module")
def gbsg2_cox():
    """A Cox model fitted by scikit-survival on 2/3 of GBSG2, predictions on the rest."""
    from sksurv.datasets import load_gbsg2
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.preprocessing import OneHotEncoder

    x, y = load_gbsg2()
    x["tgrade"] = x["tgrade"].map(len).astype(int)
    xt = OneHotEncoder().fit_transform(x)
    train = np.arange(len(y)) % 3 != 0
    est = CoxPHSurvivalAnalysis(ties="efron").fit(xt[train], y[train])
    t, e = y["time"].astype(float), y["cens"].astype(bool)
    times = np.quantile(t[~train][e[~train]], [0.1, 0.25, 0.5, 0.75, 0.9])
    fns = est.predict_survival_function(xt[~train])
    surv = np.stack([fn(times) for fn in fns])
    return {
        "y_train": y[train],
        "y_test": y[~train],
        "train": (t[train], e[train]),
        "test": (t[~train], e[~train]),
        "risk": est.predict(xt[~train]),
        "times": times,
        "surv": surv,
    }


def test_evaluate_cumulative_dynamic_auc_equals_sksurv(gbsg2_cox) -> None:
    from sksurv.metrics import cumulative_dynamic_auc as sk_auc

    d = gbsg2_cox
    tr_t, tr_e = d["train"]
    for risk in (d["risk"], np.round(d["risk"], 1), 1.0 - d["surv"]):
        expected = sk_auc(d["y_train"], d["y_test"], risk, d["times"])
        auc, mean = cumulative_dynamic_auc(
            *d["test"], risk, d["times"], train_time=tr_t, train_event=tr_e
        )
        np.testing.assert_allclose(auc, expected[0], rtol=0, atol=1e-12)
        assert abs(mean - expected[1]) < 1e-12


def test_evaluate_brier_and_integrated_brier_equal_sksurv(gbsg2_cox) -> None:
    from sksurv.metrics import brier_score as sk_bs
    from sksurv.metrics import integrated_brier_score as sk_ibs

    d = gbsg2_cox
    tr_t, tr_e = d["train"]
    bs = brier_score(*d["test"], d["surv"], d["times"], train_time=tr_t, train_event=tr_e)
    np.testing.assert_allclose(
        bs, sk_bs(d["y_train"], d["y_test"], d["surv"], d["times"])[1], atol=1e-12
    )
    ibs = integrated_brier_score(
        *d["test"], d["surv"], d["times"], train_time=tr_t, train_event=tr_e
    )
    assert abs(ibs - sk_ibs(d["y_train"], d["y_test"], d["surv"], d["times"])) < 1e-12
    one = brier_score(*d["test"], d["surv"][:, 2], d["times"][2], train_time=tr_t, train_event=tr_e)
    assert one[0] == pytest.approx(bs[2], abs=1e-15)


def test_evaluate_ipcw_metrics_reject_bad_times(gbsg2_cox) -> None:
    d = gbsg2_cox
    tr_t, tr_e = d["train"]
    with pytest.raises(EvaluationError, match="increase strictly"):
        brier_score(*d["test"], d["surv"], d["times"][::-1], train_time=tr_t, train_event=tr_e)
    with pytest.raises(EvaluationError, match="within the test follow-up"):
        cumulative_dynamic_auc(*d["test"], d["risk"], [1e6], train_time=tr_t, train_event=tr_e)
    with pytest.raises(EvaluationError, match="expected 5 columns"):
        brier_score(*d["test"], d["surv"][:, :3], d["times"], train_time=tr_t, train_event=tr_e)
    with pytest.raises(EvaluationError, match="probabilities in"):
        brier_score(*d["test"], d["surv"] + 1, d["times"], train_time=tr_t, train_event=tr_e)
    with pytest.raises(EvaluationError, match="at least two time points"):
        integrated_brier_score(
            *d["test"], d["surv"][:, :1], d["times"][:1], train_time=tr_t, train_event=tr_e
        )


@pytest.mark.parametrize("name", ["load_veterans_lung_cancer", "load_whas500"])
def test_evaluate_kaplan_meier_equals_lifelines(name) -> None:
    import sksurv.datasets as ds
    from lifelines import KaplanMeierFitter

    _, y = getattr(ds, name)()
    ev, tm = y.dtype.names
    t, e = y[tm].astype(float), y[ev].astype(bool)
    km = kaplan_meier(t, e)
    kmf = KaplanMeierFitter().fit(t, e)
    np.testing.assert_allclose(
        km.survival, kmf.survival_function_.loc[km.time].to_numpy()[:, 0], atol=1e-12
    )
    band = kmf.confidence_interval_.loc[km.time].to_numpy()
    np.testing.assert_allclose(km.lower, band[:, 0], atol=1e-12)
    np.testing.assert_allclose(km.upper, band[:, 1], atol=1e-12)
    probe = np.array([0.5, km.time[3], km.time[3] + 1e-3])
    np.testing.assert_allclose(
        km(probe), kmf.survival_function_at_times(probe).to_numpy(), atol=1e-12
    )


def test_evaluate_risk_groups_separate_on_real_data_and_plot(gbsg2_cox) -> None:
    d = gbsg2_cox
    groups = risk_group_curves(*d["test"], d["risk"], n_groups=3)
    assert groups.labels == ("low", "medium", "high")
    assert groups.logrank_p_value < 0.01
    # higher predicted risk -> lower Kaplan-Meier survival at the median test time
    mid = np.median(d["test"][0])
    s = [float(c(np.array([mid]))[0]) for c in groups.curves]
    assert s[0] > s[1] > s[2]
    fig = plot_risk_group_curves(groups)
    assert len(fig.axes[0].get_lines()) == 3
    with pytest.raises(EvaluationError, match="one group"):
        risk_group_curves(*d["test"], d["risk"], cutpoints=[1e9])


def _weibull_cohort(n: int, seed: int):
    rng = np.random.default_rng(seed)
    lam = np.exp(rng.normal(size=n))  # true hazard multiplier
    k = 1.5
    t = (rng.exponential(size=n) / lam) ** (1 / k)
    c = rng.uniform(0, 3, n)
    return np.minimum(t, c), t <= c, lam, k


def test_evaluate_d_calibration_accepts_true_model_and_rejects_a_wrong_one() -> None:
    t, e, lam, k = _weibull_cohort(3000, 0)
    true_s = np.exp(-lam * t**k)
    good = d_calibration(e, true_s)
    assert good.p_value > 0.01
    assert good.counts.sum() == pytest.approx(3000)
    bad = d_calibration(e, np.exp(-3 * lam * t**k))  # hazards overestimated 3-fold
    assert bad.p_value < 1e-6
    with pytest.raises(EvaluationError, match=r"\[0, 1\]"):
        d_calibration(e, true_s + 1)


def test_evaluate_one_calibration_at_horizon() -> None:
    t, e, lam, k = _weibull_cohort(3000, 1)
    h = 1.0
    good = one_calibration(t, e, np.exp(-lam * h**k), h)
    bad = one_calibration(t, e, np.exp(-0.3 * lam * h**k), h)
    assert good.p_value > 0.01 > bad.p_value
    np.testing.assert_allclose(good.observed, good.expected, atol=0.08)


def test_evaluate_survival_at_reads_each_sample_on_the_step_curve() -> None:
    grid = np.array([1.0, 2.0, 3.0])
    surv = np.array([[0.9, 0.8, 0.7], [0.5, 0.4, 0.3]])
    np.testing.assert_allclose(survival_at(surv, grid, [0.5, 2.5]), [1.0, 0.4])


def test_evaluate_kaplan_meier_rejects_bad_times() -> None:
    with pytest.raises(SurvivalDataError, match=r"time must be finite, received inf at index 1"):
        kaplan_meier([1.0, np.inf], [True, False])
