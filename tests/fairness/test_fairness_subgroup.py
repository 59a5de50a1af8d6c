"""Subgroup audit: Fairlearn as oracle, planted gaps detected, small groups warned about."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import roc_auc_score
from sksurv.metrics import concordance_index_censored

from hidim.errors import EvaluationError
from hidim.evaluate.subgroup import add_age_band, parse_by, subgroup_audit
from hidim.evaluate.subgroup_run import audit_run


def _binary(n: int = 600, gap: float = 0.3, seed: int = 0) -> pd.DataFrame:
    """Group C positives are under-scored (planted under-diagnosis)."""
    rng = np.random.default_rng(seed)
    eth = rng.choice(list("ABCD"), n, p=[0.5, 0.2, 0.2, 0.1])
    sex = rng.choice(["M", "F"], n)
    y = rng.random(n) < 0.35
    s = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.15, n), 0, 1)
    s[(eth == "C") & y] = np.clip(s[(eth == "C") & y] - gap, 0, 1)
    return pd.DataFrame({
        "score": s, "target": y.astype(int), "ethnicity": eth, "sex": sex,
        "abstain": rng.random(n) < 0.1, "age": rng.uniform(25, 90, n), "site": "north",
    })  # fmt: skip


def _table(res, metric: str, attribute: str) -> pd.DataFrame:
    t = res.table
    return t[(t.metric == metric) & (t.attribute == attribute)].set_index("group")


def test_per_group_metrics_match_fairlearn_and_sklearn() -> None:
    df = _binary()
    res = subgroup_audit(df, by=["ethnicity"], task="binary", n_boot=50)
    pred = (df.score >= 0.5).astype(int)
    oracle = MetricFrame(
        metrics={"tpr": true_positive_rate, "fpr": false_positive_rate,
                 "selection_rate": selection_rate},
        y_true=df.target, y_pred=pred, sensitive_features=df.ethnicity,
    ).by_group  # fmt: skip
    for metric in ("tpr", "fpr", "selection_rate"):
        ours = _table(res, metric, "ethnicity")["estimate"]
        np.testing.assert_allclose(ours[oracle.index].to_numpy(float), oracle[metric], atol=1e-12)
    auroc = _table(res, "auroc", "ethnicity")["estimate"]
    for g, part in df.groupby("ethnicity"):
        assert auroc[g] == pytest.approx(roc_auc_score(part.target, part.score))
    brier = _table(res, "brier", "ethnicity")["estimate"]
    part = df[df.ethnicity == "B"]
    assert brier["B"] == pytest.approx(np.mean((part.score - part.target) ** 2))
    assert _table(res, "abstention_rate", "ethnicity")["estimate"]["A"] == pytest.approx(
        df[df.ethnicity == "A"].abstain.mean()
    )


def test_planted_under_diagnosis_gap_is_detected_and_absent_gap_is_not() -> None:
    res = subgroup_audit(_binary(gap=0.3), by=["ethnicity"], task="binary", n_boot=300)
    tpr = _table(res, "tpr", "ethnicity")
    c = tpr.loc["C"]
    assert c["difference"] < -0.3 and c["diff_upper"] < 0  # CI excludes zero
    assert c["ratio"] < 0.7 and c["ratio_upper"] < 1
    assert c["reference"] == "overall"
    fair = subgroup_audit(_binary(gap=0.0), by=["ethnicity"], task="binary", n_boot=300)
    c0 = _table(fair, "tpr", "ethnicity").loc["C"]
    assert c0["diff_lower"] <= 0 <= c0["diff_upper"]


def test_reference_group_and_intersections() -> None:
    df = _binary()
    res = subgroup_audit(df, by=["sex*ethnicity"], task="binary", n_boot=50,
                         reference={"sex*ethnicity": "F|A"})  # fmt: skip
    t = _table(res, "tpr", "sex*ethnicity")
    assert set(t.index) == {f"{s}|{e}" for s in "FM" for e in "ABCD"}
    assert t.loc["F|A", "difference"] == pytest.approx(0)
    assert (t["reference"] == "F|A").all()
    assert t.loc["M|C", "n"] == ((df.sex == "M") & (df.ethnicity == "C")).sum()
    assert parse_by("sex*ethnicity,site") == [("sex", "ethnicity"), ("site",)]


def test_small_groups_are_warned_about_not_silently_nan() -> None:
    df = _binary(n=300)
    df.loc[:4, "ethnicity"] = "E"  # a 5-person group
    df.loc[:4, "target"] = 0  # ... without positives: TPR and AUROC undefined
    df.loc[5, "sex"] = None  # a missing demographic value becomes its own group
    res = subgroup_audit(df, by=["ethnicity", "sex"], task="binary", n_boot=50, min_n=30)
    e = _table(res, "tpr", "ethnicity").loc["E"]
    assert bool(e["small_n"]) and e["n"] == 5
    assert pd.isna(e["estimate"]) and "no positives" in e["note"]
    assert any("ethnicity=E: small group (n=5" in w for w in res.warnings)
    assert any("ethnicity=E: auroc undefined" in w for w in res.warnings)
    assert "missing" in _table(res, "tpr", "sex").index
    rows = res.rows()
    e_row = next(r for r in rows if r["group"] == "E" and r["metric"] == "tpr")
    assert e_row["estimate"]["value"] is None and e_row["small_n"] is True


def test_survival_audit_uses_the_c_index_per_group() -> None:
    rng = np.random.default_rng(1)
    n = 400
    site = rng.choice(["north", "south"], n)
    risk = rng.normal(size=n)
    time = rng.exponential(np.exp(-risk))
    time[site == "south"] = rng.exponential(1.0, (site == "south").sum())  # no signal there
    event = rng.random(n) < 0.7
    df = pd.DataFrame({"score": risk, "time": time, "event": event, "site": site})
    res = subgroup_audit(df, by="site", task="survival", n_boot=200)
    c = _table(res, "c_index", "site")
    for g in ("north", "south"):
        m = df.site == g
        oracle = concordance_index_censored(event[m], time[m], risk[m])[0]
        assert c.loc[g, "estimate"] == pytest.approx(oracle)
    assert c.loc["south", "diff_upper"] < 0
    assert c.loc["north", "events"] == int(event[site == "north"].sum())


def test_age_bands_and_input_errors() -> None:
    df = add_age_band(pd.DataFrame({"age": [39.9, 40, 79, 80, None]}))
    assert df["age_band"].tolist()[:4] == ["<40", "40-49", "70-79", "80+"]
    assert pd.isna(df["age_band"].iloc[4])
    with pytest.raises(EvaluationError, match="no such column"):
        subgroup_audit(_binary(), by=["race"], task="binary", n_boot=10)
    with pytest.raises(EvaluationError, match="unknown task"):
        subgroup_audit(_binary(), by=["sex"], task="ranking")
    with pytest.raises(EvaluationError, match="operating point"):
        subgroup_audit(_binary().assign(score=lambda d: d.score * 5), by=["sex"],
                       task="binary", metrics=["tpr"], n_boot=10)  # fmt: skip
    with pytest.raises(EvaluationError, match="reference group 'Z'"):
        subgroup_audit(_binary(), by=["sex"], task="binary", reference={"sex": "Z"}, n_boot=10)


def test_audit_run_writes_summary_and_forest_plots(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    preds = _binary(n=300)
    preds["split"] = np.where(np.arange(300) < 240, "test", "train")
    preds.to_parquet(run / "predictions.parquet")
    (run / "config.yaml").write_text("task:\n  head: binary\ndata:\n  store: x\n")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    points = [{"weight": 0.0, "performance": 0.8, "disparity": 0.3},
              {"weight": 4.0, "performance": 0.77, "disparity": 0.1}]  # fmt: skip
    (sweep / "sweep.json").write_text(json.dumps(
        {"performance_metric": "auroc", "disparity_metric": "tpr range", "tradeoff": points}))  # fmt: skip
    res = audit_run(run, by="sex,ethnicity,age_band", n_boot=50, sweep=sweep)
    assert res.settings["n"] == 240 and res.settings["split"] == "test"  # held-out rows only
    out = run / "audit"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tradeoff"]["points"] == points
    assert summary["settings"]["task"] == "binary"
    assert summary["rows"] and set(summary["rows"][0]) == {
        "attribute", "group", "metric", "n", "events", "estimate", "difference", "reference",
        "small_n",
    }  # fmt: skip
    assert (out / "forest_tpr.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "run.json").is_file() and (out / "table.csv").is_file()
    assert len(res.table) == len(pd.read_csv(out / "table.csv"))
    with pytest.raises(EvaluationError, match="hidim predict"):
        audit_run(tmp_path / "empty", by="sex")
    with pytest.raises(EvaluationError, match="no rows of split 'val'"):
        audit_run(run, by="sex", split="val", n_boot=10)
