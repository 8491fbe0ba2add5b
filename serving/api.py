"""Request models, authentication, scopes and auditing for the HTTP API.

The routes themselves are built when the service starts (serving/routes.py); this module holds
what they share, so each route reads as: authorise, score, audit, answer. Request models that
name an outcome are built from the outcomes served (`request_models`): their `outcome` field is
an enum of the registry's names, so a new outcome needs no edit here.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict, Unpack

from fastapi import HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model
from starlette.concurrency import run_in_threadpool

from features.contract import PERSON_ID_PATTERN
from features.registry import FEATURES, Feature
from serving.audit import AuditEntry, AuditUnavailable
from serving.keys import Principal
from serving.roles import is_allowed
from serving.schemas import ScoreResult
from serving.scoring import ScoringError
from serving.state import ServiceState

log = logging.getLogger("carerisk.serving")

# request path -> route name in serving.roles.ROUTE_ROLES (for auditing refusals)
ROUTE_NAMES = {
    "/v1/score": "score",
    "/v1/score/records": "score_records",
    "/v1/person": "person",
    "/v1/fhir/risk-assessment": "fhir",
    "/v1/register": "register",
    "/v1/outcomes": "outcomes",
    "/v1/whoami": "whoami",
    "/v1/admin/objections/reload": "reload_objections",
    "/v1/admin/audit/verify": "audit_verify",
}

PersonId = Annotated[str, StringConstraints(pattern=PERSON_ID_PATTERN)]
EXAMPLE_ID = "P1a2b3c4d5e6f"


class PersonRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_id: PersonId = Field(examples=[EXAMPLE_ID])


def _field_for(feature: Feature) -> tuple[Any, Any]:
    """A feature as a required, nullable pydantic field with the registry's limits."""
    if feature.kind == "binary":
        return (bool | None, Field(description=feature.label))
    if feature.kind == "categorical":
        if feature.categories:
            levels = Literal[feature.categories]  # type: ignore[valid-type,name-defined]
            return (levels | None, Field(description=feature.label))
        return (str | None, Field(max_length=64, description=feature.label))
    return (
        float | None,
        Field(ge=feature.minimum, le=feature.maximum, description=feature.label),
    )


def record_model(features: Sequence[Feature] = FEATURES) -> type[BaseModel]:
    """A full feature record: every registry feature must be present (null where unknown)."""
    fields: dict[str, Any] = {f.name: _field_for(f) for f in features}
    fields["person_ref"] = (PersonId, Field(description="the caller's pseudonymised id"))
    return create_model(  # type: ignore[no-any-return, call-overload]
        "FeatureRecord", __config__=ConfigDict(extra="forbid"), **fields
    )


SCORE_DOC = "Score people by their pseudonymised ids, looked up in the latest feature snapshot."
RECORDS_DOC = "Score full feature records (for callers holding features, e.g. a clinical system)."


@dataclass(frozen=True)
class RequestModels:
    """The request bodies that name an outcome, built for the outcomes served."""

    score: type[BaseModel]
    records: type[BaseModel]
    fhir: type[BaseModel]


def request_models(
    outcomes: Sequence[str], features: Sequence[Feature] = FEATURES
) -> RequestModels:
    """Request models whose `outcome` is one of `outcomes` (a 422 names the field otherwise)."""
    name: Any = Literal[tuple(outcomes)]  # type: ignore[valid-type]
    outcome = (name, Field(examples=[outcomes[0]]))
    records: Any = list[record_model(features)]  # type: ignore[misc]
    return RequestModels(
        score=_request(
            "ScoreRequest",
            SCORE_DOC,
            outcome=outcome,
            person_ids=(list[PersonId], Field(min_length=1, examples=[[EXAMPLE_ID]])),
        ),
        records=_request(
            "RecordsRequest",
            RECORDS_DOC,
            outcome=outcome,
            records=(records, Field(min_length=1)),
        ),
        fhir=_request(
            "FhirRequest",
            None,
            outcome=outcome,
            person_id=(PersonId, Field(examples=[EXAMPLE_ID])),
        ),
    )


def _request(name: str, doc: str | None, **fields: Any) -> type[BaseModel]:
    return create_model(  # type: ignore[no-any-return, call-overload]
        name, __config__=ConfigDict(extra="forbid"), __doc__=doc, **fields
    )


# --- authentication and roles -------------------------------------------------------------


def state_of(request: Request) -> ServiceState:
    state = getattr(request.app.state, "carerisk", None)
    if state is None:
        raise HTTPException(503, detail={"error": "starting", "message": "service is starting"})
    return state  # type: ignore[no-any-return]


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None


def needs(route: str) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: a valid key (401) whose role may call `route` (403), within its
    rate limit (429). Refusals are audited. It runs on the event loop (no thread hop)."""

    async def dependency(request: Request) -> Principal:
        state = state_of(request)
        check = state.keys.check(presented_key(request) or "")
        if check.principal is None:
            await audit_async(state, None, route, "unauthenticated", 401)
            raise HTTPException(
                401,
                detail={"error": "unauthenticated", "message": _key_message(check.reason)},
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = check.principal
        if not is_allowed(route, principal.role):
            await audit_async(state, principal, route, "forbidden", 403)
            raise HTTPException(
                403,
                detail={
                    "error": "forbidden",
                    "message": f"the {principal.role} role may not use {route}",
                },
            )
        if not state.limiter.allow(principal.key_id):
            wait = max(1, round(state.limiter.retry_after(principal.key_id)))
            await audit_async(state, principal, route, "rate_limited", 429)
            raise HTTPException(
                429,
                detail={"error": "rate_limited", "message": f"too many requests; retry in {wait}s"},
                headers={"Retry-After": str(wait)},
            )
        request.state.principal = principal
        return principal

    return dependency


def _key_message(reason: str) -> str:
    return {
        "expired": "this API key has expired; ask an administrator for a new one",
        "revoked": "this API key has been revoked",
    }.get(reason, "a valid API key is needed (Authorization: Bearer <key>)")


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
) -> AuditEntry:
    """The audit record of one request: who, what, which people and bands; never values."""
    served = state.scorer.models.get(outcome) if outcome else None
    return AuditEntry(
        org=principal.org if principal else "unknown",
        key_id=principal.key_id if principal else "none",
        role=principal.role if principal else "none",
        endpoint=endpoint,
        outcome=result,
        person_ids=tuple(person_ids),
        risk_outcome=outcome,
        model_name=served.name if served else None,
        model_version=served.version if served else None,
        bands=tuple(bands) or tuple(r.band for r in results),
        status=status,
    )


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
    entry = audit_entry(state, principal, endpoint, result, status, **details)
    try:
        state.writer.append(entry)
    except AuditUnavailable:
        raise unaudited(endpoint) from None


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
    state: ServiceState, principal: Principal, endpoint: str, outcome: str, error: ScoringError
) -> HTTPException:
    """Audit a refused scoring request and build its HTTP error."""
    valid_ids = [p for p in error.person_ids if _is_person_id(p)]
    audit(
        state, principal, endpoint, "refused", error.status, person_ids=valid_ids, outcome=outcome
    )
    return _refusal(error, valid_ids)


async def refuse_async(
    state: ServiceState, principal: Principal, endpoint: str, outcome: str, error: ScoringError
) -> HTTPException:
    """`refuse` for the event loop."""
    valid_ids = [p for p in error.person_ids if _is_person_id(p)]
    await audit_async(
        state, principal, endpoint, "refused", error.status, person_ids=valid_ids, outcome=outcome
    )
    return _refusal(error, valid_ids)


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
