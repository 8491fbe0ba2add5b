from __future__ import annotations

import os
from pathlib import Path

import pytest

from evaluation.inputs import FairnessLimits
from evaluation.report import SECTIONS, evaluate, write_report
from tests.browser import ARGS, CHROMIUM

from .conftest import make_input

ARTIFACTS = Path(__file__).resolve().parents[1] / "_artifacts"


@pytest.mark.browser
def test_report_in_headless_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI is set but /usr/bin/chromium is missing")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    from playwright.sync_api import Route, sync_playwright

    result = evaluate(make_input(2000), FairnessLimits(n_boot=40))
    html_path, _ = write_report(result, tmp_path)
    requests: list[str] = []
    blocked: list[str] = []
    errors: list[str] = []

    def route(r: Route) -> None:
        url = r.request.url
        requests.append(url)
        if url.startswith(("file:", "data:")):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.route("**/*", route)
            page.goto(html_path.as_uri(), wait_until="load")
            for section_id, title in SECTIONS:
                heading = page.locator(f"#{section_id} h2")
                assert heading.is_visible(), section_id
                assert heading.inner_text() == title
            broken = page.evaluate(
                "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                ".length"
            )
            assert broken == 0
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=False)
        finally:
            browser.close()
    assert blocked == []
    assert errors == []
    assert all(u.startswith(("file:", "data:")) for u in requests)
