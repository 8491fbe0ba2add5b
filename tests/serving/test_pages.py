"""The practitioner pages (/ui) in headless Chromium against a real served instance.

Each browser test signs in through the page, uses it like a practitioner, and checks what it
shows against the API's own JSON. A watcher on every page aborts and records any request that
would leave loopback, records console errors, and keeps every /v1 response body so the fire
role's network traffic can be searched for clinical detail as well as its page text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from features.feature_list import FEATURES
from features.home import Home
from serving.audit import AuditLog
from serving.keys import KeyStore
from serving.ui import ASSETS, PAGES, STATIC, build_ui_app
from tests.browser import ARGS, CHROMIUM
from tests.live import LiveService, free_port, snapshot_people

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LOOPBACK = {"127.0.0.1", "localhost"}
WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 375, "height": 800}
REFUSED = re.compile(
    r"^Failed to load resource: (the server responded with a status of 4|net::ERR_CONN)"
)


# --- the shipped app, without a server ------------------------------------------------------


def ui_get(*paths: str) -> list[httpx.Response]:
    """GET paths from the pages app in this process (no server)."""

    async def fetch() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=build_ui_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://ui") as client:
            return [await client.get(path) for path in paths]

    with ThreadPoolExecutor(1) as pool:  # its own event loop, even beside Playwright's
        return pool.submit(asyncio.run, fetch()).result()


def test_pages_and_assets_are_served_with_a_strict_policy() -> None:
    responses = ui_get(*PAGES)
    for (path, filename), response in zip(PAGES.items(), responses, strict=True):
        assert response.status_code == 200, path
        assert response.text == (STATIC / filename).read_text(encoding="utf-8")
        assert response.headers["content-type"].startswith("text/html")
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy
        assert response.headers["cache-control"] == "no-store"
    assets = ui_get(*(f"/static/{name}" for name in ASSETS))
    assert [r.status_code for r in assets] == [200] * len(ASSETS) and len(ASSETS) >= 2
    missing = ("/static/signin.html", "/static/nope.js", "/static/..%2Fui.py", "/admin")
    assert [r.status_code for r in ui_get(*missing)] == [404] * len(missing)


def test_pages_load_nothing_from_elsewhere() -> None:
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        for marker in ("http://", "https://", "//cdn", "@import", "url("):
            if path.suffix == ".js" and marker == "http://":
                text = text.replace('"http://www.w3.org/2000/svg"', "")  # SVG namespace
            assert marker not in text, f"{path.name} mentions {marker}"
        assert "style=" not in text and "onclick" not in text, path.name  # CSP: no inline


# --- the browser -------------------------------------------------------------------------------


@dataclass
class Watched:
    """A page whose requests, responses and console errors are recorded."""

    page: Any
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)

    def check_clean(self, *secrets: str, refusals: bool = False) -> None:
        """Nothing left loopback, no script errors, no key in a URL or a cookie. With
        `refusals`, the browser's own log lines for refused requests are expected."""
        assert self.blocked == []
        errors = [e for e in self.errors if not (refusals and REFUSED.search(e))]
        assert errors == []
        for secret in secrets:
            assert not any(secret in url for url in self.requests)
        assert self.page.context.cookies() == []
        assert self.page.evaluate("document.cookie") == ""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI is set but /usr/bin/chromium is missing")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def watch(browser: Any, viewport: dict[str, int] = WIDE) -> Watched:
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    watched = Watched(context.new_page())

    def route(r: Any) -> None:
        url = r.request.url
        watched.requests.append(url)
        if urlsplit(url).hostname not in LOOPBACK:
            watched.blocked.append(url)
            r.abort()
        elif "/v1/" in url:
            pass_on_api(r, watched.bodies)
        else:
            r.continue_()

    context.route("**/*", route)
    watched.page.on("console", lambda m: watched.errors.append(m.text) if m.type == "error" else 0)
    watched.page.on("pageerror", lambda exc: watched.errors.append(str(exc)))
    return watched


def pass_on_api(r: Any, bodies: list[str]) -> None:
    """Send an API request on to the server and keep the answer's body as the browser gets it."""
    from playwright.sync_api import Error

    try:
        response = r.fetch()
    except Error:  # nothing listening: let the browser meet the refusal itself
        r.continue_()
        return
    bodies.append(response.text())
    r.fulfill(response=response)


def sign_in(watched: Watched, base_url: str, key: str) -> None:
    page = watched.page
    page.goto(f"{base_url}/ui/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def look_up(page: Any, person_id: str) -> None:
    page.get_by_label("Pseudonymised person id").fill(person_id)
    page.get_by_role("button", name="Look up").click()


def status_text(page: Any) -> str:
    """The status line once it has settled (not "Looking up…")."""
    from playwright.sync_api import expect

    status = page.locator("#status")
    status.wait_for(state="visible")
    expect(status).not_to_have_text(re.compile("…$"))
    return str(status.inner_text())


def api_json(live: LiveService, role: str, method: str, path: str, **kw: Any) -> Any:
    with live.client(role) as client:
        response = client.request(method, path, **kw)
    response.raise_for_status()
    return response.json()


# --- sign in and the person view --------------------------------------------------------------


@pytest.mark.server
@pytest.mark.browser
def test_gp_person_view_shows_the_api_numbers(live_service: LiveService, browser: Any) -> None:
    key = live_service.keys["gp"]
    person = snapshot_people(live_service.home)["falls"][0]
    who = api_json(live_service, "gp", "GET", "/v1/whoami")
    watched = watch(browser)
    page = watched.page
    sign_in(watched, live_service.url, key)
    page.wait_for_url("**/ui/person")
    assert page.locator("[data-org]").inner_text() == who["org"]
    assert page.locator("[data-role]").inner_text() == "gp"
    look_up(page, person)
    page.locator("[data-outcome] [data-probability]").first.wait_for()
    expected = api_json(live_service, "gp", "POST", "/v1/person", json={"person_id": person})

    for outcome, score in expected["outcomes"].items():
        card = page.locator(f'[data-outcome="{outcome}"]')
        risk = card.locator("[data-probability]")
        assert float(risk.get_attribute("data-probability")) == score["probability"]
        assert risk.inner_text() == f"{score['probability'] * 100:.1f}%"
        assert card.locator("[data-band]").inner_text() == score["band"]
        assert card.locator("[data-index-date]").inner_text() == score["index_date"]
        assert (
            card.locator("[data-model-version]").get_attribute("data-model-version")
            == (score["model_version"])
        )
        check_reasons(card, score["reasons"])
    for note in {n for s in expected["outcomes"].values() for n in s["notes"]}:
        assert page.get_by_role("note").filter(has_text=note).count() == 1

    key_id = key.split("_")[1]
    seen = [
        r for r in AuditLog.in_home(live_service.home).tail(50)
        if r.key_id == key_id and r.endpoint == "person" and person in r.person_ids
    ]  # fmt: skip
    assert {r.risk_outcome for r in seen} >= set(expected["outcomes"])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "person-view.png"), full_page=True)
    watched.check_clean(key, key.split("_", 2)[2])
    page.context.close()


def check_reasons(card: Any, reasons: list[dict[str, Any]]) -> None:
    """Every API reason is drawn once with its exact contribution; the modifiable ones that
    raise risk come first, under "What could be acted on"."""
    act_on = [r for r in reasons if r["modifiable"] and r["direction"] == "raises"]
    others = [r for r in reasons if r not in act_on]
    items = card.locator("li.reason")
    assert items.count() == len(reasons)
    drawn = [items.nth(i) for i in range(items.count())]
    assert [i.get_attribute("data-feature") for i in drawn] == [
        r["feature"] for r in act_on + others
    ]
    for item, reason in zip(drawn, act_on + others, strict=True):
        assert float(item.get_attribute("data-contribution")) == reason["contribution"]
        assert item.locator(".reason-text").inner_text().startswith(reason["label"])
    listed = card.get_by_role("list", name="What could be acted on").locator("li")
    assert listed.count() == len(act_on)


# --- the fire role ----------------------------------------------------------------------------


def clinical_markers() -> tuple[list[str], list[str]]:
    """Words only a clinical reason would put on the page, and clinical feature names."""
    plain = [f.label for f in FEATURES if not f.clinical]
    words = {
        part.strip()
        for f in FEATURES
        if f.clinical
        for part in f.label.split("{value}")
        if len(part.strip()) >= 8
    }
    assert words and not any(w in label for w in words for label in plain)
    return sorted(words), [f.name for f in FEATURES if f.clinical]


@pytest.mark.server
@pytest.mark.browser
def test_fire_sees_no_clinical_detail_on_page_or_wire(
    live_service: LiveService, browser: Any
) -> None:
    key = live_service.keys["fire"]
    person = snapshot_people(live_service.home)["falls"][0]
    watched = watch(browser)
    page = watched.page
    sign_in(watched, live_service.url, key)
    page.wait_for_url("**/ui/register")
    assert page.locator("[data-role]").inner_text() == "fire"
    page.get_by_label("How many people").fill("40")
    page.get_by_role("button", name="Show register").click()
    page.locator("#register-table tbody tr").first.wait_for()
    register_text = page.locator("main").inner_text()
    assert page.locator("#register-table tbody tr").count() == 40
    assert page.locator("[data-probability]").count() == 0

    page.goto(f"{live_service.url}/ui/person#{person}")  # the register's link to a person
    page.locator("[data-outcome] li.reason").first.wait_for()
    person_text = page.locator("body").inner_text()
    assert page.locator("[data-probability]").count() == 0
    assert "%" not in person_text

    words, names = clinical_markers()
    seen = register_text + person_text + page.content()
    for word in words:
        assert word not in seen, word
    assert len(watched.bodies) >= 3  # whoami, register, person
    for body in watched.bodies:
        assert '"probability"' not in body
        for word in words:
            assert word not in body, word
        for name in names:
            assert f'"{name}"' not in body, name
    watched.check_clean(key)
    page.context.close()


# --- the register view ------------------------------------------------------------------------


@pytest.mark.server
@pytest.mark.browser
def test_register_filters_and_downloads_the_api_csv(
    live_service: LiveService, browser: Any, tmp_path: Path
) -> None:
    key = live_service.keys["gp"]
    county = api_json(
        live_service, "gp", "GET", "/v1/register", params={"outcome": "falls", "top": 1}
    )
    district = county["people"][0]["district"]
    query = {"outcome": "falls", "district": district, "top": 12}
    expected = api_json(live_service, "gp", "GET", "/v1/register", params=query)["people"]
    with live_service.client("gp") as client:
        csv_text = client.get("/v1/register", params={**query, "format": "csv"}).text

    watched = watch(browser)
    page = watched.page
    sign_in(watched, live_service.url, key)
    page.wait_for_url("**/ui/person")
    page.get_by_role("link", name="Register").click()
    page.get_by_label("District").fill(district)
    page.get_by_label("How many people").fill("12")
    page.get_by_role("button", name="Show register").click()
    rows = page.locator("#register-table tbody tr")
    rows.first.wait_for()
    assert [rows.nth(i).get_attribute("data-person") for i in range(rows.count())] == [
        p["person_ref"] for p in expected
    ]
    first = rows.first.locator("[data-probability]")
    assert float(first.get_attribute("data-probability")) == expected[0]["probability"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "register-view.png"), full_page=False)

    band = expected[-1]["band"]
    page.get_by_label("Show band").select_option(band)
    assert rows.count() == sum(p["band"] == band for p in expected)
    page.get_by_label("Show band").select_option("")
    page.get_by_label("Filter by id, place or reason").fill(expected[3]["person_ref"])
    assert rows.count() == 1

    with page.expect_download() as info:
        page.get_by_role("button", name="Download CSV").click()
    download = info.value
    assert download.suggested_filename == f"register-falls-{district.replace(' ', '-')}-gp.csv"
    saved = tmp_path / "register.csv"
    download.save_as(saved)
    assert saved.read_text(encoding="utf-8") == csv_text
    assert csv_text.count("\n") == len(expected) + 1
    watched.check_clean(key)
    page.context.close()


# --- errors in plain words --------------------------------------------------------------------


@pytest.fixture
def objecting(live_service: LiveService) -> Iterator[str]:
    """One person on the objections list for the length of a test, then the list restored."""
    path = Home(live_service.home).objections_path
    before = path.read_text(encoding="utf-8") if path.exists() else None
    person = snapshot_people(live_service.home)["falls"][1]
    lines = before.rstrip("\n").split("\n") if before else ["person_id"]
    path.write_text("\n".join([*lines, person]) + "\n", encoding="utf-8")
    api_json(live_service, "admin", "POST", "/v1/admin/objections/reload")
    try:
        yield person
    finally:
        if before is None:
            path.unlink()
        else:
            path.write_text(before, encoding="utf-8")
        api_json(live_service, "admin", "POST", "/v1/admin/objections/reload")


@pytest.mark.server
@pytest.mark.browser
def test_errors_read_as_plain_words(
    live_service: LiveService, browser: Any, objecting: str
) -> None:
    key = live_service.keys["gp"]
    watched = watch(browser)
    page = watched.page
    sign_in(watched, live_service.url, key)
    page.wait_for_url("**/ui/person")
    cases = {
        "P000000000000": "No one with the id P000000000000 is in the latest data",
        "no!": "does not look like a pseudonymised id",
        objecting: "has objected to their data being used",
    }
    for person, words in cases.items():
        look_up(page, person)
        text = status_text(page)
        assert words in text, text
        assert page.locator("[data-probability]").count() == 0
    young = snapshot_people(live_service.home)["complex_dependency"][-1]
    look_up(page, young)
    card = page.locator('[data-outcome="falls"]')
    card.wait_for()
    assert "applies only to people" in card.inner_text()
    assert page.locator('[data-outcome="complex_dependency"] [data-probability]').count() == 1

    expired_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    _, expired = KeyStore.in_home(live_service.home).add(
        "Lapsed GP org", "gp", expires_at=expired_at, all_practices=True
    )
    sign_in(watched, live_service.url, expired)
    assert "Your API key has expired" in status_text(page)
    assert page.url.endswith("/ui/")
    sign_in(watched, live_service.url, "crk_000000000000_" + "x" * 43)
    assert "not recognised" in status_text(page)
    for text in [page.locator("main").inner_text()]:
        assert "Traceback" not in text and "Error:" not in text
    watched.check_clean(key, expired, refusals=True)
    page.context.close()


@pytest.mark.server
@pytest.mark.browser
def test_service_unavailable_reads_well(live_service: LiveService, browser: Any) -> None:
    """The pages as shipped, at an origin where nothing is listening: every call to the API is
    refused by the operating system, as when the service is down."""
    closed = f"http://127.0.0.1:{free_port()}"
    watched = watch(browser)
    page = watched.page
    shipped = ["/ui/", "/ui/person", "/ui/static/ui.js", "/ui/static/ui.css"]
    files = dict(zip(shipped, ui_get(*(p.removeprefix("/ui") for p in shipped)), strict=True))

    def pages_only(r: Any) -> None:  # the shipped pages; /v1 goes on to the closed port
        got = files.get(urlsplit(r.request.url).path)
        if got is None:
            r.fallback()
        else:
            r.fulfill(status=got.status_code, headers=dict(got.headers), body=got.content)

    page.route(f"{closed}/**", pages_only)
    sign_in(watched, closed, live_service.keys["gp"])
    assert "cannot be reached" in status_text(page)
    page.evaluate(
        "sessionStorage.setItem('carerisk.session', JSON.stringify("
        "{key: 'crk_000000000000_x', org: 'Test org', role: 'gp'}))"
    )
    page.goto(f"{closed}/ui/person")
    look_up(page, "P000000000000")
    assert "cannot be reached" in status_text(page)
    assert "Traceback" not in page.locator("body").inner_text()
    watched.check_clean(live_service.keys["gp"], refusals=True)
    page.context.close()


# --- keyboard, labels, contrast, narrow screens -----------------------------------------------

CONTRAST_JS = """() => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const failures = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden") continue;
    const a = lum(rgb(style.color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    const text = el.textContent.trim().slice(0, 30);
    if (ratio < needed) failures.push(`${el.tagName} "${text}" ${ratio.toFixed(2)}`);
  }
  return failures;
}"""

LABELS_JS = """() => [...document.querySelectorAll("input, select, button, a")]
  .filter((el) => el.getClientRects().length)
  .filter((el) => {
    if (el.tagName === "BUTTON" || el.tagName === "A") return !el.textContent.trim();
    return !(el.labels && el.labels.length) && !el.getAttribute("aria-label");
  })
  .map((el) => el.outerHTML.slice(0, 80))"""


def accessibility_problems(page: Any) -> list[str]:
    overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    return [
        *page.evaluate(CONTRAST_JS),
        *page.evaluate(LABELS_JS),
        *(["wider than the screen"] if overflow else []),
    ]


def tab_to(page: Any, element_id: str, presses: int = 12, key: str = "Tab") -> None:
    for _ in range(presses):
        page.keyboard.press(key)
        if page.evaluate("document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} cannot be reached with the Tab key")


@pytest.mark.server
@pytest.mark.browser
def test_keyboard_only_on_a_narrow_screen(live_service: LiveService, browser: Any) -> None:
    key = live_service.keys["gp"]
    person = snapshot_people(live_service.home)["falls"][2]
    watched = watch(browser, NARROW)
    page = watched.page
    page.goto(f"{live_service.url}/ui/")
    assert accessibility_problems(page) == []
    tab_to(page, "api-key")
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/person")
    tab_to(page, "person-id")
    page.keyboard.type(person)
    page.keyboard.press("Enter")
    page.locator("[data-outcome] li.reason").first.wait_for()
    assert accessibility_problems(page) == []

    page.goto(f"{live_service.url}/ui/register")
    tab_to(page, "top")
    page.keyboard.press("Control+A")
    page.keyboard.type("8")
    page.keyboard.press("Enter")
    page.locator("#register-table tbody tr").first.wait_for()
    assert page.locator("#register-table tbody tr").count() == 8
    assert accessibility_problems(page) == []
    tab_to(page, "sign-out", key="Shift+Tab")
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/")
    assert page.evaluate("sessionStorage.length") == 0
    watched.check_clean(key)
    page.context.close()


def test_the_page_reads_only_fields_the_api_keeps() -> None:
    """ui.js reads these fields of a score and its reasons; the API's schemas must keep them."""
    from serving.score_results import Reason, RestrictedScore

    script = (STATIC / "ui.js").read_text(encoding="utf-8")
    for name in ("feature", "label", "contribution", "direction", "modifiable"):
        assert name in Reason.model_fields
        assert f"reason.{name}" in script or f"r.{name}" in script
    for name in ("band", "rank", "index_date", "model_name", "model_version", "notes"):
        assert name in RestrictedScore.model_fields
        assert f"score.{name}" in script
