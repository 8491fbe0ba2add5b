"""The referral routes and the CDS Hooks service on the suite's live server (a real BentoML
server on loopback): every route with every role (none, gp, a GP organisation that did not make
the referral, the receiving fire organisation, another fire organisation, analyst, admin), for
status codes and for what each answer reveals; refusals; the audit of every move, refusal and
read; and the CDS Hooks service called with the specification's own patient-view example."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from features.feature_list import FEATURES
from features.home import Home
from serving.audit import AuditLog, AuditRecord
from serving.jwt_auth import CdsClients
from serving.keys import KeyStore
from tests.live import LiveService, keyed_since, snapshot_people
from tests.serving.cds_spec import (
    SPEC_PATIENT_ID,
    SigningClient,
    discovery_problems,
    response_problems,
    spec_request,
    unsigned_token,
)

pytestmark = [pytest.mark.server]

CLINICAL = [f.name for f in FEATURES if f.clinical]
FINDINGS = {"trip_hazards": True, "smoke_alarm_working": False, "smoker": False,
            "mobility_concern": True, "referral_made": True}  # fmt: skip


@dataclass
class Cast:
    """A key for each part the walk needs (the live service's own keys, and two more orgs)."""

    keys: dict[str, str | None]
    receiving_org: str
    url: str

    def client(self, who: str) -> httpx.Client:
        key = self.keys[who]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def call(self, who: str, method: str, path: str, **kw: Any) -> httpx.Response:
        with self.client(who) as client:
            return client.request(method, path, **kw)


@pytest.fixture(scope="module")
def cast(live_service: LiveService) -> Cast:
    store = KeyStore.in_home(live_service.home)
    _, other_fire = store.add("Other fire org", "fire")
    _, other_gp = store.add("Other surgery", "gp", all_practices=True)
    keys = {
        "none": None, "gp": live_service.keys["gp"], "other_gp": other_gp,
        "fire": live_service.keys["fire"], "other_fire": other_fire,
        "analyst": live_service.keys["analyst"], "admin": live_service.keys["admin"],
        "monitor": live_service.keys["monitor"],
    }  # fmt: skip
    return Cast(keys, "Test fire org", live_service.url)


@pytest.fixture(scope="module")
def people(live_service: LiveService) -> dict[str, list[str]]:
    return snapshot_people(live_service.home)


def agreement() -> dict[str, Any]:
    return {"recorded_by": "Dr A Patel, GP", "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
            "agreed_to": ["contact_details", "reason_category"]}  # fmt: skip


def refer(cast: Cast, person: str, who: str = "gp", **changes: Any) -> httpx.Response:
    """A referral made from the score served now (as a page would, after reading it); for a
    person with no score, from a made-up one."""
    with cast.client("gp") as gp:
        score = gp.post("/v1/score", json={"outcome": "falls", "person_ids": [person]})
    basis = {"model_version": "1", "index_date": "2025-04-01", "band": "high"}
    if score.status_code == 200:
        basis = {k: score.json()["results"][0][k] for k in basis}
    body = {"person_id": person, "outcome": "falls", "score": basis,
            "receiving_org": cast.receiving_org, "agreement": agreement(), **changes}  # fmt: skip
    return cast.call(who, "POST", "/v1/referrals", json=body)


@pytest.fixture(scope="module")
def referral(cast: Cast, people: dict[str, list[str]]) -> dict[str, Any]:
    made = refer(cast, people["falls"][5])
    assert made.status_code == 201, made.text
    return dict(made.json())


# --- the walk ----------------------------------------------------------------------------------

WHO = ("none", "gp", "other_gp", "fire", "other_fire", "analyst", "admin", "monitor")
# route -> the status each party gets for the walk's request about `referral`
EXPECTED = {
    "form": {"none": 401, "gp": 200, "other_gp": 200, "fire": 403, "other_fire": 403,
             "analyst": 403, "admin": 200, "monitor": 403},
    "queue": {"none": 401, "gp": 403, "other_gp": 403, "fire": 200, "other_fire": 200,
              "analyst": 403, "admin": 200, "monitor": 403},
    "read": {"none": 401, "gp": 200, "other_gp": 404, "fire": 200, "other_fire": 404,
             "analyst": 403, "admin": 200, "monitor": 403},
    "status": {"none": 401, "gp": 403, "other_gp": 403, "fire": 200, "other_fire": 404,
               "analyst": 403, "admin": 403, "monitor": 403},
    "create": {"none": 401, "gp": 409, "other_gp": 409, "fire": 403, "other_fire": 403,
               "analyst": 403, "admin": 403, "monitor": 403},
}  # fmt: skip


def walk_call(route: str, referral: dict[str, Any], person: str) -> tuple[str, str, dict[str, Any]]:
    rid = referral["referral"]["id"]
    body = {"person_id": person, "outcome": "falls", "receiving_org": "Test fire org",
            "score": {"model_version": "0", "index_date": "2000-01-01", "band": "none"},
            "agreement": agreement()}  # fmt: skip
    return {
        "form": ("GET", "/v1/referrals/form", {}),
        "queue": ("GET", "/v1/referrals", {}),
        "read": ("GET", f"/v1/referrals/{rid}", {}),
        # fire's accept is the move; everyone else's attempt must leave it as it was
        "status": ("POST", f"/v1/referrals/{rid}/status", {"json": {"status": "accepted"}}),
        "create": ("POST", "/v1/referrals", {"json": body}),  # a stale score: 409 to GPs
    }[route]


def test_every_referral_route_with_every_party(
    cast: Cast, referral: dict[str, Any], people: dict[str, list[str]], live_service: LiveService
) -> None:
    log = AuditLog.in_home(live_service.home)
    wrong: list[str] = []
    # the receiving fire service goes last on the status route, so the others meet "referred"
    order = [w for w in WHO if w != "fire"] + ["fire"]
    for route, statuses in EXPECTED.items():
        for who in order:
            before = log.count()
            method, path, kw = walk_call(route, referral, people["falls"][6])
            answer = cast.call(who, method, path, **kw)
            if answer.status_code != statuses[who]:
                wrong.append(f"{route} as {who}: {answer.status_code} {answer.text[:200]}")
            # one record for each keyed call; keyless refusals are audited in groups, up to a
            # second later (serving/refusals.py), so they are not counted here
            records = len(keyed_since(log, before))
            if records != (0 if who == "none" else 1):
                wrong.append(f"{route} as {who}: {records} keyed audit records")
            reveals(route, who, answer, referral, wrong)
    assert not wrong, "\n".join(wrong)
    history = cast.call("admin", "GET", f"/v1/referrals/{referral['referral']['id']}").json()
    assert [e["status"] for e in history["referral"]["history"]] == ["referred", "accepted"]


def reveals(route: str, who: str, answer: httpx.Response, referral: dict[str, Any],
            wrong: list[str]) -> None:  # fmt: skip
    """What an answer shows: no probability or clinical reason to anyone, nothing of another
    organisation's referral, key ids only to the admin."""
    text, rid = answer.text, referral["referral"]["id"]
    person = referral["referral"]["person_id"]
    if '"probability"' in text or any(f'"{name}"' in text for name in CLINICAL):
        wrong.append(f"{route} as {who} shows a probability or a clinical reason")
    if answer.status_code in (401, 403, 404) and (rid in text or person in text):
        wrong.append(f"{route} as {who} was refused but names the referral or the person")
    if route == "queue" and answer.status_code == 200:
        ids = [r["id"] for r in answer.json()["referrals"]]
        if (rid in ids) != (who in ("fire", "admin")):
            wrong.append(f"queue as {who}: the referral is {'' if rid in ids else 'not '}listed")
        if who == "other_fire" and person in text:
            wrong.append("another fire organisation's queue names the person")
    if route == "read" and answer.status_code == 200:
        body = answer.json()["referral"]
        if ("referred_by" in body) != (who == "admin"):
            wrong.append(f"read as {who}: key ids shown to the wrong party")
        if body["agreement"]["agreed_to"] != ["contact_details", "reason_category"]:
            wrong.append(f"read as {who}: the agreement is missing")


def test_the_referral_and_its_service_request(
    cast: Cast, referral: dict[str, Any], live_service: LiveService
) -> None:
    from fhir.resources.R4B.servicerequest import ServiceRequest

    made, request = referral["referral"], referral["service_request"]
    assert made["referring_org"] == "Test gp org" and made["receiving_org"] == "Test fire org"
    assert made["agreement"]["recorded_by"] == "Dr A Patel, GP" and made["agreement"]["wording"]
    assert all(not any(f'"{n}"' in json.dumps(r) for n in CLINICAL) for r in made["reasons"])
    parsed = ServiceRequest.model_validate(request)
    assert (parsed.intent, parsed.status, parsed.id) == ("order", "active", made["id"])
    assert parsed.performer[0].display == "Test fire org"  # type: ignore[index]
    assert parsed.subject.identifier.value == made["person_id"]  # type: ignore[union-attr]
    with cast.client("gp") as gp:
        score = gp.post("/v1/score", json={"outcome": "falls", "person_ids": [made["person_id"]]})
    assert made["band"] == score.json()["results"][0]["band"]


def test_refusals_say_why_and_are_audited(
    cast: Cast, people: dict[str, list[str]], live_service: LiveService, objecting: str
) -> None:
    log = AuditLog.in_home(live_service.home)
    young = people["complex_dependency"][-1]  # outside the falls cohort
    person = people["falls"][7]
    start = log.count()
    cases = [
        (refer(cast, objecting), 451, "ObjectedPeople"),
        (refer(cast, "Pnobody000000"), 404, "UnknownPeople"),
        (refer(cast, person, receiving_org="Nobody's fire org"), 422, "unknown_receiver"),
    ]
    before = log.count()
    no_agreement = cast.call("gp", "POST", "/v1/referrals", json={
        "person_id": person, "outcome": "falls", "receiving_org": "Test fire org",
        "score": {"model_version": "1", "index_date": "2025-04-01", "band": "high"},
    })  # fmt: skip
    assert no_agreement.status_code == 422
    assert "body.agreement" in [f["path"] for f in no_agreement.json()["fields"]]
    assert [r.endpoint for r in keyed_since(log, before)] == ["referral_create"]
    with cast.client("gp") as gp:
        outside = gp.post("/v1/referrals", json={
            "person_id": young, "outcome": "falls", "receiving_org": "Test fire org",
            "score": {"model_version": "1", "index_date": "2025-04-01", "band": "high"},
            "agreement": agreement(),
        })  # fmt: skip
    cases.append((outside, 422, "OutsideCohort"))
    first = refer(cast, person)
    assert first.status_code == 201
    cases.append((refer(cast, person), 409, "already_referred"))
    for answer, status, error in cases:
        assert answer.status_code == status, answer.text
        assert answer.json()["error"] == error
    made = [r for r in keyed_since(log, start) if r.endpoint == "referral_create"]
    assert [(r.status, r.outcome) for r in made] == [
        (451, "refused"), (404, "refused"), (422, "unknown_receiver"), (422, "invalid"),
        (422, "refused"), (201, "ok"), (409, "already_referred"),
    ]  # fmt: skip


def test_a_duplicate_names_no_other_organisations_referral(
    cast: Cast, people: dict[str, list[str]], live_service: LiveService
) -> None:
    """Another surgery, and another fire service, meet the one open check: 409 naming nothing
    of it; the referrer itself is told which of its own is open."""
    person = people["falls"][12]
    made = refer(cast, person)
    assert made.status_code == 201, made.text
    rid = made.json()["referral"]["id"]
    other_gp = refer(cast, person, who="other_gp")
    other_fire = refer(cast, person, receiving_org="Other fire org")
    assert (other_gp.status_code, other_gp.json()["error"]) == (409, "already_referred")
    assert rid not in other_gp.text and "Test fire org" not in other_gp.text
    assert "referred" not in other_gp.json()["message"].split()
    assert (other_fire.status_code, other_fire.json()["error"]) == (409, "already_referred")
    assert rid in other_fire.text  # the same surgery's own referral


def test_the_falls_check_only_under_an_outcome_that_leads_to_it(
    cast: Cast, people: dict[str, list[str]], live_service: LiveService
) -> None:
    """A person outside the falls cohort referred under complex dependency: 422, nothing
    stored, audited; the CDS card of that outcome offers no referral either."""
    log = AuditLog.in_home(live_service.home)
    young = people["complex_dependency"][-1]
    with cast.client("gp") as gp:
        score = gp.post("/v1/score", json={"outcome": "complex_dependency",
                                           "person_ids": [young]})  # fmt: skip
        basis = {k: score.json()["results"][0][k] for k in ("model_version", "index_date",
                                                           "band")}  # fmt: skip
    before = log.count()
    answer = refer(cast, young, outcome="complex_dependency", score=basis)
    assert (answer.status_code, answer.json()["error"]) == (422, "not_referable"), answer.text
    assert "complex dependency" in answer.json()["message"]
    assert [
        (r.endpoint, r.outcome, r.status)
        for r in keyed_since(log, before)
        if r.endpoint == "referral_create"
    ] == [("referral_create", "not_referable", 422)]
    with cast.client("admin") as admin:
        listed = admin.get("/v1/referrals", params={"limit": 200}).json()["referrals"]
    assert young not in {r["person_id"] for r in listed}


def test_visit_findings_take_only_json_booleans(cast: Cast, referral: dict[str, Any]) -> None:
    rid = referral["referral"]["id"]
    visit = {"status": "visited", "visit_date": dt.date.today().isoformat(),
             "findings": {**FINDINGS, "smoker": "yes"}}  # fmt: skip
    answer = cast.call("fire", "POST", f"/v1/referrals/{rid}/status", json=visit)
    assert answer.status_code == 422, answer.text
    assert "body.findings.smoker" in [f["path"] for f in answer.json()["fields"]]


def test_the_agreement_time_rule_is_in_the_openapi_document(live_service: LiveService) -> None:
    with live_service.client("admin") as admin:
        document = admin.get("/v1/openapi.json").json()
    agreement = document["components"]["schemas"]["AgreementIn"]["properties"]["recorded_at"]
    assert agreement["x-not-after"] == "now" and "not in the future" in agreement["description"]


@pytest.fixture
def objecting(live_service: LiveService, people: dict[str, list[str]]) -> Iterator[str]:
    path = Home(live_service.home).objections_path
    before = path.read_bytes() if path.exists() else None
    person = people["falls"][8]
    path.write_text("person_id\n" + person + "\n", encoding="utf-8")
    with live_service.client("admin") as admin:
        assert admin.post("/v1/admin/objections/reload").status_code == 200
        try:
            yield person
        finally:
            if before is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(before)
            assert admin.post("/v1/admin/objections/reload").status_code == 200


def test_moves_the_state_machine_refuses_are_409_and_audited(
    cast: Cast, people: dict[str, list[str]], live_service: LiveService
) -> None:
    rid = refer(cast, people["falls"][9]).json()["referral"]["id"]
    log = AuditLog.in_home(live_service.home)
    moves = [
        ({"status": "visited", "visit_date": dt.date.today().isoformat(), "findings": FINDINGS},
         409),  # not accepted yet
        ({"status": "accepted"}, 200),
        ({"status": "visited"}, 422),  # no findings
        ({"status": "visited", "visit_date": "2000-01-01", "findings": FINDINGS}, 422),
        ({"status": "visited", "visit_date": dt.date.today().isoformat(), "findings": FINDINGS},
         200),
        ({"status": "accepted"}, 409),
        ({"status": "closed"}, 200),
        ({"status": "declined"}, 409),
    ]  # fmt: skip
    before = log.count()
    for body, status in moves:
        answer = cast.call("fire", "POST", f"/v1/referrals/{rid}/status", json=body)
        assert answer.status_code == status, (body, answer.text)
    records = keyed_since(log, before)
    assert [r.status for r in records] == [s for _, s in moves]
    assert [r.outcome for r in records if r.status == 200] == ["to_accepted", "to_visited",
                                                               "to_closed"]  # fmt: skip
    final = cast.call("fire", "GET", f"/v1/referrals/{rid}").json()["referral"]
    assert final["status"] == "closed" and final["findings"] == FINDINGS
    assert final["moves"] == []


def test_fire_reads_are_audited_with_the_sharing_that_applied(
    cast: Cast, live_service: LiveService, referral: dict[str, Any]
) -> None:
    log = AuditLog.in_home(live_service.home)
    top = {"outcome": "falls", "top": 3}
    calls = [("fire", "/v1/referrals", {}, "ok_register"),
             ("fire", "/v1/register", top, "ok_register"),
             ("gp", "/v1/register", top, "ok")]  # fmt: skip
    for who, path, params, outcome in calls:
        before = log.count()
        answer = cast.call(who, "GET", path, params=params)
        assert answer.status_code == 200
        assert [r.outcome for r in keyed_since(log, before)] == [outcome], (who, path)
    assert cast.call("fire", "GET", "/v1/referrals").json()["sharing"] == "register"


# --- CDS Hooks on the live server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cds(live_service: LiveService, people: dict[str, list[str]]) -> Iterator[SigningClient]:
    """A registered test client, and the specification's patientId mapped to a falls person."""
    home = Home(live_service.home)
    client = SigningClient()
    CdsClients(home.cds_clients_path).add(client.iss, "Test gp org EHR", client.jwks())
    lookup = home.cds_patients_path
    before = lookup.read_text(encoding="utf-8") if lookup.exists() else "patient_id,person_id\n"
    lookup.write_text(before + f"{SPEC_PATIENT_ID},{people['falls'][10]}\n", encoding="utf-8")
    try:
        yield client
    finally:
        lookup.write_text(before, encoding="utf-8")
        CdsClients(home.cds_clients_path).remove(client.iss)


def cds_since(log: AuditLog, before: int) -> list[AuditRecord]:
    """The audit records of CDS Hooks calls after seq `before` (the API's keyless refusals are
    written in groups and may land in between)."""
    return [r for r in log.since(before) if r.endpoint.startswith("cds_")]


def service_url(live: LiveService, service: str = "carerisk-falls") -> str:
    return f"{live.url}/cds-services/{service}"


def test_the_specifications_patient_view_example_gets_a_valid_card(
    live_service: LiveService, cds: SigningClient, people: dict[str, list[str]], cast: Cast
) -> None:
    url = service_url(live_service)
    discovery = httpx.get(f"{live_service.url}/cds-services",
                          headers=cds.bearer(f"{live_service.url}/cds-services"))  # fmt: skip
    assert discovery.status_code == 200 and discovery_problems(discovery.json()) == []
    assert {s["id"] for s in discovery.json()["services"]} == {
        "carerisk-falls", "carerisk-complex-dependency"
    }  # fmt: skip
    before = AuditLog.in_home(live_service.home).count()
    answer = httpx.post(url, json=spec_request(), headers=cds.bearer(url))
    assert answer.status_code == 200, answer.text
    assert response_problems(answer.json()) == []
    [card] = answer.json()["cards"]
    person = people["falls"][10]
    with cast.client("gp") as gp:
        score = gp.post("/v1/score", json={"outcome": "falls", "person_ids": [person]})
    result = score.json()["results"][0]
    assert (
        result["band"] in card["summary"]
        and f"{result['probability'] * 100:.0f}%" in card["summary"]
    )
    assert result["model_version"] in card["source"]["label"]
    assert card["links"][0]["url"] == f"{live_service.url}/ui/person#{person}"
    assert (
        card["suggestions"][0]["label"] == "Offer a home safety and falls check by the fire service"
    )
    record = cds_since(AuditLog.in_home(live_service.home), before)[-1]
    assert (record.endpoint, record.role, record.org, record.person_ids) == (
        "cds_service", "cds_client", "Test gp org EHR", (person,)
    )  # fmt: skip


@pytest.mark.parametrize("case", ["missing", "unsigned", "expired", "replayed", "wrong_aud",
                                  "discovery_aud", "other_port"])  # fmt: skip
def test_a_bad_client_token_is_401(
    live_service: LiveService, cds: SigningClient, case: str
) -> None:
    url = service_url(live_service)
    other = url.replace(f":{live_service.port}/", ":1/")
    replayed = cds.token(url)
    assert httpx.post(url, json=spec_request(), headers={"Authorization": f"Bearer {replayed}"}
                      ).status_code == 200  # fmt: skip
    headers = {
        "missing": {},
        "unsigned": {"Authorization": f"Bearer {unsigned_token(url, cds.iss, cds.kid)}"},
        "expired": cds.bearer(url, exp=1_400_000_000, iat=1_399_999_990),
        "replayed": {"Authorization": f"Bearer {replayed}"},
        "wrong_aud": cds.bearer(service_url(live_service, "carerisk-complex-dependency")),
        "discovery_aud": cds.bearer(f"{live_service.url}/cds-services"),
        "other_port": cds.bearer(other),
    }[case]
    before = AuditLog.in_home(live_service.home).count()
    answer = httpx.post(url, json=spec_request(), headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer" and "cards" not in answer.text
    assert answer.json()["error"] == "unauthenticated"
    time.sleep(1.5)  # refusals are audited in groups, once a second (serving/refusals.py)
    records = cds_since(AuditLog.in_home(live_service.home), before)
    assert [(r.endpoint, r.outcome, r.status) for r in records] == [
        ("cds_service", "unauthenticated", 401)
    ]


def test_the_cds_audience_and_links_are_never_the_host_header(
    live_service: LiveService, cds: SigningClient
) -> None:
    evil = "http://evil.example/cds-services/carerisk-falls"
    forged = httpx.post(service_url(live_service), json=spec_request(),
                        headers={**cds.bearer(evil), "Host": "evil.example"})  # fmt: skip
    assert forged.status_code == 401 and "evil.example" not in forged.text.replace(evil, "")
    url = service_url(live_service)
    host = {**cds.bearer(url), "Host": "evil.example"}
    answer = httpx.post(url, json=spec_request(), headers=host)
    assert answer.status_code == 200, answer.text
    [card] = answer.json()["cards"]
    assert card["links"][0]["url"].startswith(f"{live_service.url}/ui/person#")


def test_cds_errors_use_the_apis_error_body(live_service: LiveService, cds: SigningClient) -> None:
    url = service_url(live_service)
    keyless = httpx.post(url, content=b'{"hook":', headers={"content-type": "application/json"})
    assert keyless.status_code == 401 and set(keyless.json()) == {"error", "message"}
    broken = httpx.post(url, content=b'{"hook":', headers={**cds.bearer(url),
                        "content-type": "application/json"})  # fmt: skip
    assert broken.status_code == 422 and broken.json()["error"] == "invalid_request"
    assert {"path", "message", "type"} <= set(broken.json()["fields"][0])
    nothing = f"{live_service.url}/cds-services/nothing"
    unknown = httpx.post(nothing, json=spec_request(), headers=cds.bearer(nothing))
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    assert "message" in unknown.json()


def test_an_api_key_is_not_a_cds_clients_token(live_service: LiveService, cast: Cast) -> None:
    """Every party's API key, at both CDS Hooks routes: 401, nothing shown, nothing scored."""
    wrong = []
    for who in WHO:
        for method, path in (("GET", "/cds-services"), ("POST", "/cds-services/carerisk-falls")):
            body = spec_request() if method == "POST" else None
            answer = cast.call(who, method, path, json=body)
            if answer.status_code != 401 or "cards" in answer.text or "services" in answer.text:
                wrong.append(f"{method} {path} as {who}: {answer.status_code}")
    assert not wrong, wrong


def test_empty_cards_outside_the_cohort_or_the_lookup(
    live_service: LiveService, cds: SigningClient, people: dict[str, list[str]]
) -> None:
    home = Home(live_service.home)
    young = people["complex_dependency"][-1]
    url = service_url(live_service)
    lookup = home.cds_patients_path
    before = lookup.read_text(encoding="utf-8")
    lookup.write_text(before + f"young-1,{young}\n", encoding="utf-8")
    try:
        cases = {
            "outside the cohort": spec_request(patientId="young-1"),
            "not in the lookup": spec_request(patientId="999999"),
            "a patient viewing their record": spec_request(userId=f"Patient/{SPEC_PATIENT_ID}"),
        }
        for case, body in cases.items():
            answer = httpx.post(url, json=body, headers=cds.bearer(url))
            assert answer.status_code == 200 and answer.json() == {"cards": []}, case
        other = service_url(live_service, "carerisk-complex-dependency")
        young_cd = httpx.post(
            other, json=spec_request(patientId="young-1"), headers=cds.bearer(other)
        )
        assert len(young_cd.json()["cards"]) == 1  # in that outcome's cohort
    finally:
        lookup.write_text(before, encoding="utf-8")
    bad = httpx.post(url, json={**spec_request(), "hook": "order-sign"}, headers=cds.bearer(url))
    assert bad.status_code == 422
    nothing = f"{live_service.url}/cds-services/nothing"
    unknown = httpx.post(nothing, json=spec_request(), headers=cds.bearer(nothing))
    assert unknown.status_code == 404


def test_empty_cards_for_a_person_who_objected(
    live_service: LiveService, cds: SigningClient, people: dict[str, list[str]]
) -> None:
    path = Home(live_service.home).objections_path
    before = path.read_bytes() if path.exists() else None
    url = service_url(live_service)
    path.write_text("person_id\n" + people["falls"][10] + "\n", encoding="utf-8")
    with live_service.client("admin") as admin:
        admin.post("/v1/admin/objections/reload")
        try:
            log = AuditLog.in_home(live_service.home)
            seq = log.count()
            answer = httpx.post(url, json=spec_request(), headers=cds.bearer(url))
            assert answer.json() == {"cards": []}
            assert [r.outcome for r in cds_since(log, seq)] == ["objected"]
        finally:
            if before is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(before)
            admin.post("/v1/admin/objections/reload")


def test_the_card_tells_of_an_open_referral_instead_of_suggesting_one(
    live_service: LiveService, cds: SigningClient, people: dict[str, list[str]], cast: Cast
) -> None:
    made = refer(cast, people["falls"][10])
    assert made.status_code in (201, 409), made.text
    url = service_url(live_service)
    [card] = httpx.post(url, json=spec_request(), headers=cds.bearer(url)).json()["cards"]
    assert "suggestions" not in card and "Referred to Test fire org" in card["detail"]
    assert response_problems({"cards": [card]}) == []


def test_cds_preflight_without_allowed_origins_grants_nothing(live_service: LiveService) -> None:
    answer = httpx.options(
        f"{live_service.url}/cds-services",
        headers={"Origin": "https://ehr.example.org", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in answer.headers


def test_a_client_removed_is_refused(live_service: LiveService, tmp_path: Path) -> None:
    home = Home(live_service.home)
    gone = SigningClient(iss="https://gone.example.org/")
    CdsClients(home.cds_clients_path).add(gone.iss, "Gone", gone.jwks())
    url = f"{live_service.url}/cds-services"
    assert httpx.get(url, headers=gone.bearer(url)).status_code == 200
    CdsClients(home.cds_clients_path).remove(gone.iss)
    assert httpx.get(url, headers=gone.bearer(url)).status_code == 401
