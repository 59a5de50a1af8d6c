"""`hidim demo --quick` end to end: raw phantom DICOM → readiness report, every stage real.

The report must contain every section, and the flags the planted effects should raise:
the shortcut marker (occlusion of a non-anatomical region hurts) and the under-recorded
outcomes in women (a subgroup gap). It must not contain any identifier of the phantom's
patients (they went through de-identification).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hidim.cli.main import app
from hidim.workflows.demo import STAGES, DemoContext, DemoError, Stage, run_demo

SECTIONS = ("data", "model_card", "performance", "uncertainty", "explanations", "bias")


def test_demo_stage_list_is_explicit_and_ordered() -> None:
    assert [s.name for s in STAGES] == [
        "phantom",
        "deidentify",
        "curate",
        "labels",
        "pretrain",
        "train",
        "baseline",
        "ood",
        "explain",
        "audit",
        "report",
    ]


def test_a_failing_stage_is_named(tmp_path: Path) -> None:
    def boom(ctx: DemoContext) -> str:
        from hidim.errors import TrainingError

        raise TrainingError("no events in the training split")

    with pytest.raises(DemoError, match="demo stage 'train' failed: no events"):
        run_demo(tmp_path, quick=True, stages=[Stage("train", "train", boom)])


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--quick", "--seed", "0"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "report:" in result.output and "C-index" in result.output
    html = (out / "report.html").read_text(encoding="utf-8")
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))

    # Every section present and filled from real artefacts.
    for name in SECTIONS:
        assert doc[name]["status"] == "ok", (name, doc[name]["note"])
    for anchor in (
        "data",
        "model-card",
        "performance",
        "uncertainty",
        "explanations",
        "bias",
        "flags",
    ):
        assert f'id="{anchor}"' in html
    assert doc["data"]["deid"]["n_written"] == doc["data"]["cohort"]["n_series"]
    assert doc["performance"]["km_curves"] and doc["uncertainty"]["ood"]
    assert doc["explanations"]["sanity_checks"] and doc["explanations"]["occlusion"]

    # The planted effects raise their flags.
    flags = doc["flags"]
    codes = {f["code"] for f in flags}
    assert "shortcut_suspected" in codes, [f["message"] for f in flags]
    gaps = [f for f in flags if f["code"] == "subgroup_gap" and "sex = F" in f["title"]]
    assert gaps, [f["message"] for f in flags]
    assert "Model relies on a non-anatomical region" in html

    # No identifier of a phantom patient survives into the report (images aside: base64).
    text = re.sub(r"data:[a-z/]+;base64,[A-Za-z0-9+/=]+", "", html)
    truth = json.loads((out / "phantom" / "truth.json").read_text(encoding="utf-8"))
    for patient_id in truth["patients"]:
        assert patient_id not in text
    for entry in truth["patients"].values():
        assert entry["study_uid"] not in text
