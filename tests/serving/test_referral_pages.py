"""The referral pages in headless Chromium against the live server: a GP refers a person from the
person view (agreement wording, required confirmation), and the fire service accepts the
referral and records the visit's findings on its queue page. Each is checked against the API's
own JSON, for what the fire role's pages and traffic show, and for labels, contrast and width."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from typing import Any

import pytest

from features.feature_list import FEATURES
from tests.browser import ARGS, CHROMIUM
from tests.live import LiveService, snapshot_people
from tests.serving.test_pages import (
    NARROW,
    SCREENSHOTS,
    accessibility_problems,
    api_json,
    look_up,
    sign_in,
    status_text,
    watch,
)

pytestmark = [pytest.mark.server, pytest.mark.browser]

CLINICAL = [f.name for f in FEATURES if f.clinical]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, as tests/serving/test_pages.py starts it."""
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


@pytest.fixture(scope="module")
def person(live_service: LiveService) -> str:
    return snapshot_people(live_service.home)["falls"][20]


def test_gp_refers_with_the_persons_agreement(
    live_service: LiveService,
    browser: Any,
    person: str,
) -> None:
    key = live_service.keys["gp"]
    watched = watch(browser)
    page = watched.page
    sign_in(watched, live_service.url, key)
    page.wait_for_url("**/ui/person")
    look_up(page, person)
    form = page.locator("#refer-form")
    form.wait_for()
    wording = api_json(live_service, "gp", "GET", "/v1/referrals/form")["agreement"]["items"]
    for words in wording.values():
        # each agreement item, in the API's words
        assert page.get_by_label(words, exact=True).count() == 1
    page.get_by_label("Fire and rescue service", exact=True).select_option("Test fire org")
    page.get_by_role("button", name="Refer to the fire service").click()
    assert "must agree to everything" in status_text(page)
    for words in wording.values():
        page.get_by_label(words, exact=True).check()
    page.get_by_label("Agreement recorded by").fill("Dr A Patel, GP")
    page.get_by_role("button", name="Refer to the fire service").click()
    assert "Confirm that the person agreed today" in status_text(page)
    page.get_by_label("I confirm the person agreed to this today, as written above.").check()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "refer-view.png"), full_page=True)
    page.get_by_role("button", name="Refer to the fire service").click()
    done = page.locator("[data-referral]")
    done.wait_for()
    rid = done.get_attribute("data-referral")
    assert "Referred to Test fire org" in done.inner_text()
    made = api_json(live_service, "gp", "GET", f"/v1/referrals/{rid}")["referral"]
    assert (made["person_id"], made["status"], made["receiving_org"]) == (
        person, "referred", "Test fire org"
    )  # fmt: skip
    assert made["agreement"]["recorded_by"] == "Dr A Patel, GP"
    scored = api_json(live_service, "gp", "POST", "/v1/person", json={"person_id": person})
    assert made["band"] == scored["outcomes"]["falls"]["band"]
    assert made["model_version"] == scored["outcomes"]["falls"]["model_version"]
    watched.check_clean(key)
    page.context.close()


def test_fire_accepts_and_records_the_visit(
    live_service: LiveService,
    browser: Any,
    person: str,
) -> None:
    key = live_service.keys["fire"]
    watched = watch(browser)
    page = watched.page
    sign_in(watched, live_service.url, key)
    page.wait_for_url("**/ui/register")  # this area shares its register (--fire-sharing register)
    page.get_by_role("link", name="Referrals").click()
    page.wait_for_url("**/ui/referrals")
    row = page.locator(f'#queue-table tr[data-person="{person}"]')
    row.wait_for()
    assert "shares its risk register" in page.locator("#sharing-note").inner_text()
    listed = api_json(live_service, "fire", "GET", "/v1/referrals")["referrals"]
    mine = next(r for r in listed if r["person_id"] == person)
    assert row.get_attribute("data-status") == mine["status"] == "referred"
    for reason in mine["reasons"]:
        assert (
            row.locator(f'li[data-feature="{reason["feature"]}"]').inner_text() == reason["label"]
        )
    row.get_by_role("button", name="Accept").click()
    accepted = page.locator(f'#queue-table tr[data-person="{person}"][data-status="accepted"]')
    accepted.wait_for()
    accepted.get_by_role("button", name="Record visit").click()
    accepted.get_by_label("Trip hazards found").check()
    accepted.get_by_label("Mobility concern").check()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "referral-queue.png"), full_page=True)
    accepted.get_by_role("button", name="Save visit").click()
    visited = page.locator(f'#queue-table tr[data-person="{person}"][data-status="visited"]')
    visited.wait_for()
    assert f"Visited (visit {dt.date.today().isoformat()})" in visited.inner_text()
    final = api_json(live_service, "fire", "GET", f"/v1/referrals/{mine['id']}")["referral"]
    assert final["findings"] == {"trip_hazards": True, "smoke_alarm_working": False,
                                 "smoker": False, "mobility_concern": True,
                                 "referral_made": False}  # fmt: skip
    assert [e["status"] for e in final["history"]] == ["referred", "accepted", "visited"]
    for body in watched.bodies:
        assert '"probability"' not in body
        assert not any(f'"{name}"' in body for name in CLINICAL)
    watched.check_clean(key)
    page.context.close()


def test_the_referral_pages_on_a_narrow_screen(
    live_service: LiveService,
    browser: Any,
    person: str,
) -> None:
    watched = watch(browser, NARROW)
    page = watched.page
    sign_in(watched, live_service.url, live_service.keys["fire"])
    page.wait_for_url("**/ui/register")
    page.goto(f"{live_service.url}/ui/referrals")
    page.locator("#queue-table tbody tr").first.wait_for()
    assert accessibility_problems(page) == []
    page.locator("#queue-table button").first.focus()
    assert page.evaluate("document.activeElement.tagName") == "BUTTON"

    sign_in(watched, live_service.url, live_service.keys["gp"])
    page.wait_for_url("**/ui/person")
    look_up(page, snapshot_people(live_service.home)["falls"][21])
    page.locator("#refer-form").wait_for()
    assert accessibility_problems(page) == []
    assert page.get_by_role("link", name="Referrals").count() == 0  # not a GP's page
    watched.check_clean(live_service.keys["gp"], live_service.keys["fire"])
    page.context.close()
