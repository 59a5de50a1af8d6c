"""The synthetic cohort: demographics, ejection fraction, heart rate and a survival outcome.

Sampling is vectorised and column-wise: each attribute has its own random stream derived
from ``(seed, attribute)``, so patient *i* is the same person in a 50- and a 5,000-patient
phantom (prefix stability), and the cohort's metadata for millions of patients fits in a few
arrays. Pixels are never held here; :meth:`Cohort.records` hands out per-patient records to
the renderers in chunks.

Outcome model (all parameters in :class:`~hidim.phantom.config.CohortConfig`):

- EF: a two-component mixture (preserved / reduced), the reduced share set by the site's
  case mix and sex; clipped to ``[ef_min, ef_max]``.
- True linear risk ``eta = b_ef (EF - 55)/10 + b_age (age - 60)/10 + b_male * male``.
- Event time ``T = s * (-log U * exp(-eta)) ** (1/k)`` (Weibull PH), censored by an
  exponential loss-to-follow-up time and administratively at the data lock.
- Binary label: EF < 40 %.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from hidim.phantom.config import PhantomConfig
from hidim.phantom.identity import accession_number, patient_id, person_name

__all__ = ["PatientRecord", "Cohort", "sample_cohort", "weibull_survival"]

_STREAMS = {
    "site": 1,
    "sex": 2,
    "age": 3,
    "ethnicity": 4,
    "income": 5,
    "ef_class": 6,
    "ef": 7,
    "hr": 8,
    "event": 9,
    "censor": 10,
    "study_day": 11,
    "study_time": 12,
    "birth_offset": 13,
    "bias_label": 14,
    "bias_event": 15,
    "bias_ef": 16,
    "shortcut": 17,
}


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 0, _STREAMS[stream]]))


@dataclass(frozen=True)
class PatientRecord:
    """One patient's metadata: what the hospital recorded and what is true.

    Times are in days, EF in percent, heart rate in beats per minute.
    """

    index: int
    patient_id: str
    family_name: str
    given_name: str
    sex: str
    age: int
    birth_date: date
    ethnicity: str
    income: str
    site: str
    study_date: date
    study_time: str
    accession: str
    hr_bpm: float
    ef_true: float
    ef_recorded: float
    label_true: int
    label_recorded: int
    true_risk: float
    event_time_true: float
    time: float
    event_true: int
    event_recorded: int
    label_missed: bool
    event_missed: bool
    shortcut: bool

    @property
    def dicom_name(self) -> str:
        """PatientName in DICOM PN form (``FAMILY^GIVEN``)."""
        return f"{self.family_name}^{self.given_name}"


def weibull_survival(
    t_days: np.ndarray, eta: np.ndarray, shape: float, scale_days: float
) -> np.ndarray:
    """True survival probability ``S(t | eta) = exp(-(t / scale)^shape * exp(eta))``.

    Args:
        t_days: Times, days (broadcasts against ``eta``).
        eta: True linear risk scores.
        shape: Weibull shape ``k``.
        scale_days: Weibull scale ``s`` (days) of a patient with ``eta = 0``.
    """
    t = np.asarray(t_days, dtype=float)
    return np.exp(-((t / scale_days) ** shape) * np.exp(np.asarray(eta, dtype=float)))


@dataclass(frozen=True)
class Cohort:
    """Column arrays for the whole cohort (one entry per patient, index order)."""

    config: PhantomConfig
    site: np.ndarray  # int  [N] index into config.sites
    male: np.ndarray  # bool [N]
    age: np.ndarray  # int  [N] years at the study
    ethnicity: np.ndarray  # int [N] index into cohort.ethnicity_groups
    income: np.ndarray  # int [N] index into cohort.income_brackets
    ef_true: np.ndarray  # float [N] percent
    ef_recorded: np.ndarray  # float [N] percent
    hr_bpm: np.ndarray  # float [N]
    true_risk: np.ndarray  # float [N] linear predictor eta
    event_time_true: np.ndarray  # float [N] days (uncensored)
    time: np.ndarray  # float [N] days observed
    event_true: np.ndarray  # bool [N]
    event_recorded: np.ndarray  # bool [N]
    label_missed: np.ndarray  # bool [N]
    event_missed: np.ndarray  # bool [N]
    study_day: np.ndarray  # int [N] days after enrolment_start
    study_seconds: np.ndarray  # int [N] seconds after midnight
    birth_offset: np.ndarray  # int [N] days before the last birthday
    shortcut: np.ndarray  # bool [N]

    def __len__(self) -> int:
        return int(self.site.shape[0])

    @property
    def label_true(self) -> np.ndarray:
        """True binary label EF < 40 % (bool [N])."""
        return self.ef_true < 40.0

    @property
    def label_recorded(self) -> np.ndarray:
        """Recorded label (after planted under-diagnosis), bool [N]."""
        return self.ef_recorded < 40.0

    def record(self, i: int) -> PatientRecord:
        """The :class:`PatientRecord` of patient ``i``."""
        cfg, co = self.config, self.config.cohort
        seed = cfg.seed
        sex = "M" if self.male[i] else "F"
        family, given = person_name(seed, "patient", i, sex)
        study = co.enrolment_start + timedelta(days=int(self.study_day[i]))
        age = int(self.age[i])
        birthday = _years_before(study, age) - timedelta(days=int(self.birth_offset[i]))
        secs = int(self.study_seconds[i])
        return PatientRecord(
            index=i,
            patient_id=patient_id(seed, i),
            family_name=family,
            given_name=given,
            sex=sex,
            age=age,
            birth_date=birthday,
            ethnicity=co.ethnicity_groups[int(self.ethnicity[i])],
            income=co.income_brackets[int(self.income[i])],
            site=cfg.sites[int(self.site[i])].name,
            study_date=study,
            study_time=f"{secs // 3600:02d}{secs // 60 % 60:02d}{secs % 60:02d}",
            accession=accession_number(seed, i),
            hr_bpm=float(self.hr_bpm[i]),
            ef_true=float(self.ef_true[i]),
            ef_recorded=float(self.ef_recorded[i]),
            label_true=int(self.label_true[i]),
            label_recorded=int(self.label_recorded[i]),
            true_risk=float(self.true_risk[i]),
            event_time_true=float(self.event_time_true[i]),
            time=float(self.time[i]),
            event_true=int(self.event_true[i]),
            event_recorded=int(self.event_recorded[i]),
            label_missed=bool(self.label_missed[i]),
            event_missed=bool(self.event_missed[i]),
            shortcut=bool(self.shortcut[i]),
        )

    def records(self, start: int = 0, stop: int | None = None) -> Iterator[PatientRecord]:
        """Patient records ``start..stop-1`` (lazily; nothing per patient is kept)."""
        for i in range(start, len(self) if stop is None else min(stop, len(self))):
            yield self.record(i)


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def sample_cohort(config: PhantomConfig) -> Cohort:
    """Sample the cohort's metadata and outcomes (vectorised, prefix-stable per patient).

    Args:
        config: The phantom configuration.

    Returns:
        The cohort as column arrays.
    """
    n, seed, co, eff = config.patients, config.seed, config.cohort, config.effects
    weights = np.array([s.weight for s in config.sites], dtype=float)
    site = _rng(seed, "site").choice(len(config.sites), size=n, p=weights / weights.sum())
    male = _rng(seed, "sex").random(n) < 0.5
    age = np.clip(
        np.rint(_rng(seed, "age").normal(co.age_mean, co.age_sd, n)), co.age_min, co.age_max
    ).astype(int)
    ew = np.asarray(co.ethnicity_weights, dtype=float)
    ethnicity = _rng(seed, "ethnicity").choice(len(ew), size=n, p=ew / ew.sum())
    iw = np.asarray(co.income_weights, dtype=float)
    income = _rng(seed, "income").choice(len(iw), size=n, p=iw / iw.sum())

    low_share = np.array([s.low_ef_fraction for s in config.sites])[site]
    low_share = np.clip(low_share * np.where(male, 1.2, 0.8), 0.0, 0.95)
    reduced = _rng(seed, "ef_class").random(n) < low_share
    z = _rng(seed, "ef").standard_normal(n)
    ef = np.where(
        reduced, co.ef_reduced_mean + co.ef_reduced_sd * z, co.ef_normal_mean + co.ef_normal_sd * z
    )
    ef = np.round(np.clip(ef, co.ef_min, co.ef_max), 1)
    hr: np.ndarray = (
        co.hr_mean_bpm
        + co.hr_per_10_ef_below_55 * np.maximum(0.0, 55.0 - ef) / 10.0
        + co.hr_sd_bpm * _rng(seed, "hr").standard_normal(n)
    )
    hr = np.round(np.clip(hr, 48.0, 120.0), 1)

    eta = (
        co.beta_ef_per_10 * (ef - 55.0) / 10.0
        + co.beta_age_per_10 * (age - 60.0) / 10.0
        + co.beta_male * male
    )
    u = _rng(seed, "event").random(n)
    t_event = co.weibull_scale_days * (-np.log1p(-u) * np.exp(-eta)) ** (1.0 / co.weibull_shape)
    span = (co.enrolment_end - co.enrolment_start).days
    study_day = _rng(seed, "study_day").integers(0, span + 1, n)
    admin = (co.data_lock - co.enrolment_start).days - study_day
    rate = co.random_censoring_per_year / 365.25
    loss = _rng(seed, "censor").exponential(1.0 / rate, n) if rate > 0 else np.full(n, np.inf)
    censor = np.minimum(loss, admin)
    event_true = t_event <= censor
    time = np.maximum(np.round(np.minimum(t_event, censor), 1), 0.1)

    label_true = ef < 40.0
    in_group = _subgroup_members(config, male, ethnicity, income)
    frac = eff.subgroup_miss_fraction if eff.subgroup_bias else 0.0
    label_missed = in_group & label_true & (_rng(seed, "bias_label").random(n) < frac)
    event_missed = in_group & event_true & (_rng(seed, "bias_event").random(n) < frac)
    # A missed diagnosis is recorded as a (wrongly) preserved EF, consistent with the label.
    ef_missed = np.round(40.0 + 12.0 * _rng(seed, "bias_ef").random(n), 1)
    ef_recorded = np.where(label_missed, ef_missed, ef)
    event_recorded = event_true & ~event_missed

    if eff.shortcut:
        at_site = site == [s.name for s in config.sites].index(config.shortcut_site)
        p = np.where(label_true, eff.shortcut_p_positive, eff.shortcut_p_negative)
        shortcut = at_site & (_rng(seed, "shortcut").random(n) < p)
    else:
        shortcut = np.zeros(n, dtype=bool)

    return Cohort(
        config=config,
        site=site,
        male=male,
        age=age,
        ethnicity=ethnicity,
        income=income,
        ef_true=ef,
        ef_recorded=ef_recorded,
        hr_bpm=hr,
        true_risk=eta,
        event_time_true=t_event,
        time=time,
        event_true=event_true,
        event_recorded=event_recorded,
        label_missed=label_missed,
        event_missed=event_missed,
        study_day=study_day,
        study_seconds=_rng(seed, "study_time").integers(8 * 3600, 17 * 3600, n),
        birth_offset=_rng(seed, "birth_offset").integers(0, 365, n),
        shortcut=shortcut,
    )


def _subgroup_members(
    config: PhantomConfig, male: np.ndarray, ethnicity: np.ndarray, income: np.ndarray
) -> np.ndarray:
    eff, co = config.effects, config.cohort
    if eff.subgroup_attribute == "sex":
        return male if eff.subgroup_group == "M" else ~male
    if eff.subgroup_attribute == "income":
        groups, values = co.income_brackets, income
    else:
        groups, values = co.ethnicity_groups, ethnicity
    if eff.subgroup_group not in groups:
        return np.zeros(male.shape, dtype=bool)
    return values == groups.index(eff.subgroup_group)
