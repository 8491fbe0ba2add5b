"""End-to-end: a real `carerisk serve` (BentoML) on loopback against a trained demo home.

Each role against each route, scores equal to the champion bundle loaded in another process,
SHAP additivity, the fire role's restricted view, objections, FHIR validity and the audit trail.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from fhir.resources.R4B.riskassessment import RiskAssessment

from features.feature_list import FEATURES
from features.home import Home
from serving.audit import AuditLog
from serving.jwt_auth import CdsClients
from serving.keys import KeyStore
from serving.roles import ROLES, ROUTE, ROUTE_ROLES, ROUTES
from tests import live
from tests.live import ROOT, LiveService, keyed_since, snapshot_people
from tests.serving.builders import label_features
from tests.serving.cds_spec import SigningClient, spec_request

pytestmark = [pytest.mark.server, pytest.mark.slow]

CLINICAL = [f for f in FEATURES if f.clinical]
# a referral id nobody has: the referral routes answer 404 to the roles allowed them
NO_REFERRAL = "ref-" + "0" * 24
# what a role allowed a route answers the walk's request with (200 unless said here)
ALLOWED_ANSWERS = {
    "referral_create": {409},  # the walk's score is not the one served: a stale score
    "referral_read": {404},
    "referral_status": {404},
}
WRONG_KEYS = {
    "malformed": "not-a-key",
    "unknown": "crk_000000000000_" + "A" * 43,
}

# Loads the champions the service uses from its BentoML store. BentoML reads BENTOML_HOME when
# it is first imported, so this runs in a fresh interpreter.
IN_PROCESS = r"""
import json, os, sys
from pathlib import Path

from features.home import Home
from features.outcomes import PRODUCT

home, asked = Home(Path(sys.argv[1])), json.loads(sys.argv[2])
os.environ["BENTOML_HOME"] = str(home.bentoml_home)
from features.snapshot import read_snapshot
from serving.model_store import load_champions
from serving.config import ServingConfig

top_k = ServingConfig.model_fields["top_k"].default
served = load_champions(home, [PRODUCT.get(o) for o in asked])
out = {}
for outcome, ids in asked.items():
    bundle = served[outcome].bundle
    rows = read_snapshot(home.store_path, ids).set_index("person_id", drop=False)
    rows = rows.loc[ids].reset_index(drop=True)
    out[outcome] = {
        "version": served[outcome].version,
        "probability": bundle.predict(rows).tolist(),
        "band": list(bundle.band(rows)),
        "reasons": [[r.model_dump() for r in rs] for rs in bundle.explain(rows, top_k=top_k)],
        "raw": bundle.raw_score(rows).tolist(),
        "contributions": bundle.contributions(rows).tolist(),
        "features": bundle.feature_names,
    }
print(json.dumps(out))
"""


# --- helpers ---------------------------------------------------------------------------------


def in_process(home: Path, asked: dict[str, list[str]]) -> dict[str, Any]:
    command = [sys.executable, "-c", IN_PROCESS, str(home), json.dumps(asked)]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=live.child_env(), timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def route_call(route: str, person: str) -> tuple[str, str, dict[str, Any]]:
    """(method, path, httpx keyword arguments) of a valid request to each named route: the
    method and path of the route table (serving.roles.ROUTES), the request's parts here."""
    parts: dict[str, dict[str, Any]] = {
        "score": {"json": {"outcome": "falls", "person_ids": [person]}},
        "score_records": {"json": {"outcome": "falls", "records": [record_of()]}},
        "fhir": {"json": {"outcome": "falls", "person_id": person}},
        "person": {"json": {"person_id": person}},
        "register": {"params": {"outcome": "falls", "top": 3}},
        "outcomes": {},
        "whoami": {},
        "reload_objections": {},
        "reload_service": {},  # the same champions and snapshot
        "audit_verify": {},
        "openapi": {},
        "metrics": {},
        "referral_form": {},
        "referral_create": {"json": referral_body(person)},
        "referral_queue": {},
        "referral_read": {},
        "referral_status": {"json": {"status": "accepted"}},
    }
    if route not in parts:
        return "", "", {}
    table = ROUTE[route]
    return table.method, table.path.format(referral_id=NO_REFERRAL), parts[route]


def referral_body(person: str, score: dict[str, Any] | None = None) -> dict[str, Any]:
    """A well-formed referral on `score` (a score result), by default one that is not the one
    served (refused 409)."""
    basis = {"model_version": "0", "index_date": "2000-01-01", "band": "none"}
    if score is not None:
        basis = {k: score[k] for k in basis}
    return {
        "person_id": person, "outcome": "falls", "receiving_org": "Test fire org",
        "score": basis,
        "agreement": {"recorded_by": "Dr Test", "recorded_at": "2025-01-01T00:00:00Z",
                      "agreed_to": ["contact_details", "reason_category"]},
    }  # fmt: skip


# Routes a key may call that the OpenAPI document does not list: itself, and /metrics.
UNLISTED = {(r.method, r.path) for r in ROUTES if not r.listed}


def record_of(person_ref: str = "Pexternal0001") -> dict[str, Any]:
    """A full, valid feature record: every registry feature, most unknown."""
    record: dict[str, Any] = {f.name: None for f in FEATURES}
    record.update(age_years=82.0, female=True, falls_365d=2.0, lives_alone=True)
    record["in_care_home"] = False
    record["person_ref"] = person_ref
    return record


def assert_no_clinical_text(text: str) -> None:
    assert '"probability"' not in text
    for feature in CLINICAL:
        assert f'"{feature.name}"' not in text, feature.name


@pytest.fixture(scope="module")
def people(live_service: LiveService) -> dict[str, list[str]]:
    return snapshot_people(live_service.home)


@pytest.fixture(scope="module")
def audit_log(live_service: LiveService) -> AuditLog:
    return AuditLog.in_home(live_service.home)


# --- roles and keys --------------------------------------------------------------------------


def test_every_route_has_a_role_entry_and_a_call(live_service: LiveService) -> None:
    with live_service.client("gp") as client:
        spec = client.get("/v1/openapi.json").json()
    served = {(m.upper(), "/v1" + p) for p, ops in spec["paths"].items() for m in ops} | UNLISTED
    tested = {
        (m, p.replace(NO_REFERRAL, "{referral_id}"))
        for m, p, _ in (route_call(r, "Pany000001") for r in ROUTE_ROLES)
    }
    assert ("", "") not in tested, "a ROUTE_ROLES entry has no request in route_call"
    assert served == tested, f"routes without a role entry: {sorted(served - tested)}"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_against_each_route(
    live_service: LiveService, people: dict[str, list[str]], role: str
) -> None:
    person = people["falls"][0]
    with live_service.client(role) as client:
        for route, allowed in ROUTE_ROLES.items():
            method, path, kwargs = route_call(route, person)
            response = client.request(method, path, **kwargs)
            expected = ALLOWED_ANSWERS.get(route, {200}) if role in allowed else {403}
            assert response.status_code in expected, (route, role, response.text[:300])
            if expected == {403}:
                assert response.json()["error"] == "forbidden"


@pytest.mark.parametrize("kind", ["none", *WRONG_KEYS, "wrong_secret"])
def test_missing_or_wrong_key_is_401(
    live_service: LiveService, people: dict[str, list[str]], kind: str
) -> None:
    key = live_service.keys["gp"]
    wrong = {**WRONG_KEYS, "wrong_secret": key[:-4] + ("AAAA" if key[-4:] != "AAAA" else "BBBB")}
    headers = {} if kind == "none" else {"Authorization": f"Bearer {wrong[kind]}"}
    with live_service.client() as client:
        for route in ROUTE_ROLES:
            method, path, kwargs = route_call(route, people["falls"][0])
            response = client.request(method, path, headers=headers, **kwargs)
            assert response.status_code == 401, (route, kind, response.text[:300])
            assert response.headers["www-authenticate"] == "Bearer"


# --- practice scope -------------------------------------------------------------------------


def practices_of(home: Path, people: list[str]) -> dict[str, str]:
    """person_id -> practice_code, from the snapshot."""
    with duckdb.connect(str(Home(home).store_path), read_only=True) as con:
        rows = con.execute(
            "SELECT person_id, practice_code FROM feature_snapshot WHERE list_contains(?, "
            "person_id)",
            [people],
        ).fetchall()
    return {str(p): str(c) for p, c in rows}


def test_a_gp_of_one_practice_gets_404_for_another_practices_people(
    live_service: LiveService, people: dict[str, list[str]], audit_log: AuditLog
) -> None:
    youngest = people["falls"][-60:]  # not the people other tests refer
    practice = practices_of(live_service.home, youngest)
    ours = youngest[-1]
    theirs = next(p for p in reversed(youngest) if practice[p] != practice[ours])
    own, other = practice[ours], practice[theirs]
    _, key = KeyStore.in_home(live_service.home).add("Test gp org", "gp", practices=[own])
    unknown = "Pnobody00000001"
    before = audit_log.count()
    with httpx.Client(base_url=live_service.url, timeout=30,
                      headers={"Authorization": f"Bearer {key}"}) as gp:  # fmt: skip
        assert gp.post("/v1/score", json={"outcome": "falls", "person_ids": [ours]}).is_success
        batch = [ours, unknown, theirs]
        refusals = [
            gp.post("/v1/score", json={"outcome": "falls", "person_ids": batch}),
            gp.post("/v1/person", json={"person_id": theirs}),
            gp.post("/v1/fhir/risk-assessment", json={"outcome": "falls", "person_id": theirs}),
            gp.post("/v1/referrals", json=referral_body(theirs)),
        ]
        unknown_id = gp.post("/v1/fhir/risk-assessment",
                             json={"outcome": "falls", "person_id": unknown})  # fmt: skip
        other_register = gp.get("/v1/register", params={"outcome": "falls", "practice": other})
        own_register = gp.get("/v1/register", params={"outcome": "falls", "top": 500})
    for refused in refusals:
        assert refused.status_code == 404, refused.text[:300]
        assert refused.json()["message"] == unknown_id.json()["message"]  # nothing told apart
    # as if the other practice's person were not in the snapshot: listed with the unknown id
    assert refusals[0].json()["person_ids"] == [unknown, theirs]
    assert other_register.status_code == 404
    assert own_register.status_code == 200
    assert {p["practice_code"] for p in own_register.json()["people"]} == {own}
    records = [r for r in audit_log.since(before) if r.org == "Test gp org"]
    assert {r.scope for r in records} == {f"practices:{own}"}
    outside = [r for r in records if r.outcome == "outside_scope"]
    assert [r.endpoint for r in outside] == [
        "score", "person", "fhir", "referral_create", "register"
    ]  # fmt: skip
    assert all(r.status == 404 for r in outside)


def test_a_referral_is_read_only_within_the_readers_practices(
    live_service: LiveService, people: dict[str, list[str]]
) -> None:
    youngest = people["falls"][-120:-60]
    practice = practices_of(live_service.home, youngest)
    person = youngest[-1]
    elsewhere = next(c for c in practice.values() if c != practice[person])
    store = KeyStore.in_home(live_service.home)
    _, same = store.add("Test gp org", "gp", practices=[practice[person]])
    _, other = store.add("Test gp org", "gp", practices=[elsewhere])
    with live_service.client("gp") as gp:  # the organisation's key for every practice
        score = gp.post("/v1/score", json={"outcome": "falls", "person_ids": [person]}).json()
        made = gp.post("/v1/referrals", json=referral_body(person, score["results"][0]))
    assert made.status_code == 201, made.text[:300]
    path = f"/v1/referrals/{made.json()['referral']['id']}"
    for key, status in ((same, 200), (other, 404)):
        with httpx.Client(base_url=live_service.url, timeout=30,
                          headers={"Authorization": f"Bearer {key}"}) as client:  # fmt: skip
            assert client.get(path).status_code == status


def test_a_cds_client_sees_only_its_practices_patients(
    live_service: LiveService, people: dict[str, list[str]], audit_log: AuditLog
) -> None:
    youngest = people["falls"][-180:-120]
    practice = practices_of(live_service.home, youngest)
    ours = youngest[-1]
    theirs = next(p for p in reversed(youngest) if practice[p] != practice[ours])
    home = Home(live_service.home)
    client = SigningClient()
    clients = CdsClients(home.cds_clients_path)
    clients.add(client.iss, "Scoped EHR", client.jwks(), practices=[practice[ours]])
    lookup = home.cds_patients_path
    before_lookup = lookup.read_text() if lookup.exists() else "patient_id,person_id\n"
    lookup.write_text(before_lookup + f"scoped-ours,{ours}\nscoped-theirs,{theirs}\n")
    url = f"{live_service.url}/cds-services/carerisk-falls"
    before = audit_log.count()
    try:
        cards = {
            patient: httpx.post(
                url, json=spec_request(patientId=patient), headers=client.bearer(url), timeout=30
            )  # fmt: skip
            for patient in ("scoped-ours", "scoped-theirs")
        }
    finally:
        lookup.write_text(before_lookup)
        clients.remove(client.iss)
    assert len(cards["scoped-ours"].json()["cards"]) == 1, cards["scoped-ours"].text[:300]
    assert cards["scoped-theirs"].json() == {"cards": []}
    records = [r for r in audit_log.since(before) if r.org == "Scoped EHR"]
    assert [(r.outcome, r.person_ids) for r in records] == [
        ("ok", (ours,)),
        ("outside_scope", (theirs,)),
    ]
    assert {r.scope for r in records} == {f"practices:{practice[ours]}"}


def test_health_probes_are_open(live_service: LiveService) -> None:
    with live_service.client() as client:
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz").status_code == 200


# --- scores ----------------------------------------------------------------------------------


def test_scores_equal_the_in_process_champion(
    live_service: LiveService, people: dict[str, list[str]]
) -> None:
    asked = {outcome: ids[:: max(1, len(ids) // 25)][:25] for outcome, ids in people.items()}
    expected = in_process(live_service.home, asked)
    with live_service.client("gp") as client:
        for outcome, ids in asked.items():
            response = client.post("/v1/score", json={"outcome": outcome, "person_ids": ids})
            assert response.status_code == 200, response.text[:300]
            results, local = response.json()["results"], expected[outcome]
            assert [r["person_ref"] for r in results] == ids
            for i, result in enumerate(results):
                assert result["model_version"] == local["version"]
                assert result["probability"] == pytest.approx(local["probability"][i], abs=1e-12)
                assert result["band"] == local["band"][i]
                assert_same_reasons(result["reasons"], local["reasons"][i])


def assert_same_reasons(served: list[dict[str, Any]], local: list[dict[str, Any]]) -> None:
    assert [r["feature"] for r in served] == [r["feature"] for r in local]
    for got, want in zip(served, local, strict=True):
        assert got["contribution"] == pytest.approx(want["contribution"], abs=1e-12)
        plain = {k: v for k, v in got.items() if k != "contribution"}
        assert plain == {k: v for k, v in want.items() if k != "contribution"}


def test_shap_values_and_base_value_sum_to_the_raw_score(
    live_service: LiveService, people: dict[str, list[str]]
) -> None:
    ids = people["falls"][:: max(1, len(people["falls"]) // 20)][:20]
    local = in_process(live_service.home, {"falls": ids})["falls"]
    with live_service.client("analyst") as client:
        response = client.post("/v1/score", json={"outcome": "falls", "person_ids": ids})
    assert response.status_code == 200
    names = local["features"]
    for i, result in enumerate(response.json()["results"]):
        contributions = local["contributions"][i]
        assert len(contributions) == len(names) + 1  # one per feature, then the base value
        assert math.fsum(contributions) == pytest.approx(local["raw"][i], abs=1e-9)
        for reason in result["reasons"]:  # served reasons are entries of the full vector
            full = contributions[names.index(reason["feature"])]
            assert reason["contribution"] == pytest.approx(full, abs=1e-12)


def test_records_route_scores_like_the_snapshot_route(
    live_service: LiveService, people: dict[str, list[str]]
) -> None:
    with live_service.client("gp") as client:
        by_record = client.post(
            "/v1/score/records", json={"outcome": "falls", "records": [record_of()]}
        )
        again = client.post(
            "/v1/score/records", json={"outcome": "falls", "records": [record_of("Pexternal0002")]}
        )
    assert by_record.status_code == 200, by_record.text[:500]
    first, second = by_record.json()["results"][0], again.json()["results"][0]
    assert first["person_ref"] == "Pexternal0001"
    assert 0.0 <= first["probability"] <= 1.0 and first["reasons"]
    assert first["probability"] == second["probability"]  # the reference is not a feature


# --- the fire role ---------------------------------------------------------------------------


def test_fire_sees_no_probability_or_clinical_reason(
    live_service: LiveService, people: dict[str, list[str]]
) -> None:
    with live_service.client("fire") as client:
        register = client.get("/v1/register", params={"outcome": "falls", "top": 50})
        csv = client.get("/v1/register", params={"outcome": "falls", "top": 50, "format": "csv"})
        persons = [client.post("/v1/person", json={"person_id": p}) for p in people["falls"][:5]]
    for response in [register, *persons]:
        assert response.status_code == 200, response.text[:300]
        assert_no_clinical_text(response.text)
    reasons = [r for row in register.json()["people"] for r in row["reasons"]]
    assert reasons, "the fire register should still carry non-clinical reasons"
    assert all(r["clinical"] is False for r in reasons)
    assert csv.status_code == 200
    header, *rows = csv.text.splitlines()
    assert "probability" not in header and len(rows) == 50
    assert_csv_reasons_not_clinical(csv.text)


def assert_csv_reasons_not_clinical(text: str) -> None:
    import csv
    import io

    for row in csv.DictReader(io.StringIO(text)):
        for label in filter(None, row["reasons"].split("; ")):
            found = label_features(label)
            assert found, f"reason {label!r} matches no registry label"
            assert not any(f.clinical for f in found), label


def test_clinical_roles_do_see_clinical_reasons(live_service: LiveService) -> None:
    with live_service.client("gp") as client:
        register = client.get("/v1/register", params={"outcome": "falls", "top": 50})
    reasons = [r for row in register.json()["people"] for r in row["reasons"]]
    assert any(r["clinical"] for r in reasons), "the fire check above would prove nothing"
    assert all("probability" in row for row in register.json()["people"])


# --- objections ------------------------------------------------------------------------------


@pytest.fixture
def objecting(live_service: LiveService) -> Iterator[str]:
    """The top of the falls register objects; the file and the service are restored after."""
    path = Home(live_service.home).objections_path
    before = path.read_bytes() if path.exists() else None
    with live_service.client("admin") as admin:
        top = admin.get("/v1/register", params={"outcome": "falls", "top": 1}).json()
        person = top["people"][0]["person_ref"]
        try:
            path.write_text("person_id\n" + person + "\n", encoding="utf-8")
            assert admin.post("/v1/admin/objections/reload").json() == {"objections": 1}
            yield person
        finally:
            if before is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(before)
            assert admin.post("/v1/admin/objections/reload").status_code == 200


def test_objections_are_honoured(live_service: LiveService, objecting: str) -> None:
    record = record_of(objecting)
    with live_service.client("gp") as client:
        refused = [
            client.post("/v1/score", json={"outcome": "falls", "person_ids": [objecting]}),
            client.post("/v1/person", json={"person_id": objecting}),
            client.post(
                "/v1/fhir/risk-assessment", json={"outcome": "falls", "person_id": objecting}
            ),
            client.post("/v1/score/records", json={"outcome": "falls", "records": [record]}),
        ]
        register = client.get(
            "/v1/register", params={"outcome": "falls", "top": 5000, "format": "csv"}
        )
    for response in refused:
        assert response.status_code == 451, response.text[:300]
        assert objecting in response.json()["person_ids"]
    assert register.status_code == 200
    assert objecting not in register.text
    assert len(register.text.splitlines()) > 10


def test_objection_lifted_after_restore(
    live_service: LiveService, people: dict[str, list[str]]
) -> None:
    with live_service.client("admin") as admin:
        top = admin.get("/v1/register", params={"outcome": "falls", "top": 1}).json()
        person = top["people"][0]["person_ref"]
        score = admin.post("/v1/score", json={"outcome": "falls", "person_ids": [person]})
    assert score.status_code == 200


# --- FHIR ------------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["falls", "complex_dependency"])
def test_fhir_output_validates(
    live_service: LiveService, people: dict[str, list[str]], outcome: str
) -> None:
    person = people["falls"][0]
    with live_service.client("gp") as client:
        response = client.post(
            "/v1/fhir/risk-assessment", json={"outcome": outcome, "person_id": person}
        )
        score = client.post("/v1/score", json={"outcome": outcome, "person_ids": [person]})
    assert response.status_code == 200, response.text[:300]
    resource = RiskAssessment.model_validate(response.json())
    assert resource.subject.identifier is not None and resource.prediction
    assert resource.subject.identifier.value == person
    expected = round(score.json()["results"][0]["probability"], 4)
    assert resource.prediction[0].probabilityDecimal is not None
    assert float(resource.prediction[0].probabilityDecimal) == expected


# --- the audit -------------------------------------------------------------------------------


def test_every_call_is_audited_without_values(
    live_service: LiveService, people: dict[str, list[str]], audit_log: AuditLog
) -> None:
    person, unknown = people["falls"][1], "Pnobody000000"
    before = audit_log.count()
    # (role, method, path, kwargs, expected status, audit records it must add)
    calls: list[tuple[str | None, str, str, dict[str, Any], int, int]] = [
        ("gp", *route_call("score", person), 200, 1),
        ("gp", *route_call("fhir", person), 200, 1),
        ("analyst", *route_call("person", person), 200, 2),  # one record per outcome
        ("fire", *route_call("register", person), 200, 1),
        ("admin", *route_call("reload_objections", person), 200, 1),
        ("gp", *route_call("score_records", person), 200, 1),
        ("fire", *route_call("score", person), 403, 1),
        ("gp", *route_call("score", unknown), 404, 1),
    ]  # fmt: skip
    received: list[str] = []
    for role, method, path, kwargs, status, _ in calls:
        with live_service.client(role) as client:
            response = client.request(method, path, **kwargs)
        assert response.status_code == status, (path, role, response.text[:300])
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        received.append(response.text)
    added = sum(c[-1] for c in calls)
    tail = keyed_since(audit_log, before)
    assert len(tail) == added  # each written before its answer left
    assert [r.status for r in tail] == [c[4] for c in calls for _ in range(c[-1])]
    assert [r.role for r in tail][-2:] == ["fire", "gp"]
    assert tail[-1].person_ids == (unknown,) and tail[0].person_ids == (person,)
    assert {r.client for r in tail} == {"127.0.0.1"} and {r.key_check for r in tail} == {"ok"}
    # A refusal that shows nothing (401) is recorded in a group, within about a second.
    with live_service.client() as anonymous:
        assert anonymous.request(*route_call("score", person)[:2],
                                 **route_call("score", person)[2]).status_code == 401  # fmt: skip
    grouped = wait_for_record(audit_log, tail[-1].seq, lambda r: r.status == 401)
    assert (grouped.role, grouped.key_id, grouped.key_check) == ("none", "none", "missing")
    assert grouped.client == "127.0.0.1" and grouped.endpoint == "score"
    assert all(r.model_version for r in tail if r.status == 200 and r.risk_outcome)
    with live_service.client("admin") as admin:
        verified = admin.get("/v1/admin/audit/verify").json()
    assert verified["ok"] is True and audit_log.verify().ok
    assert_no_values_in_audit(live_service.home, received)


def wait_for_record(log: AuditLog, after: int, wanted: Any, seconds: float = 5.0) -> Any:
    """The first record after seq `after` that `wanted` accepts, waiting for grouped ones."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [r for r in log.since(after) if wanted(r)]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no such audit record after seq {after} within {seconds} s")


def assert_no_values_in_audit(home: Path, received: list[str]) -> None:
    """Neither probabilities nor SHAP contributions we received are stored in the audit files."""
    numbers = set()
    for text in received:
        for match in re.finditer(r'"(?:probability|contribution)":(-?[0-9.eE+-]+)', text):
            if len(match.group(1)) >= 8:  # short values such as 0.0 could match by chance
                numbers.add(match.group(1))
    assert numbers, "the calls above should have returned probabilities"
    audit = Home(home).audit_path
    stored = b"".join(p.read_bytes() for p in home.glob(audit.name + "*") if p.is_file())
    for number in numbers:
        assert number.encode() not in stored, number


def test_whoami_and_audit_verify_are_audited(
    live_service: LiveService, audit_log: AuditLog
) -> None:
    before = audit_log.count()
    with live_service.client("admin") as admin:
        assert admin.get("/v1/whoami").status_code == 200
        assert admin.get("/v1/admin/audit/verify").status_code == 200
    assert len(keyed_since(audit_log, before)) == 2


def test_register_with_unknown_outcome_is_a_clear_audited_4xx(
    live_service: LiveService, audit_log: AuditLog
) -> None:
    before = audit_log.count()
    with live_service.client("gp") as client:
        response = client.get("/v1/register", params={"outcome": "strokes"})
    assert response.status_code == 422, response.text
    assert len(keyed_since(audit_log, before)) == 1
