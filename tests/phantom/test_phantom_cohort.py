"""The cohort: prefix stability, outcome model (lifelines as oracle), planted label effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter

from hidim.phantom import PhantomConfig, sample_cohort, weibull_survival


@pytest.fixture(scope="module")
def big():
    cfg = PhantomConfig(
        patients=4000,
        seed=11,
        effects={"subgroup_bias": True, "shortcut": True, "subgroup_miss_fraction": 0.5},
    )
    return cfg, sample_cohort(cfg)


def test_patients_are_prefix_stable() -> None:
    small = sample_cohort(PhantomConfig(patients=10, seed=4))
    large = sample_cohort(PhantomConfig(patients=30, seed=4))
    assert [large.record(i) for i in range(10)] == list(small.records())


def test_records_are_consistent(big) -> None:
    cfg, co = big
    for rec in co.records(0, 200):
        assert rec.label_true == int(rec.ef_true < 40)
        assert rec.label_recorded == int(rec.ef_recorded < 40)
        assert rec.time > 0 and rec.time <= rec.event_time_true + 0.05
        assert rec.event_true == int(rec.event_time_true <= rec.time + 0.05)
        followup = (cfg.cohort.data_lock - rec.study_date).days
        assert rec.time <= followup + 0.05  # administrative censoring at the data lock
        age_at_study = (rec.study_date - rec.birth_date).days / 365.25
        assert rec.age <= age_at_study < rec.age + 1.01
        assert cfg.cohort.ef_min <= rec.ef_true <= cfg.cohort.ef_max
        assert len(rec.patient_id) == 8 and rec.patient_id.isdigit()
    ids = [r.patient_id for r in co.records()]
    assert len(set(ids)) == len(ids)


def test_cox_recovers_the_generating_coefficients(big) -> None:
    cfg, co = big
    df = pd.DataFrame(
        {
            "time": co.time,
            "event": co.event_true.astype(int),
            "ef10": co.ef_true / 10.0,
            "age10": co.age / 10.0,
            "male": co.male.astype(int),
        }
    )
    fit = CoxPHFitter().fit(df, "time", "event")
    truth = {
        "ef10": cfg.cohort.beta_ef_per_10,
        "age10": cfg.cohort.beta_age_per_10,
        "male": cfg.cohort.beta_male,
    }
    for name, beta in truth.items():
        coef, se = fit.params_[name], fit.standard_errors_[name]
        assert abs(coef - beta) < 4 * se, (name, coef, beta, se)
    assert fit.params_["ef10"] < 0 < fit.params_["age10"]  # lower EF and older age: higher risk


def test_kaplan_meier_matches_true_marginal_survival(big) -> None:
    cfg, co = big
    km = KaplanMeierFitter().fit(co.time, co.event_true)
    for t in (365.0, 1000.0, 1500.0):
        truth = weibull_survival(
            t, co.true_risk, cfg.cohort.weibull_shape, cfg.cohort.weibull_scale_days
        ).mean()
        assert abs(float(km.survival_function_at_times(t).iloc[0]) - truth) < 0.03


def test_censoring_is_both_random_and_administrative(big) -> None:
    _, co = big
    censored = ~co.event_true
    assert 0.3 < censored.mean() < 0.8
    assert (co.time[censored] < co.event_time_true[censored]).all()


def test_subgroup_bias_only_in_the_named_group(big) -> None:
    cfg, co = big
    group = co.ethnicity == cfg.cohort.ethnicity_groups.index("C")
    pos = co.label_true
    missed = pos & ~co.label_recorded
    assert not missed[~group].any() and not (co.event_true & ~co.event_recorded)[~group].any()
    rate = missed[group].sum() / pos[group].sum()
    n = pos[group].sum()
    assert abs(rate - 0.5) < 3 * np.sqrt(0.25 / n)
    ev_rate = (co.event_true & ~co.event_recorded)[group].sum() / co.event_true[group].sum()
    assert abs(ev_rate - 0.5) < 3 * np.sqrt(0.25 / co.event_true[group].sum())
    assert (co.ef_recorded[missed] >= 40).all()


def test_shortcut_only_at_its_site_and_correlated_with_the_label(big) -> None:
    cfg, co = big
    site = [s.name for s in cfg.sites].index(cfg.shortcut_site)
    assert not co.shortcut[co.site != site].any()
    here = co.site == site
    p_pos = co.shortcut[here & co.label_true].mean()
    p_neg = co.shortcut[here & ~co.label_true].mean()
    assert p_pos > 0.8 and p_neg < 0.1


def test_no_effects_by_default() -> None:
    co = sample_cohort(PhantomConfig(patients=500, seed=2))
    assert not co.shortcut.any()
    assert (co.label_true == co.label_recorded).all() and (co.event_true == co.event_recorded).all()
