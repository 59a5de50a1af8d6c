"""Collecting a run: missing or broken artefacts give "not run"/"error" sections, never a crash;
derived curves agree with lifelines and hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import make_deid_audit, make_run, make_store

from hidim.errors import ReportError
from hidim.report import assemble_report, build_report
from hidim.report.collect import collect
from hidim.report.collect_perf import metric_rows
from hidim.report.curves import (
    binary_calibration,
    km_by_risk_group,
    risk_coverage,
    survival_calibration,
)
from hidim.report.readers import as_estimate


@pytest.mark.parametrize(
    "keep", [(), ("metrics",), ("predictions",), ("explain", "audit"), ("uncertainty", "audit")]
)
def test_missing_artefacts_give_not_run_sections(tmp_path: Path, keep: tuple[str, ...]) -> None:
    run = make_run(tmp_path, sections=keep)
    s = collect(run)
    assert s.data.status == "ok" and s.model_card.status == "ok"
    expect = {
        "performance": "metrics" in keep or "predictions" in keep,
        "uncertainty": "uncertainty" in keep or "predictions" in keep,
        "explanations": "explain" in keep,
        "bias": "audit" in keep,
    }
    for name, present in expect.items():
        section = getattr(s, name)
        assert (section.status != "not_run") is present, (name, section)
        if not present:
            assert "hidim" in section.note  # says which command produces it
    # ... and the report is still built, with every section shown.
    html = build_report(run).html_path.read_text()
    assert html.count("Not run.") == sum(not v for v in expect.values())


def test_empty_run_directory(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    s = collect(tmp_path / "run")
    assert {getattr(s, n).status for n in s._fields} == {"not_run"}
    assert "--store" in s.data.note


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="expected a run directory.*hidim train"):
        build_report(tmp_path / "nope")


@pytest.mark.parametrize(
    ("relpath", "section"),
    [
        ("explain/summary.json", "explanations"),
        ("audit/summary.json", "bias"),
        ("metrics.json", "performance"),
        ("predictions.parquet", "performance"),
        ("uncertainty/summary.json", "uncertainty"),
    ],
)
def test_corrupt_artefact_gives_error_section(tmp_path: Path, relpath: str, section: str) -> None:
    run = make_run(tmp_path)
    (run / relpath).write_bytes(b"\x00{not valid")
    s = collect(run)
    sec = getattr(s, section)
    assert sec.status == "error"
    assert "Could not read" in sec.note
    others = [
        n
        for n in s._fields
        if n != section and not (relpath == "predictions.parquet" and n == "uncertainty")
    ]
    assert all(getattr(s, n).status == "ok" for n in others)
    build_report(run)  # still renders


def test_data_section_counts(tmp_path: Path) -> None:
    store = make_store(tmp_path, n_patients=30, failed_files=3)
    run = make_run(tmp_path, store=store)
    d = collect(run, deid_audit=make_deid_audit(tmp_path, quarantined=4)).data
    assert d.cohort is not None and d.labels is not None and d.deid is not None
    assert (d.cohort.n_patients, d.cohort.n_studies, d.cohort.n_series) == (30, 30, 60)
    assert {r.label: r.count for r in d.cohort.splits} == {"train": 18, "val": 6, "test": 6}
    assert [r.label for r in d.cohort.splits] == ["train", "val", "test"]
    assert (d.cohort.fps_original.min, d.cohort.fps_original.max) == (30.0, 80.0)
    # curate: 3 failed + 1 skipped; deid: 1 failed (quarantined files are counted apart)
    assert d.n_ledger_failures == 3 + 1 and d.n_ledger_not_used == 3 + 1 + 1
    assert {(f.stage, f.status) for f in d.ledger_failures} == {
        ("curate", "failed"),
        ("curate", "skipped"),
        ("de-identify", "failed"),
    }
    assert (d.deid.n_quarantined, d.deid.n_written, d.deid.n_failed) == (4, 20, 1)
    actions = {r.label: r.count for r in d.deid.actions}
    assert actions["attributes removed (X)"] == 240 and actions["UIDs remapped (U)"] == 80
    assert "overlays removed" not in actions  # zero counts are not listed
    assert d.deid.files_pixels_masked == 20
    assert {r.label: r.count for r in d.deid.pixel_decisions} == {"sector": 20}
    assert [r.label for r in d.labels.demographics["age_band"]][:2] == ["<50", "50-64"]
    labels = pd.read_parquet(store / "labels.parquet")
    assert d.labels.n_events == int(labels["event"].sum())


def test_store_found_from_config_and_deid_audit_beside_store(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    make_deid_audit(store)  # the pipeline may keep the audit in the store
    run = make_run(tmp_path, store=store)
    s = collect(run)
    assert s.data.deid is not None and s.data.deid.n_quarantined == 2


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (0.7, (0.7, None, None)),
        ({"value": 0.7, "lower": 0.6, "upper": 0.8}, (0.7, 0.6, 0.8)),
        ({"estimate": 0.7, "ci": [0.6, 0.8]}, (0.7, 0.6, 0.8)),
        ({"point": 0.7, "ci_low": 0.6, "ci_high": 0.8}, (0.7, 0.6, 0.8)),
        ({"value": float("nan")}, (None, None, None)),
        ("text", (None, None, None)),
    ],
)
def test_estimate_shapes(obj: object, expected: tuple[float | None, ...]) -> None:
    e = as_estimate(obj)
    assert (e.value, e.lower, e.upper) == expected


def test_metric_rows_from_nested_metrics() -> None:
    rows = metric_rows(
        {
            "test": {"c_index": {"value": 0.7, "ci": [0.6, 0.8], "n": 50}, "ibs": 0.2, "epoch": 3},
            "val": {"auroc": 0.81},
            "n_test": 50,
        }
    )
    got = {(r.name, r.split): (r.estimate.value, r.chance, r.higher_is_better, r.n) for r in rows}
    assert got == {
        ("C-index (Harrell)", "test"): (0.7, 0.5, True, 50),
        ("Integrated Brier score", "test"): (0.2, None, False, None),
        ("AUROC", "val"): (0.81, 0.5, True, None),
    }
    assert rows[0].split == "test"


def test_km_groups_match_lifelines() -> None:
    from lifelines import KaplanMeierFitter
    from lifelines.datasets import load_waltons

    df = load_waltons()
    risk = (df["group"] == "miR-137").to_numpy(dtype=float) + np.linspace(0, 0.1, len(df))
    curves, p = km_by_risk_group(
        df["T"].to_numpy(), df["E"].to_numpy(bool), risk, cutpoints=np.array([0.5])
    )
    assert [c.group for c in curves] == ["low risk", "high risk"]
    assert sum(c.n for c in curves) == len(df)
    high = df[df["group"] == "miR-137"]
    km = KaplanMeierFitter().fit(high["T"], high["E"])
    np.testing.assert_allclose(curves[1].survival, km.survival_function_.iloc[1:, 0].to_numpy())
    assert p is not None and p < 1e-6  # the two Waltons groups differ strongly


def test_binary_calibration_ece_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 0, 1, 1, 1])
    p = np.array([0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9])
    cal = binary_calibration(y, p, n_bins=2)
    # bin 1: predicted 0.1, observed 0.5; bin 2: predicted 0.9, observed 0.75
    assert [(b.predicted, b.observed, b.count) for b in cal.bins] == [(0.1, 0.5, 4), (0.9, 0.75, 4)]
    assert cal.ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.15)


def test_survival_calibration_is_small_for_the_true_model() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    rate = np.exp(rng.normal(0, 1, n))
    t_event = rng.exponential(1 / rate)
    t_cens = rng.exponential(2.0, n)
    time, event = np.minimum(t_event, t_cens), t_event <= t_cens
    horizon = 0.5
    good = survival_calibration(time, event, 1 - np.exp(-rate * horizon), horizon)
    bad = survival_calibration(time, event, 1 - np.exp(-0.3 * rate * horizon), horizon)
    assert good.ece < 0.03 < 0.1 < bad.ece


def test_risk_coverage_falls_when_uncertainty_tracks_error() -> None:
    rng = np.random.default_rng(1)
    err = rng.random(500) < 0.3
    informative = err + rng.random(500) * 0.5  # errors have higher uncertainty
    pts, aurc = risk_coverage(informative, loss=err.astype(float))
    assert pts[-1].coverage == 1.0 and pts[-1].risk == pytest.approx(err.mean())
    assert pts[0].risk < 0.05
    _, aurc_random = risk_coverage(rng.random(500), loss=err.astype(float))
    assert aurc < aurc_random
    with pytest.raises(ReportError, match="exactly one"):
        risk_coverage(informative)


def test_report_json_round_trips_through_the_model(tmp_path: Path) -> None:
    from hidim.report.sections import Report

    report = assemble_report(make_run(tmp_path))
    again = Report.model_validate(json.loads(json.dumps(report.model_dump(mode="json"))))
    assert again == report


def test_bias_section_says_which_splits_were_audited(tmp_path: Path) -> None:
    run = make_run(tmp_path, sections=("predictions", "audit"))
    bias = collect(run).bias
    # No split in the audit settings: every split of the predictions it read.
    assert {c.label: c.count for c in bias.audited_splits} == {"train": 72, "val": 24, "test": 24}
    assert bias.overall["C-index (Harrell)"].value == 0.74
    path = run / "audit" / "summary.json"
    doc = json.loads(path.read_text())
    doc["settings"] |= {"split": "test", "n": 24}
    path.write_text(json.dumps(doc))
    assert [(c.label, c.count) for c in collect(run).bias.audited_splits] == [("test", 24)]
