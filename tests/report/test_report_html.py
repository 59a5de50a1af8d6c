"""The HTML report is one self-contained file whose numbers equal report.json's."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import make_deid_audit, make_run

from hidim.report import build_report
from hidim.report.html import format_number


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str]] = []
        self.nums: list[tuple[dict[str, str], str]] = []
        self.ids: set[str] = set()
        self._num: dict[str, str] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for key in ("src", "href", "action", "poster", "data"):
            if key in a:
                self.links.append((tag, key, a[key]))
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "span" and "num" in a.get("class", "").split():
            self._num, self._text = a, ""

    def handle_data(self, data: str) -> None:
        if self._num is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._num is not None:
            self.nums.append((self._num, self._text))
            self._num = None


def _lookup(doc: Any, key: str) -> Any:
    node = doc
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], Path]:
    root = tmp_path_factory.mktemp("html")
    run = make_run(root)
    result = build_report(run, root / "out" / "report.html", deid_audit=make_deid_audit(root))
    return (
        result.html_path.read_text(encoding="utf-8"),
        json.loads(result.json_path.read_text()),
        result.html_path,
    )


def test_report_is_self_contained(built: tuple[str, dict[str, Any], Path]) -> None:
    html, _, _ = built
    scan = _Scan()
    scan.feed(html)
    assert scan.links, "expected images and in-page links"
    for tag, attr, value in scan.links:
        if attr == "href":
            assert value.startswith("#"), f"<{tag} href={value[:60]!r}> leaves the file"
        else:
            assert value.startswith("data:"), f"<{tag} {attr}={value[:60]!r}> is not inline"
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "@media print" in html


def test_every_link_points_to_an_anchor_that_exists(
    built: tuple[str, dict[str, Any], Path],
) -> None:
    html, doc, _ = built
    scan = _Scan()
    scan.feed(html)
    targets = {v[1:] for _, a, v in scan.links if a == "href"}
    assert targets <= scan.ids, targets - scan.ids
    assert {f["evidence"] for f in doc["flags"]} <= scan.ids


def test_images_are_png_data_uris(built: tuple[str, dict[str, Any], Path]) -> None:
    html, _, _ = built
    scan = _Scan()
    scan.feed(html)
    srcs = [v for t, a, v in scan.links if t == "img"]
    # KM, reliability, risk-coverage, frame importance, forest, trade-off + 4 saliency cases.
    assert len(srcs) == 10
    import base64

    for src in srcs:
        head, b64 = src.split(",", 1)
        assert head in ("data:image/png;base64", "data:image/gif;base64")
        assert base64.b64decode(b64)[:4] in (b"\x89PNG", b"GIF8")


def test_html_numbers_equal_report_json(built: tuple[str, dict[str, Any], Path]) -> None:
    html, doc, _ = built
    scan = _Scan()
    scan.feed(html)
    assert len(scan.nums) > 150
    for attrs, text in scan.nums:
        value = _lookup(doc, attrs["data-key"])
        digits, scale = int(attrs["data-digits"]), float(attrs["data-scale"])
        assert text == format_number(value, digits, scale), attrs["data-key"]
        if value is not None and not isinstance(value, bool):
            shown = float(text)
            assert abs(shown - value * scale) <= 0.5 * 10**-digits + 1e-12, attrs["data-key"]


def test_headline_numbers_are_in_report_json(built: tuple[str, dict[str, Any], Path]) -> None:
    _, doc, _ = built
    assert doc["performance"]["metrics"][0]["estimate"] == {
        "value": 0.74,
        "lower": 0.66,
        "upper": 0.81,
    }
    assert doc["data"]["cohort"]["n_patients"] == 120
    assert doc["data"]["deid"]["n_quarantined"] == 2
    assert doc["thresholds"]["max_ece"] == 0.10
    assert [
        s["status"]
        for s in (
            doc[k]
            for k in ("data", "model_card", "performance", "uncertainty", "explanations", "bias")
        )
    ] == ["ok"] * 6
    # The KM figure's data is in the JSON too.
    assert sum(c["n"] for c in doc["performance"]["km_curves"]) == 24


def test_sections_and_flag_summary_are_present(built: tuple[str, dict[str, Any], Path]) -> None:
    html, doc, _ = built
    for sid, title in [
        ("data", "1. Data"),
        ("model-card", "2. Model card"),
        ("performance", "3. Performance"),
        ("uncertainty", "4. Uncertainty"),
        ("explanations", "5. Explanations"),
        ("bias", "6. Bias"),
        ("flags", "7. Flags"),
    ]:
        assert f'id="{sid}"' in html and title in html
    assert html.index('id="flag-summary"') < html.index('id="data"')
    assert "Model relies on a non-anatomical region" in html
    assert {"shortcut_suspected", "subgroup_gap"} <= {f["code"] for f in doc["flags"]}


def test_text_from_artefacts_is_escaped(tmp_path: Path) -> None:
    run = make_run(tmp_path, sections=("audit",))
    audit = run / "audit" / "summary.json"
    doc = json.loads(audit.read_text())
    doc["rows"][0]["group"] = "<script>alert(1)</script>"
    audit.write_text(json.dumps(doc))
    html = build_report(run).html_path.read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # only the report's own, CSP-hashed check


def test_default_output_and_run_json(tmp_path: Path) -> None:
    run = make_run(tmp_path, sections=("audit",))
    result = build_report(run)
    assert result.html_path == run / "report" / "report.html"
    assert (run / "report" / "report.json").is_file()
    prov = json.loads((run / "report" / "run.json").read_text())
    assert prov["command"] == "report" and prov["extra"]["sections"]["bias"] == "ok"
    # The training run's own run.json is never overwritten by a report written beside it.
    before = (run / "run.json").read_text()
    build_report(run, run / "report.html")
    assert (run / "run.json").read_text() == before
