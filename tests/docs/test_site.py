"""The documentation site: built with --strict (a dead link or a page left out fails), its
generated pages hold what the code says, and it opens in Chromium with no request leaving the
machine."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from carerisk.cli import app
from features.contract import TABLES
from tests.browser import ARGS, CHROMIUM

REPO = Path(__file__).resolve().parents[2]
MKDOCS = Path(sys.executable).with_name("mkdocs")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    command = [str(MKDOCS), "build", "--strict", "--site-dir", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_every_page_is_built(site: Path) -> None:
    pages = sorted(p.stem for p in (REPO / "docs").glob("*.md"))
    missing = [p for p in pages if not (site / f"{p}.html").is_file()]
    assert not missing


def test_contract_page_holds_every_table(site: Path) -> None:
    html = (site / "contract.html").read_text(encoding="utf-8")
    assert "generated:contract" not in html
    for table in TABLES:
        assert f"<code>{table.name}</code>" in html, table.name


def test_cli_page_holds_every_command(site: Path) -> None:
    import typer

    html = (site / "cli.html").read_text(encoding="utf-8")
    root = typer.main.get_command(app)
    for name in getattr(root, "commands", {}):
        assert f"carerisk {name}</code>" in html, name


def test_api_page_holds_every_route(site: Path) -> None:
    html = (site / "api.html").read_text(encoding="utf-8")
    for route in ("POST /v1/score", "GET /v1/register", "POST /v1/referrals", "GET /v1/whoami"):
        assert f"<code>{route}</code>" in html, route


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.browser
@pytest.mark.parametrize("page_name", ["index.html", "cli.html", "api.html", "benchmarks.html"])
def test_site_makes_no_outside_request(served: str, page_name: str) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI is set but /usr/bin/chromium is missing")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    from playwright.sync_api import Route, sync_playwright

    outside: list[str] = []

    def route(r: Route) -> None:
        if r.request.url.startswith((served, "data:", "blob:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", route)
            page.goto(f"{served}/{page_name}", wait_until="networkidle")
            assert page.locator("h1").first.is_visible()
        finally:
            browser.close()
    assert outside == []
