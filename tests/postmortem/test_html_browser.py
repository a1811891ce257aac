"""The HTML postmortem: one self-contained file that a real headless Chromium renders
(not blank, the graph drawn in colour) and prints, fetching nothing, with every piece of
alert text escaped."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.postmortem.cascade import Cascade
from tests.postmortem.png import pixels

WINDOW = (1000, 1400)


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        require("Chromium", "install Debian's chromium package (apt-get install chromium)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def page(cascade: Cascade) -> str:
    response = cascade.get(f"/api/v1/incidents/{cascade.incident_id}/postmortem", format="html")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    text: str = response.text
    return text


def _browser(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        # Anything but loopback goes to a closed port: a page that needs the internet shows it.
        "--proxy-server=http://127.0.0.1:9",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _requested(netlog: Path) -> list[str]:
    """URLs the page asked for; the browser's own background requests have no origin."""
    log: dict[str, Any] = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        e["params"]["url"]
        for e in log["events"]
        if e["type"] == start_job
        and "url" in e.get("params", {})
        and e["params"].get("initiator") != "not an origin"
    ]


def _screenshot(chromium: str, tmp_path: Path, html: str) -> tuple[bytes, list[str]]:
    source = tmp_path / "page.html"
    source.write_text(html, encoding="utf-8")
    shot, netlog = tmp_path / "shot.png", tmp_path / "net.json"
    _browser(
        chromium,
        tmp_path,
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--log-net-log={netlog}",
        f"--screenshot={shot}",
        source.as_uri(),
    )
    return shot.read_bytes(), _requested(netlog)


def test_the_page_is_one_self_contained_file(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    for needle in ("<script", "<link", "<img", "<iframe", "src=", "href=", "@import"):
        assert needle not in page.lower(), needle
    # The only url() references are the SVG's own arrow marker.
    assert set(re.findall(r"url\(([^)]*)\)", page)) == {"#arrow"}
    assert "<svg" in page and "<style>" in page


def test_alert_labels_and_notes_are_escaped(page: str) -> None:
    assert "&lt;script&gt;alert(&#x27;pm&#x27;)&lt;/script&gt;" in page
    assert "note=&lt;script&gt;" in page  # the hostile label, in the alert's row


def test_the_page_has_print_rules_for_a4_and_letter(page: str) -> None:
    css = page.split("<style>")[1].split("</style>")[0]
    assert "@page" in css and "@media print" in css
    # No fixed paper size: the margins fit A4 and Letter, the content is fluid.
    [page_rule] = re.findall(r"@page \{[^}]*\}", css)
    assert "size" not in page_rule
    assert re.search(
        r"tr, figure, \.keep \{ break-inside: avoid; page-break-inside: avoid; \}", css
    )
    assert "thead { display: table-header-group; }" in css
    assert "page-break-after: avoid" in css


def test_chromium_renders_a_page_that_is_not_blank(
    page: str, chromium: str, tmp_path: Path
) -> None:
    png, requested = _screenshot(chromium, tmp_path, page)
    width, height, every = pixels(png)
    assert (width, height) == WINDOW
    ink = red = 0
    for r, g, b in every:
        if (r, g, b) != (255, 255, 255):
            ink += 1
        if r > 140 and g < 60 and b < 60:
            red += 1  # the root cause's border
    assert ink > 0.03 * width * height, ink
    assert red > 100, red
    assert requested == []


def test_the_request_check_sees_what_a_page_fetches(chromium: str, tmp_path: Path) -> None:
    fetching = '<!DOCTYPE html><img src="http://images.example.invalid/logo.png">'
    _, requested = _screenshot(chromium, tmp_path, fetching)
    assert requested == ["http://images.example.invalid/logo.png"]


def test_chromium_prints_it_to_pdf(page: str, chromium: str, tmp_path: Path) -> None:
    source = tmp_path / "postmortem.html"
    source.write_text(page, encoding="utf-8")
    pdf = tmp_path / "postmortem.pdf"
    _browser(chromium, tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", source.as_uri())
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert pages >= 2, pages
