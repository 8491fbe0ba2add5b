"""The referral routes under /v1/referrals, and what the fire role may read elsewhere.

    GET  /v1/referrals/form            gp, admin   the fire organisations and the agreement's words
    POST /v1/referrals                 gp          make a referral (201) with its ServiceRequest
    GET  /v1/referrals                 fire, admin the receiving organisation's queue (admin: all)
    GET  /v1/referrals/{id}            gp, fire, admin   one referral and its history
    POST /v1/referrals/{id}/status     fire        one move of the state machine

Object-level authorisation: a GP organisation reads the referrals it made, a fire organisation
those it receives, the admin every one; any other referral is 404 to them, as is one that does
not exist, so an id reveals nothing. Every answer, refusals included, is audited through
serving.api before it is sent (a move records the status moved to, e.g. ``to_visited``); the
request guard (serving/request_guard.py) checks the key, its rate, its role and the body's size
before a route runs, and audits what no route recorded (a request that fails validation, 422).

What the fire role may read about people follows the deployment's `fire_sharing` setting
(serving/config.py): ``referrals`` (the default) shares only the people referred to it with their
agreement, through these routes; ``register`` also lets it read the ranked register and any
person's restricted view, as under an area's data-sharing agreement. `fire_gate` refuses the
register and person routes to the fire role under ``referrals``; `read_result` is the audit
outcome of a fire read, which names the sharing that applied (``ok_referrals``,
``ok_register``).

This module does not use postponed annotations: FastAPI reads each route's parameter types from
its signature.
"""

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field, create_model

from features.feature_list import FEATURES
from features.outcomes import HOME_SAFETY_CHECK, Outcome
from referrals.fhir_requests import referral_request
from referrals.store import (
    AGREEMENT_ITEMS,
    AGREEMENT_WORDING,
    ID_PATTERN,
    Actor,
    NewReferral,
    Referral,
    ReferralError,
    ReferralRequest,
    ReferralStore,
    ReferralStoreError,
    SharedReason,
    Status,
    StatusChange,
    store_at,
)
from serving.api import audit, check_scope, mount, needs, refuse, state_of
from serving.defaults import FireSharing
from serving.keys import KeyStore, Principal, utc_now
from serving.roles import ROUTE, scope_reasons
from serving.score_results import BODY_ERRORS, ErrorBody, error_responses
from serving.scoring import ScoringError
from serving.state import ServiceState

# --- sharing with the fire service ----------------------------------------------------------


def fire_gate(state: ServiceState, principal: Principal, route: str) -> None:
    """Refuse (403, audited) a fire read of people outside referrals when the deployment shares
    only referrals with the fire service."""
    if principal.role != "fire" or not ROUTE[route].beyond_referrals:
        return
    if state.config.fire_sharing == "referrals":
        audit(state, principal, route, "not_shared_referrals_only", 403)
        raise HTTPException(
            403,
            detail={
                "error": "not_shared",
                "message": "this area shares with the fire service only the people referred "
                "to it with their agreement: see GET /v1/referrals",
            },
        )


def read_result(state: ServiceState, principal: Principal) -> str:
    """The audit outcome of a successful read: for the fire role, the sharing that applied."""
    return f"ok_{state.config.fire_sharing}" if principal.role == "fire" else "ok"


# --- helpers --------------------------------------------------------------------------------


def store_of(state: ServiceState) -> ReferralStore:
    return store_at(state.config.layout.referrals_path)


def fire_organisations(keys: KeyStore) -> list[str]:
    """Organisations holding a live fire key: the only ones a referral may go to."""
    now = utc_now()
    return sorted({r.org for r in keys.list() if r.role == "fire" and r.status(now) == "active"})


def may_read(referral: Referral, principal: Principal) -> bool:
    """Object-level authorisation: the referring GP organisation, the receiving fire
    organisation, the admin."""
    if principal.role == "admin":
        return True
    if principal.role == "gp":  # and within the key's practices
        return referral.referring_org == principal.org and principal.covers(referral.practice_code)
    if principal.role == "fire":
        return referral.receiving_org == principal.org
    return False


def answers(
    ok: tuple[int, type[BaseModel], str], *statuses: int
) -> dict[int | str, dict[str, object]]:
    """OpenAPI `responses` of a referral route: its answer (`ok`: status, model, words), the
    service's refusals (the request guard's among them), with a conflict and a referral not found
    said in this route's words."""
    own = {404: NOT_FOUND, 409: CONFLICT}
    known = error_responses(*(s for s in statuses if s not in own))
    known.update({s: {"model": ErrorBody, "description": own[s]} for s in statuses if s in own})
    known[ok[0]] = {"model": ok[1], "description": ok[2]}
    return known


class FormAnswer(BaseModel):
    organisations: list[str] = Field(description="the fire organisations taking referrals")
    agreement: dict[str, Any] = Field(description="the agreement's wording and its items")


class ReferralAnswer(BaseModel):
    referral: dict[str, Any] = Field(description="the referral as this role may see it")
    service_request: dict[str, Any] | None = Field(
        default=None, description="the referral as a FHIR R4 ServiceRequest"
    )


class QueueAnswer(BaseModel):
    organisation: str | None = Field(description="the receiving organisation (none: admin)")
    role: str
    sharing: FireSharing = Field(description="what this deployment shares with the fire service")
    referrals: list[dict[str, Any]]


NOT_FOUND = "no such referral that this key may see, or (creating one) no such person"
CONFLICT = "a move the state machine refuses, an open referral already made, or a stale score"


def refused(status: int, error: str, message: str) -> HTTPException:
    return HTTPException(status, detail={"error": error, "message": message})


def not_found() -> HTTPException:
    """The same answer for a referral that does not exist and one this key may not see."""
    return refused(404, "not_found", "no such referral that this key may see")


def unavailable() -> HTTPException:
    return refused(503, "referrals_unavailable", "the referral store cannot be used just now")


ReferralId = Path(
    pattern=ID_PATTERN, description="a referral id, e.g. ref-0123456789abcdef01234567"
)


# --- the routes -----------------------------------------------------------------------------


def referral_router(outcomes: Sequence[str]) -> APIRouter:
    """The /v1/referrals routes; a referral's `outcome` is one of the `outcomes` served."""
    routes = APIRouter(tags=["referrals"])  # the paths are the route table's
    _form_route(routes)
    _create_route(routes, request_for(outcomes))
    _queue_route(routes)
    _read_routes(routes)
    return routes


def _form_route(routes: APIRouter) -> None:
    @mount(
        routes,
        "referral_form",
        summary="What a referral form needs: the fire organisations and the agreement's words",
        response_model=None,
        responses=answers((200, FormAnswer, "the form's choices and words"), 422),
    )
    def referral_form(
        request: Request, principal: Principal = Depends(needs("referral_form"))
    ) -> dict[str, Any]:
        state = state_of(request)
        audit(state, principal, "referral_form", "ok", 200)
        return {
            "organisations": fire_organisations(state.keys),
            "agreement": {"wording": AGREEMENT_WORDING, "items": AGREEMENT_ITEMS},
        }


def request_for(outcomes: Sequence[str]) -> type[ReferralRequest]:
    """ReferralRequest whose `outcome` is an enum of the outcomes served (a 422 names it)."""
    name: Any = Literal[tuple(outcomes)]  # type: ignore[valid-type]
    return create_model(  # type: ignore[no-any-return, call-overload]
        "ReferralRequest",
        __base__=ReferralRequest,
        __doc__=ReferralRequest.__doc__,
        outcome=(name, Field(examples=[outcomes[0]])),
    )


def _create_route(routes: APIRouter, Body: type[ReferralRequest]) -> None:
    @mount(
        routes,
        "referral_create",
        status_code=201,
        summary="Refer a person to a fire service, with their recorded agreement",
        response_model=None,
        responses=answers(
            (201, ReferralAnswer, "the referral made"), *BODY_ERRORS, 404, 409, 451
        ),  # fmt: skip
    )
    def referral_create(
        request: Request,
        made: Body,  # type: ignore[valid-type]
        principal: Principal = Depends(needs("referral_create")),
    ) -> dict[str, Any]:
        body: ReferralRequest = made
        state = state_of(request)
        route = "referral_create"
        check_scope(state, principal, route, body.outcome, [body.person_id])
        try:
            outcome = state.scorer.resolve(body.outcome)
            _check_referable(state, principal, state.scorer.model(outcome).outcome, body)
            result = state.scorer.score_people(outcome, [body.person_id], clinical=False)[0]
        except ScoringError as error:  # not served, unknown, objected (451), outside the cohort
            raise refuse(state, principal, route, body.outcome, error) from None
        _check_basis(state, principal, body, result.model_version, result.index_date, result.band)
        if body.receiving_org not in fire_organisations(state.keys):
            audit(state, principal, route, "unknown_receiver", 422, person_ids=[body.person_id])
            message = f"{body.receiving_org!r} is not a fire organisation of this service"
            raise refused(422, "unknown_receiver", message)
        place = state.scorer.place(body.person_id)
        new = NewReferral(
            person_id=body.person_id,
            outcome=outcome,
            model_name=result.model_name,
            model_version=result.model_version,
            index_date=result.index_date,
            band=result.band,
            reasons=[
                SharedReason(**r.model_dump(include=set(SharedReason.model_fields)))
                for r in scope_reasons("fire", result.reasons, FEATURES)
            ],  # fmt: skip
            district=str(place["district"]),
            practice_code=str(place["practice_code"]),
            referring_org=principal.org,
            referred_by=principal.key_id,
            receiving_org=body.receiving_org,
            agreement=body.agreement,
        )
        try:
            referral = store_of(state).create(new)
        except ReferralError as error:
            audit(state, principal, route, error.error, error.status, person_ids=[body.person_id])
            raise refused(error.status, error.error, error.message) from None
        except ReferralStoreError:
            audit(state, principal, route, "store_unavailable", 503, person_ids=[body.person_id])
            raise unavailable() from None
        audit(state, principal, route, "ok", 201, person_ids=[body.person_id],
              outcome=outcome, bands=[referral.band])  # fmt: skip
        definition = state.scorer.model(outcome).outcome
        return {
            "referral": referral.view(principal.role),
            "service_request": referral_request(referral, definition),
        }


def _check_referable(
    state: ServiceState, principal: Principal, outcome: Outcome, body: ReferralRequest
) -> None:
    """Only an outcome whose definition leads to the home safety and falls check may refer to
    it (422 otherwise), so the fire service is never told of another risk."""
    if HOME_SAFETY_CHECK in outcome.referral_services:
        return
    audit(state, principal, "referral_create", "not_referable", 422, person_ids=[body.person_id])
    raise refused(
        422,
        "not_referable",
        f"the {outcome.title.lower()} outcome does not lead to a home safety and falls check",
    )


def _check_basis(
    state: ServiceState,
    principal: Principal,
    body: ReferralRequest,
    version: str,
    index_date: dt.date,
    band: str,
) -> None:
    """The referrer must have seen the score served now: same model version, snapshot and band
    (409 otherwise, with the current ones, so a stale page cannot refer on an old score)."""
    basis = body.score
    if (basis.model_version, basis.index_date, basis.band) == (version, index_date, band):
        return
    audit(state, principal, "referral_create", "stale_score", 409, person_ids=[body.person_id])
    raise refused(
        409,
        "stale_score",
        f"the score served now is model version {version}, data as at {index_date}, band "
        f"{band}; look the person up again before referring",
    )


def _queue_route(routes: APIRouter) -> None:
    @mount(
        routes,
        "referral_queue",
        summary="The referrals a fire organisation receives (the admin sees every one)",
        response_model=None,
        responses=answers((200, QueueAnswer, "the queue"), 422),
    )
    def referral_queue(
        request: Request,
        status: Status | None = None,
        district: str | None = Query(default=None, min_length=1, max_length=100),
        limit: int = Query(default=200, ge=1, le=1000),
        principal: Principal = Depends(needs("referral_queue")),
    ) -> dict[str, Any]:
        state = state_of(request)
        org = None if principal.role == "admin" else principal.org
        try:
            found = store_of(state).find(
                receiving_org=org, status=status, district=district, limit=limit
            )
        except ReferralStoreError:
            audit(state, principal, "referral_queue", "store_unavailable", 503)
            raise unavailable() from None
        audit(state, principal, "referral_queue", read_result(state, principal), 200,
              person_ids=[r.person_id for r in found], bands=[r.band for r in found])  # fmt: skip
        return {
            "organisation": org,
            "role": principal.role,
            "sharing": state.config.fire_sharing,
            "referrals": [r.view(principal.role) for r in found],
        }


def _read_routes(routes: APIRouter) -> None:
    @mount(
        routes,
        "referral_read",
        summary="One referral with its history and ServiceRequest",
        response_model=None,
        responses=answers((200, ReferralAnswer, "the referral and its history"), 404, 422),
    )
    def referral_read(
        request: Request,
        referral_id: str = ReferralId,
        principal: Principal = Depends(needs("referral_read")),
    ) -> dict[str, Any]:
        state = state_of(request)
        referral = _visible(state, principal, "referral_read", referral_id)
        audit(state, principal, "referral_read", read_result(state, principal), 200,
              person_ids=[referral.person_id], bands=[referral.band])  # fmt: skip
        answer: dict[str, Any] = {"referral": referral.view(principal.role)}
        if referral.outcome in state.scorer.models:
            definition = state.scorer.model(referral.outcome).outcome
            answer["service_request"] = referral_request(referral, definition)
        return answer

    @mount(
        routes,
        "referral_status",
        summary="Move a referral on: accepted, visited (with findings), declined, no_access "
        "or closed",
        response_model=None,
        responses=answers(
            (200, ReferralAnswer, "the referral moved on"), *BODY_ERRORS, 404, 409
        ),  # fmt: skip
    )
    def referral_status(
        request: Request,
        body: StatusChange,
        referral_id: str = ReferralId,
        principal: Principal = Depends(needs("referral_status")),
    ) -> dict[str, Any]:
        state = state_of(request)
        route = "referral_status"
        referral = _visible(state, principal, route, referral_id)
        actor = Actor(principal.org, principal.role, principal.key_id)
        people = [referral.person_id]
        try:
            moved = store_of(state).move(referral_id, body, actor)
        except ReferralError as error:
            audit(state, principal, route, error.error, error.status, person_ids=people)
            raise refused(error.status, error.error, error.message) from None
        except ReferralStoreError:
            audit(state, principal, route, "store_unavailable", 503, person_ids=people)
            raise unavailable() from None
        audit(state, principal, route, f"to_{moved.status}", 200, person_ids=people,
              bands=[moved.band])  # fmt: skip
        return {"referral": moved.view(principal.role)}


def _visible(state: ServiceState, principal: Principal, route: str, referral_id: str) -> Referral:
    """The referral, when this key may see it; 404 (audited) otherwise."""
    try:
        referral = store_of(state).get(referral_id)
    except ReferralStoreError:
        audit(state, principal, route, "store_unavailable", 503)
        raise unavailable() from None
    if referral is None or not may_read(referral, principal):
        audit(state, principal, route, "not_found", 404)
        raise not_found()
    return referral
