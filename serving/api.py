"""Request models, authentication, scopes and auditing for the HTTP API.

The routes themselves are built when the service starts (serving/routes.py); this module holds
what they share, so each route reads as: authorise, score, audit, answer. Request models that
name an outcome are built from the outcomes served (`request_models`): their `outcome` field is
an enum of the registry's names, so a new outcome needs no edit here.

Who may call a route is decided before the route runs, by the request guard
(serving/request_guard.py); `needs` hands the route the caller the request guard admitted and
declares the bearer scheme in the OpenAPI document. A route audits what it answers with
`audit`/`audit_async`, which name the client and key presented and mark the request audited, so the
request guard adds no second record.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict, TypeVar, Unpack

from fastapi import APIRouter, HTTPException, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model
from starlette.concurrency import run_in_threadpool

from features.contract import PERSON_ID_PATTERN
from features.feature_list import FEATURES, Feature
from features.outcomes import Outcome
from serving import scores_file as sf
from serving.audit import AuditEntry, AuditUnavailable
from serving.calls import Call, current_call, mark_audited
from serving.keys import Principal
from serving.roles import ROUTE, is_allowed
from serving.score_results import ScoreResult
from serving.scoring import NOT_IN_SNAPSHOT, OBJECTED, ObjectedPeople, ScoringError, UnknownPeople
from serving.state import ServiceState

log = logging.getLogger("carerisk.serving")

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

V1 = "/v1"  # where the API is mounted (serving/service.py)


def mount(routes: APIRouter, name: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
    """The decorator that adds the route `name` of the one route table (serving.roles
    `ROUTES`) to `routes`, with the table's method and path; `options` are FastAPI's (summary,
    responses, ...)."""
    route = ROUTE[name]
    path = route.path.removeprefix(V1).removeprefix(routes.prefix)
    return routes.api_route(path, methods=[route.method], name=name, **options)


PersonId = Annotated[str, StringConstraints(pattern=PERSON_ID_PATTERN)]
EXAMPLE_ID = "P1a2b3c4d5e6f"


class PersonRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_id: PersonId = Field(examples=[EXAMPLE_ID])


def _field_for(feature: Feature) -> tuple[Any, Any]:
    """A feature as a required, nullable pydantic field of its registry type, strict: a
    boolean for a binary feature (not "true" or 1), a finite number within the registry's
    range for a numeric one (not true, NaN, Infinity or 1e308), one of the levels for a
    categorical one."""
    if feature.kind == "binary":
        return (bool | None, Field(strict=True, description=feature.label))
    if feature.kind == "categorical":
        if feature.categories:
            levels = Literal[feature.categories]  # type: ignore[valid-type,name-defined]
            return (levels | None, Field(description=feature.label))
        return (str | None, Field(strict=True, max_length=64, description=feature.label))
    limits = Field(
        strict=True, allow_inf_nan=False, ge=feature.minimum, le=feature.maximum,
        description=feature.label,
    )  # fmt: skip
    if feature.name == AGE:  # every cohort rule needs the age
        return (float, limits)
    return (float | None, limits)


AGE = "age_years"
IN_CARE_HOME = "in_care_home"
CARE_HOME_DOC = (
    "true when the person lives in residential or nursing care on the day scored; outcomes "
    "whose cohort leaves care-home residents out refuse such a record (not a model feature)"
)


def record_model(features: Sequence[Feature] = FEATURES) -> type[BaseModel]:
    """A full feature record: every registry feature must be present (null where unknown;
    age_years always), with the person's care-home status for the cohort rule."""
    fields: dict[str, Any] = {f.name: _field_for(f) for f in features}
    fields[IN_CARE_HOME] = (bool, Field(strict=True, description=CARE_HOME_DOC))
    fields["person_ref"] = (PersonId, Field(description="the caller's pseudonymised id"))
    return create_model(  # type: ignore[no-any-return, call-overload]
        "FeatureRecord", __config__=ConfigDict(extra="forbid"), **fields
    )


SCORE_DOC = "Score people by their pseudonymised ids, looked up in the latest feature snapshot."
RECORDS_DOC = "Score full feature records (for callers holding features, e.g. a clinical system)."


@dataclass(frozen=True)
class RequestModels:
    """The request bodies that name an outcome, built for the outcomes served."""

    outcomes: tuple[str, ...]  # the names of the outcomes served
    score: type[BaseModel]
    records: type[BaseModel]
    fhir: type[BaseModel]


def request_models(
    served: Sequence[Outcome], features: Sequence[Feature] = FEATURES
) -> RequestModels:
    """Request models whose `outcome` is one of those `served` (a 422 names the field
    otherwise); the records' schema states each outcome's cohort rule."""
    outcomes = [o.name for o in served]
    name: Any = Literal[tuple(outcomes)]  # type: ignore[valid-type]
    outcome = (name, Field(examples=[outcomes[0]]))
    records: Any = list[record_model(features)]  # type: ignore[misc]
    return RequestModels(
        outcomes=tuple(outcomes),
        score=_request(
            "ScoreRequest",
            SCORE_DOC,
            None,
            outcome=outcome,
            person_ids=(list[PersonId], Field(min_length=1, examples=[[EXAMPLE_ID]])),
        ),
        records=_request(
            "RecordsRequest",
            RECORDS_DOC,
            cohort_rules(served),
            outcome=outcome,
            records=(records, Field(min_length=1)),
        ),
        fhir=_request(
            "FhirRequest",
            None,
            None,
            outcome=outcome,
            person_id=(PersonId, Field(examples=[EXAMPLE_ID])),
        ),
    )


def _request(
    name: str, doc: str | None, schema: dict[str, Any] | None, **fields: Any
) -> type[BaseModel]:
    config = ConfigDict(extra="forbid", json_schema_extra=schema)
    return create_model(  # type: ignore[no-any-return, call-overload]
        name, __config__=config, __doc__=doc, **fields
    )


def cohort_rules(served: Sequence[Outcome]) -> dict[str, Any]:
    """Each outcome's cohort rule in JSON Schema (if the outcome is this, then every record's
    age is at least its minimum and, where it leaves care-home residents out, in_care_home is
    false). Documentation: the route applies the rule itself, answering 422 with its words."""
    rules = []
    for item in served:
        record: dict[str, Any] = {AGE: {"minimum": item.cohort.min_age}}
        if item.cohort.exclude_care_home:
            record[IN_CARE_HOME] = {"const": False}
        rules.append({
            "if": {"properties": {"outcome": {"const": item.name}}},
            "then": {"properties": {"records": {"items": {"properties": record}}}},
        })  # fmt: skip
    return {"allOf": rules}


# --- authentication and roles -------------------------------------------------------------


def state_of(request: Request) -> ServiceState:
    """The request's state, pinned by the request guard to the scorer served when it arrived (a
    route reads every score, model and snapshot of one request from it)."""
    call = current_call()
    if call is not None and call.state is not None:
        return call.state  # type: ignore[no-any-return]
    state = getattr(request.app.state, "carerisk", None)
    if state is None:
        raise HTTPException(503, detail={"error": "starting", "message": "service is starting"})
    return state.pin()  # type: ignore[no-any-return]


BEARER = HTTPBearer(
    auto_error=False,
    description="An API key, `crk_<key id>_<secret>`, issued by `carerisk keys add`.",
)


def needs(route: str) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the caller the request guard admitted for `route`
    (serving/request_guard.py checks the key, its rate and its role before the body is read).
    Declares the bearer scheme."""

    async def dependency(
        request: Request,
        _: HTTPAuthorizationCredentials | None = Security(BEARER),  # noqa: B008
    ) -> Principal:
        call = current_call()
        if call is None or call.principal is None:  # only when served without the request guard
            detail = {"error": "unauthenticated", "message": "a valid API key is needed"}
            raise HTTPException(401, detail=detail)
        if not is_allowed(route, call.principal.role):
            detail = {"error": "forbidden", "message": f"the role may not use {route}"}
            raise HTTPException(403, detail=detail)
        return call.principal

    return dependency


# --- audit ------------------------------------------------------------------------------


def audit_entry(
    state: ServiceState,
    principal: Principal | None,
    endpoint: str,
    result: str,
    status: int,
    *,
    person_ids: Sequence[str] = (),
    outcome: str | None = None,
    results: Sequence[ScoreResult] = (),
    bands: Sequence[str] = (),
    call: Call | None = None,
) -> AuditEntry:
    """The audit record of one request: who (and from where, with which key presented),
    what, which people and bands; never values. `call` is the request being answered (by
    default the current one; none for the command line)."""
    served = state.scorer.models.get(outcome) if outcome else None
    call = call or current_call()
    return AuditEntry(
        org=principal.org if principal else "unknown",
        key_id=principal.key_id if principal else (call.key_id if call else "none"),
        role=principal.role if principal else "none",
        endpoint=endpoint,
        outcome=result,
        person_ids=tuple(person_ids),
        risk_outcome=outcome,
        model_name=served.name if served else None,
        model_version=served.version if served else None,
        snapshot_date=snapshot_date(state, endpoint) if served else None,
        bands=tuple(bands) or tuple(r.band for r in results),
        status=status,
        client=call.client if call else None,
        key_check=call.key_check if call else None,
        scope=principal.scope if principal else None,
    )


def snapshot_date(state: ServiceState, endpoint: str) -> str | None:
    """The snapshot's date a scoring call used (records sent in are scored without it)."""
    return None if endpoint == "score_records" else state.scorer.index_date.isoformat()


class AuditDetails(TypedDict, total=False):
    """The optional parts of an audit record: `audit_entry`'s keyword arguments."""

    person_ids: Sequence[str]
    outcome: str | None
    results: Sequence[ScoreResult]
    bands: Sequence[str]


def audit(
    state: ServiceState,
    principal: Principal | None,
    endpoint: str,
    result: str,
    status: int,
    **details: Unpack[AuditDetails],
) -> None:
    """Append one record (from a worker thread); raise 503 when it cannot be written."""
    append_all(state, [audit_entry(state, principal, endpoint, result, status, **details)])


def append_all(state: ServiceState, entries: Sequence[AuditEntry]) -> None:
    """Append records as one group (from a worker thread) and mark the request audited;
    raise 503 when they cannot be written."""
    futures = [state.writer.submit(entry) for entry in entries]
    try:
        for future in futures:
            future.result()
    except AuditUnavailable:
        raise unaudited(entries[0].endpoint) from None
    mark_audited()


async def audit_async(
    state: ServiceState,
    principal: Principal | None,
    endpoint: str,
    result: str,
    status: int,
    **details: Unpack[AuditDetails],
) -> None:
    """`audit` for the event loop: waits for the writer without holding up other requests."""
    entry = audit_entry(state, principal, endpoint, result, status, **details)
    try:
        await state.writer.append_async(entry)
    except AuditUnavailable:
        raise unaudited(endpoint) from None
    mark_audited()


def unaudited(endpoint: str) -> HTTPException:
    log.error("audit store unavailable; refusing to answer %s", endpoint)
    return HTTPException(
        503,
        detail={
            "error": "audit_unavailable",
            "message": "the audit trail cannot be written, so no score is returned",
        },
    )


def refuse(
    state: ServiceState,
    principal: Principal,
    endpoint: str,
    outcome: str,
    error: ScoringError,
    result: str = "refused",
) -> HTTPException:
    """Audit a refused scoring request (as `result`) and build its HTTP error."""
    valid_ids = [p for p in error.person_ids if _is_person_id(p)]
    audit(state, principal, endpoint, result, error.status, person_ids=valid_ids, outcome=outcome)
    return _refusal(error, valid_ids)


async def refuse_async(
    state: ServiceState,
    principal: Principal,
    endpoint: str,
    outcome: str,
    error: ScoringError,
    result: str = "refused",
) -> HTTPException:
    """`refuse` for the event loop."""
    valid_ids = [p for p in error.person_ids if _is_person_id(p)]
    await audit_async(
        state, principal, endpoint, result, error.status, person_ids=valid_ids, outcome=outcome
    )
    return _refusal(error, valid_ids)


# --- practice scope -----------------------------------------------------------------------

OUTSIDE_SCOPE = "outside_scope"  # the audit's result for people outside a key's practices


def scope_refusal(
    state: ServiceState, principal: Principal, person_ids: Sequence[str]
) -> ScoringError | None:
    """The refusal of a lookup that asks for people registered at a practice the caller's key
    does not act for (a GP key's practice scope, serving/keys.py), or None when it asks for
    none. It is the scorer's answer had those people not been in the snapshot: objectors within
    the scope first (451), then the people outside it with any unknown (404), so a key learns
    nothing of the people outside its practices."""
    if principal.practices is None:
        return None
    export = next(iter(state.scorer.scores.values()), None)
    found = export.people(person_ids) if export is not None else {}
    outside = {
        p for p in person_ids if p in found and not principal.covers(found[p][1][sf.PRACTICE])
    }
    if not outside:
        return None
    objected = [p for p in person_ids if p not in outside and p in state.scorer.objections]
    if objected:
        return ObjectedPeople(OBJECTED, objected)
    return UnknownPeople(NOT_IN_SNAPSHOT, [p for p in person_ids if p in outside or p not in found])


def check_scope(
    state: ServiceState, principal: Principal, endpoint: str, outcome: str, ids: Sequence[str]
) -> None:
    """Refuse (audited as outside_scope) a lookup of people outside the key's practices."""
    refusal = scope_refusal(state, principal, ids)
    if refusal is not None:
        raise refuse(state, principal, endpoint, outcome, refusal, OUTSIDE_SCOPE)


def _refusal(error: ScoringError, valid_ids: list[str]) -> HTTPException:
    detail = {"error": type(error).__name__, "message": error.message, "person_ids": valid_ids}
    return HTTPException(error.status, detail=detail)


def _is_person_id(value: str) -> bool:
    return re.fullmatch(PERSON_ID_PATTERN, value) is not None


def check_batch(state: ServiceState, size: int) -> None:
    if size > state.config.max_batch:
        raise HTTPException(
            413,
            detail={
                "error": "batch_too_large",
                "message": f"{size} people asked for; at most {state.config.max_batch} a request",
            },
        )


INLINE_PEOPLE = 20  # scored on the event loop; a larger batch is scored in a worker thread


async def scored_answer(
    state: ServiceState, outcome: str, person_ids: Sequence[str]
) -> tuple[list[str], Response]:
    """Snapshot people's bands and their JSON answer (not yet audited, so not yet sent)."""

    def work() -> tuple[list[str], Response]:
        body, bands = state.scorer.score_people_json(outcome, person_ids)
        return bands, Response(body, media_type="application/json")

    if len(person_ids) <= INLINE_PEOPLE:
        return work()
    return await run_in_threadpool(work)


def json_answer(model: BaseModel) -> Response:
    """A model serialised by pydantic in one pass (FastAPI's generic path, dict then JSON,
    took five times as long for 1,000 results)."""
    return Response(model.model_dump_json(), media_type="application/json")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
