"""Bad input against the live service: each gets a clear 4xx, one audit record of the refusal,
and nothing else changes (snapshot, keys, objections, the store file)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from features.feature_list import FEATURES
from features.home import Home
from features.snapshot import SNAPSHOT_TABLE
from serving.audit import AuditLog
from serving.config import ServingConfig
from tests.live import LiveService, keyed_since, snapshot_people

pytestmark = [pytest.mark.server, pytest.mark.slow]

MAX_BATCH = ServingConfig.model_fields["max_batch"].default
MAX_BODY = ServingConfig.model_fields["max_body_bytes"].default
UNKNOWN = "Pnobody000000"

# kwargs for the request given a person of the falls cohort
Request = Callable[[str], dict[str, Any]]


def record(**changes: Any) -> dict[str, Any]:
    """A full feature record (every registry feature, null where unknown) with changes."""
    values: dict[str, Any] = {f.name: None for f in FEATURES}
    values.update(age_years=80.0, in_care_home=False, person_ref="Pcaller00001")
    values.update(changes)
    return values


def records_body(*records: dict[str, Any]) -> Request:
    return lambda person: {"json": {"outcome": "falls", "records": list(records)}}


def score_body(**body: Any) -> Request:
    return lambda person: {"json": {"outcome": "falls", "person_ids": [person], **body}}


# (id, method, path, request, status, the field path or id the answer must name)
CASES: list[tuple[str, str, str, Request, int, str]] = [
    ("unknown-person-score", "POST", "/v1/score", score_body(person_ids=[UNKNOWN]), 404, UNKNOWN),
    ("unknown-person-among-known", "POST", "/v1/score",
     lambda p: {"json": {"outcome": "falls", "person_ids": [p, UNKNOWN]}}, 404, UNKNOWN),
    ("unknown-person-person", "POST", "/v1/person",
     lambda p: {"json": {"person_id": UNKNOWN}}, 404, UNKNOWN),
    ("unknown-person-fhir", "POST", "/v1/fhir/risk-assessment",
     lambda p: {"json": {"outcome": "falls", "person_id": UNKNOWN}}, 404, UNKNOWN),
    ("record-unknown-field", "POST", "/v1/score/records",
     records_body(record(shoe_size=9)), 422, "body.records.0.shoe_size"),
    ("record-out-of-range", "POST", "/v1/score/records",
     records_body(record(), record(age_years=150)), 422, "body.records.1.age_years"),
    ("record-negative-count", "POST", "/v1/score/records",
     records_body(record(falls_365d=-1)), 422, "body.records.0.falls_365d"),
    ("record-wrong-type", "POST", "/v1/score/records",
     records_body(record(female="maybe")), 422, "body.records.0.female"),
    ("record-unknown-level", "POST", "/v1/score/records",
     records_body(record(efi_band="frail")), 422, "body.records.0.efi_band"),
    ("record-missing-feature", "POST", "/v1/score/records",
     records_body({k: v for k, v in record().items() if k != "efi"}), 422,
     "body.records.0.efi"),
    ("oversized-batch", "POST", "/v1/score",
     lambda p: {"json": {"outcome": "falls", "person_ids": [p] * (MAX_BATCH + 1)}}, 413,
     f"at most {MAX_BATCH}"),
    ("ids-not-a-list", "POST", "/v1/score", score_body(person_ids=UNKNOWN), 422,
     "body.person_ids"),
    ("outcome-a-number", "POST", "/v1/score", score_body(outcome=3), 422, "body.outcome"),
    ("unknown-outcome", "POST", "/v1/score", score_body(outcome="strokes"), 422,
     "body.outcome"),
    ("malformed-id", "POST", "/v1/score", score_body(person_ids=["bad id!"]), 422,
     "body.person_ids.0"),
    ("empty-batch", "POST", "/v1/score", score_body(person_ids=[]), 422, "body.person_ids"),
    ("extra-field", "POST", "/v1/person",
     lambda p: {"json": {"person_id": p, "nhs_number": "9434765919"}}, 422,
     "body.nhs_number"),
    ("person-id-a-number", "POST", "/v1/person", lambda p: {"json": {"person_id": 12345678}},
     422, "body.person_id"),
    ("fhir-id-a-list", "POST", "/v1/fhir/risk-assessment",
     lambda p: {"json": {"outcome": "falls", "person_id": [p]}}, 422, "body.person_id"),
    ("register-top-not-a-number", "GET", "/v1/register",
     lambda p: {"params": {"outcome": "falls", "top": "ten"}}, 422, "query.top"),
    ("register-top-too-large", "GET", "/v1/register",
     lambda p: {"params": {"outcome": "falls", "top": 10**6}}, 422, "top must be"),
    ("not-json", "POST", "/v1/score",
     lambda p: {"content": b"{outcome: falls", "headers": {"content-type": "application/json"}},
     422, "JSON decode error"),
]  # fmt: skip

BODY_TOO_LARGE = (
    "body-over-limit", "POST", "/v1/score",
    lambda p: {"content": b" " * (MAX_BODY + 1), "headers": {"content-type": "application/json"}},
    413, "limited to",
)  # fmt: skip


def fingerprint(home: Path) -> dict[str, object]:
    """What a refused request must not change."""
    layout = Home(home)
    with duckdb.connect(str(layout.store_path), read_only=True) as con:
        row = con.execute(f'SELECT COUNT(*) FROM "{SNAPSHOT_TABLE}"').fetchone()
    files = [layout.keys_path, layout.objections_path, layout.store_path,
             layout.champions_pointer]  # fmt: skip
    return {
        "snapshot_rows": row[0] if row else None,
        **{str(path.relative_to(home)): digest(path) for path in files},
    }


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.fixture(scope="module")
def person(live_service: LiveService) -> str:
    return snapshot_people(live_service.home)["falls"][0]


def send(live_service: LiveService, case: tuple[Any, ...], person: str) -> tuple[Any, list[Any]]:
    """Make the request; return the response and the audit records it added."""
    _, method, path, request, *_ = case
    audit = AuditLog.in_home(live_service.home)
    before = audit.count()
    with live_service.client("gp") as client:
        response = client.request(method, path, **request(person))
    return response, keyed_since(audit, before)


def check_refusal(live_service: LiveService, case: tuple[Any, ...], person: str) -> None:
    _, _, _, _, status, named = case
    state = fingerprint(live_service.home)
    response, added = send(live_service, case, person)
    assert response.status_code == status, response.text[:500]
    assert named in response.text, response.text[:500]
    assert response.json()["error"], "the answer must say what kind of error it is"
    assert len(added) == 1, f"expected one audit record of the refusal, got {len(added)}"
    assert added[0].status == status and added[0].outcome != "ok"
    assert added[0].bands == ()
    assert fingerprint(live_service.home) == state


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_4xx_and_one_audit_record(
    live_service: LiveService, person: str, case: tuple[Any, ...]
) -> None:
    check_refusal(live_service, case, person)


def test_body_over_the_byte_limit_is_413(live_service: LiveService, person: str) -> None:
    state = fingerprint(live_service.home)
    response, _ = send(live_service, BODY_TOO_LARGE, person)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert fingerprint(live_service.home) == state


def test_body_over_the_byte_limit_is_audited(live_service: LiveService, person: str) -> None:
    check_refusal(live_service, BODY_TOO_LARGE, person)


def test_refusal_of_a_body_that_is_not_json_names_the_caller(
    live_service: LiveService, person: str
) -> None:
    case = next(c for c in CASES if c[0] == "not-json")
    _, added = send(live_service, case, person)
    assert [r.role for r in added] == ["gp"]


@pytest.mark.parametrize("name", ["record-wrong-type", "fhir-id-a-list"])
def test_invalid_requests_are_audited_under_the_route_name(
    live_service: LiveService, person: str, name: str
) -> None:
    case = next(c for c in CASES if c[0] == name)
    _, added = send(live_service, case, person)
    route = {"/v1/score/records": "score_records", "/v1/fhir/risk-assessment": "fhir"}[case[2]]
    assert [r.endpoint for r in added] == [route]


def test_refusals_name_the_route_and_caller(live_service: LiveService, person: str) -> None:
    named = [("unknown-person-score", "score"), ("oversized-batch", "score"),
             ("malformed-id", "score"), ("register-top-too-large", "register")]  # fmt: skip
    for name, route in named:
        case = next(c for c in CASES if c[0] == name)
        _, added = send(live_service, case, person)
        assert [(r.endpoint, r.role) for r in added] == [(route, "gp")], name
