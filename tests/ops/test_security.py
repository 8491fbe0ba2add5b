"""Security: keys stored only as hashes, no personal data or values in logs, per-key rate limit,
request body limit, and role checks on every route for every role."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from features.home import Home
from serving.keys import KeyStore
from serving.roles import ROLES, ROUTE, ROUTE_ROLES, ROUTES, is_allowed
from tests.live import LiveService, snapshot_people

pytestmark = pytest.mark.server


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None
    params: dict[str, Any] | None = None


def route_calls(pid: str, practice: str) -> dict[str, Call]:
    """One valid-looking request per route of the route table (serving.roles.ROUTES), about
    person `pid` of `practice`; the method and path are the table's."""
    parts: dict[str, dict[str, Any]] = {
        "score": {"body": {"outcome": "falls", "person_ids": [pid]}},
        # a full feature record is long; an empty list is refused (422) only after the role check
        "score_records": {"body": {"outcome": "falls", "records": []}},
        "fhir": {"body": {"outcome": "falls", "person_id": pid}},
        "person": {"body": {"person_id": pid}},
        "register": {"params": {"outcome": "falls", "top": 3, "practice": practice}},
        "outcomes": {},
        "whoami": {},
        "reload_objections": {},
        "reload_service": {},  # the same champions and snapshot
        "audit_verify": {},
        "openapi": {},
        "metrics": {},
        # the referral routes: a referral nobody has is 404 to the roles allowed
        "referral_form": {},
        "referral_create": {"body": referral_body(pid)},
        "referral_queue": {},
        "referral_read": {},
        "referral_status": {"body": {"status": "closed"}},
    }
    return {
        name: Call(ROUTE[name].method, ROUTE[name].path.format(referral_id=NO_REFERRAL), **call)
        for name, call in parts.items()
    }


def referral_body(pid: str) -> dict[str, Any]:
    """A well-formed referral from a score that is not the one served (refused 409)."""
    return {
        "person_id": pid, "outcome": "falls", "receiving_org": "Test fire org",
        "score": {"model_version": "0", "index_date": "2000-01-01", "band": "none"},
        "agreement": {"recorded_by": "Dr Test", "recorded_at": "2025-01-01T00:00:00Z",
                      "agreed_to": ["contact_details", "reason_category"]},
    }  # fmt: skip


@dataclass(frozen=True)
class Walk:
    """The walk's person, the callers (a key per role, and GP keys scoped to practices) and
    their keys."""

    person: str
    practice: str
    keys: dict[str, str]


# GP keys with a practice scope: the person's own practice, and another practice only
SCOPED = {"gp_own_practice": "own", "gp_other_practice": "other"}
# the routes that look people up: a GP key for another practice gets 404 from them
PEOPLE_LOOKUPS = {"score", "fhir", "person", "register", "referral_create"}


@pytest.fixture(scope="module")
def walk(live_service: LiveService) -> Walk:
    with live_service.client("admin") as admin:
        register = admin.get("/v1/register", params={"outcome": "falls", "top": 200}).json()
    first = register["people"][0]
    other = next(p["practice_code"] for p in register["people"]
                 if p["practice_code"] != first["practice_code"])  # fmt: skip
    store = KeyStore.in_home(live_service.home)
    keys = dict(live_service.keys)
    for caller, which in SCOPED.items():
        practice = first["practice_code"] if which == "own" else other
        _, keys[caller] = store.add(f"Test {caller} org", "gp", practices=[practice])
    return Walk(first["person_ref"], first["practice_code"], keys)


def expected_answer(route: str, caller: str) -> set[int]:
    """What a caller's valid-looking request to a route is answered with."""
    role = "gp" if caller in SCOPED else caller
    if not is_allowed(route, role):
        return {403}
    if caller == "gp_other_practice" and route in PEOPLE_LOOKUPS:
        return {404}
    return ALLOWED_ANSWERS.get(route, {200})


# The routes open without a key (BentoML's probes: whether the process is up and ready), and
# what the origin answers elsewhere: the pages' redirect, and 404 for BentoML's own pages.
OPEN = {"/livez": 200, "/readyz": 200}
ELSEWHERE = {
    "/": 307, "/ui": 307, "/docs.json": 404, "/schema.json": 404, "/healthz": 404,
    "/static_content/index.css": 404, "/assets/index.js": 404, "/docs": 404,
    "/v1/docs": 401, "/v1/nothing": 401,
}  # fmt: skip
UNLISTED = {r.path for r in ROUTES if not r.listed}  # keyed routes the OpenAPI document omits
NO_REFERRAL = "ref-" + "0" * 24
ALLOWED_ANSWERS = {"score_records": {200, 422}, "referral_create": {409},
                   "referral_read": {404}, "referral_status": {404}}  # fmt: skip


def send(client: httpx.Client, call: Call) -> httpx.Response:
    return client.request(call.method, call.path, json=call.body, params=call.params)


def test_the_walk_covers_every_route(live_service: LiveService, walk: Walk) -> None:
    calls = route_calls(walk.person, walk.practice)
    assert set(calls) == set(ROUTE_ROLES)
    with live_service.client("gp") as client:
        served = set(client.get("/v1/openapi.json").json()["paths"])
    walked = {c.path.replace(NO_REFERRAL, "{referral_id}") for c in calls.values()}
    assert walked == {"/v1" + p for p in served} | UNLISTED


def test_every_route_with_every_role(live_service: LiveService, walk: Walk) -> None:
    """Each route with no key, with each role's key and with GP keys scoped to the person's
    practice and to another practice."""
    calls = route_calls(walk.person, walk.practice)
    wrong: list[str] = []
    for route, call in calls.items():
        with live_service.client() as anonymous:
            if send(anonymous, call).status_code != 401:
                wrong.append(f"{route} without a key")
        for caller in (*ROLES, *SCOPED):
            headers = {"Authorization": f"Bearer {walk.keys[caller]}"}
            with httpx.Client(base_url=live_service.url, headers=headers, timeout=30) as client:
                status = send(client, call).status_code
            expected = expected_answer(route, caller)
            if status not in expected:
                wrong.append(f"{route} as {caller}: {status}, expected {sorted(expected)}")
    for path, status in {**OPEN, **ELSEWHERE}.items():
        for role in (None, *ROLES):
            with live_service.client(role) as client:
                answered = client.get(path).status_code
            want = 404 if role and path in ("/v1/docs", "/v1/nothing") else status
            if answered != want:
                wrong.append(f"{path} as {role}: {answered}, expected {want}")
    assert not wrong, "\n".join(wrong)


def test_keys_are_stored_only_as_hashes(live_service: LiveService) -> None:
    stored = Home(live_service.home).keys_path.read_text()
    records = json.loads(stored)["keys"]
    hashes = {r["key_hash"] for r in records}
    for role, key in live_service.keys.items():
        secret = secret_of(key)
        assert secret not in stored, f"the {role} key's secret is in keys.json"
        assert hashlib.sha256(key.encode()).hexdigest() in hashes
    for path in files_of(live_service.home):
        data = path.read_bytes()
        leaked = [r for r, k in live_service.keys.items() if secret_of(k).encode() in data]
        assert not leaked, f"{path} holds the secret of {leaked}"


def secret_of(key: str) -> str:
    """The secret part of crk_<id>_<secret>; the secret itself may hold underscores."""
    secret = key.split("_", 2)[2]
    assert len(secret) >= 40, key
    return secret


def files_of(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_file()]


def test_logs_hold_no_person_ids_or_values(live_service: LiveService) -> None:
    """A served session over every scoring route, then grep every log for what it returned."""
    people = snapshot_people(live_service.home)["falls"][:20]
    returned = served_session(live_service, people)
    values = {f"{p:.6f}" for p in returned["probabilities"]} | {
        repr(p) for p in returned["probabilities"]
    }
    logs = [live_service.log()] + [p.read_text(errors="replace") for p in log_files(live_service)]
    text = "\n".join(logs)
    assert "/v1/score" in text  # the log is the server's, with its access lines
    found = [s for s in [*returned["ids"], *values, *returned["labels"]] if s in text]
    assert not found, f"logs hold returned data: {found[:10]}"


def log_files(service: LiveService) -> list[Path]:
    home = service.home
    return [
        p
        for p in files_of(home)
        if p.suffix in {".log", ".txt", ".out"} and "bundle" not in p.parts
    ]


def served_session(service: LiveService, people: list[str]) -> dict[str, set[Any]]:
    probabilities: set[float] = set()
    labels: set[str] = set()
    ids: set[str] = set(people)
    with service.client("gp") as gp, service.client("fire") as fire:
        batch = gp.post("/v1/score", json={"outcome": "falls", "person_ids": people}).json()
        for result in batch["results"]:
            probabilities.add(result["probability"])
            labels.update(r["label"] for r in result["reasons"] if r["value"] is not None)
        for pid in people[:5]:
            assert gp.post("/v1/person", json={"person_id": pid}).status_code == 200
            assert fire.post("/v1/person", json={"person_id": pid}).status_code == 200
            fhir = {"outcome": "falls", "person_id": pid}
            assert gp.post("/v1/fhir/risk-assessment", json=fhir).status_code == 200
        register = gp.get("/v1/register", params={"outcome": "falls", "top": 10}).json()
        ids.update(p["person_ref"] for p in register["people"])
        probabilities.update(p["probability"] for p in register["people"])
        unknown = "Zz" + people[0]  # a well-formed id nobody has: refused 404, audited
        assert gp.post("/v1/score", json=score_body([unknown])).status_code == 404
        malformed = "!" + people[0]  # breaks the id pattern: 422 from validation
        assert gp.post("/v1/score", json=score_body([malformed])).status_code == 422
        ids.update({unknown, malformed})
    return {"ids": ids, "probabilities": probabilities, "labels": labels}


def score_body(ids: list[str]) -> dict[str, Any]:
    return {"outcome": "falls", "person_ids": ids}


def test_rate_limit_answers_429_with_retry_after(live_service: LiveService) -> None:
    """A fresh key hammered from 8 threads: past its burst it gets 429 with Retry-After.
    (The default limit is 50 a second with a burst of 100; `carerisk serve` has no option for
    it, so the test sends until it is refused, at most 2,000 requests.)"""
    _, key = KeyStore.in_home(live_service.home).add("Rate test org", "gp", all_practices=True)
    refused: list[httpx.Response] = []

    def burst(_: int) -> None:
        with httpx.Client(base_url=live_service.url, timeout=30) as client:
            for _ in range(250):
                if refused:
                    return
                response = client.get("/v1/whoami", headers={"Authorization": f"Bearer {key}"})
                if response.status_code == 429:
                    refused.append(response)
                else:
                    assert response.status_code == 200

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(burst, range(8)))
    assert refused, "2,000 quick requests with one key were never rate limited"
    response = refused[0]
    assert response.json()["error"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1
    with live_service.client("gp") as other:  # the limit is per key
        assert other.get("/v1/whoami").status_code == 200


def big_body(service: LiveService) -> bytes:
    people = snapshot_people(service.home)["falls"]
    ids = (people * (3_000_000 // (len(people) * 16) + 1))[:200_000]
    body = json.dumps(score_body(ids)).encode()
    assert len(body) > 2_000_000  # the default limit
    return body


JSON = {"Content-Type": "application/json"}


def test_body_limit_413(live_service: LiveService) -> None:
    with live_service.client("gp") as client:
        response = client.post("/v1/score", content=big_body(live_service), headers=JSON)
    assert response.status_code == 413, response.text[:200]
    assert response.json()["error"] == "body_too_large"


def test_body_limit_413_when_chunked(live_service: LiveService) -> None:
    """No Content-Length: the limit must still hold while the body streams in."""
    body = big_body(live_service)
    with live_service.client("gp") as client:
        response = client.post("/v1/score", content=iter([body[:1_000_000], body[1_000_000:]]),
                               headers=JSON)  # fmt: skip
    assert response.status_code == 413, response.text[:200]
