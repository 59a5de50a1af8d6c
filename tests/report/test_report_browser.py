"""The report in a real browser: headless Chromium opens it offline without console errors,
every embedded image decodes, the screenshot is not blank, and it prints to a multi-page PDF."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_fixtures import make_deid_audit, make_run

from hidim.report import build_report

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
)


def chromium(tmp: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_messages(stderr: str) -> list[str]:
    """Lines Chromium logs for page console output (errors, CSP violations, exceptions)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    run = make_run(root)
    return build_report(run, root / "report.html", deid_audit=make_deid_audit(root)).html_path


def test_console_capture_sees_errors(need_chromium: None, tmp_path: Path) -> None:
    """Negative control: the console check below is not vacuous."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body><img src='https://example.invalid/x.png'>"
        "<script>console.error('boom'); notDefined();</script></body></html>"
    )
    out = chromium(tmp_path, page.as_uri(), "--dump-dom")
    messages = console_messages(out.stderr)
    assert any("boom" in m for m in messages) and any("Uncaught" in m for m in messages)


def test_report_opens_without_console_errors_and_is_not_blank(
    need_chromium: None, report_html: Path, tmp_path: Path
) -> None:
    shot = tmp_path / "shot.png"
    out = chromium(
        tmp_path, report_html.as_uri(), f"--screenshot={shot}", "--window-size=1280,2000"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert console_messages(out.stderr) == []
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape == (2000, 1280)
    assert img.std() > 20, "screenshot looks blank"
    assert (img < 200).mean() > 0.02, "too little ink on the page"
    # The top of the page shows the header band and the flag box, not an empty page.
    assert img[:400].std() > 20


def test_images_decode_in_the_browser(
    need_chromium: None, report_html: Path, tmp_path: Path
) -> None:
    out = chromium(tmp_path, report_html.as_uri(), "--dump-dom")
    assert console_messages(out.stderr) == []
    root = re.search(r"<html[^>]*>", out.stdout)
    assert root is not None
    assert 'data-images-ok="yes"' in root.group(0), root.group(0)
    assert 'data-images="10"' in root.group(0)


def test_report_prints_to_pdf(need_chromium: None, report_html: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    out = chromium(
        tmp_path, report_html.as_uri(), f"--print-to-pdf={pdf}", "--no-pdf-header-footer"
    )
    assert pdf.is_file(), out.stderr[-2000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    # Seven sections, each from a new page (@media print), plus overflow.
    assert pages >= 7
