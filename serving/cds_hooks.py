"""A CDS Hooks 2.0 service: a GP's clinical system shows the person's risk when the record opens.

    GET  /cds-services          discovery: one patient-view service per outcome served
    POST /cds-services/{id}     the service: ``carerisk-falls``, ``carerisk-complex-dependency``

Every call needs the client's signed JWT (serving/jwt_auth.py), audience the endpoint called at
the service's own address; the request guard (serving/request_guard.py) checks it before the body
is read, and a refusal is 401 (429 once the address is over its failed authentications). The
``patientId`` of the hook's context is mapped to a pseudonymised id by the
deployment's lookup (`PatientLookup`, ``<home>/cds_patients.csv``: ``patient_id,person_id``; the
demo maps them one to one). The answer is one card for a person in the outcome's cohort:

- ``summary`` (under 140 characters): the outcome, band and chance within the horizon;
- ``detail`` (markdown): the top reasons, those that could be acted on first, the model and
  the data's date, and any open referral;
- ``indicator`` by band: the highest band is critical, the next warning, the others info;
- ``source``: carerisk with the model and version, and the outcome as its topic;
- a link (``absolute``) to the practitioner page of the person, where a referral is recorded;
- the suggestion "Offer a home safety and falls check by the fire service", whose one action
  creates a draft FHIR ServiceRequest (referrals/fhir_requests.py); ``selectionBehavior``
  ``at-most-one``, and override reasons with their display. No suggestion when a referral is
  already open.

The answer is ``{"cards": []}`` when the patient is not in the lookup, not in the snapshot,
outside the cohort, has objected, or when the user is not a Practitioner or PractitionerRole
(the hook also fires for patients viewing their own record: a risk figure is not shown to them
without a clinician). CORS: the browser origins listed in the ``cds_cors_origins`` setting may
call the service (no credentials; preflights answered by Starlette's CORSMiddleware). Each call is
audited like the API's (role ``cds_client``, the client's organisation), before it is answered.
Errors are the API's ErrorBody (serving/score_results.py).
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from features.fhir_terms import SNOMED
from features.outcomes import HOME_SAFETY_CHECK, Outcome
from models.reasons import Reason
from referrals.fhir_requests import suggested_request
from serving.api import OUTSIDE_SCOPE, audit, scope_refusal
from serving.calls import current_call
from serving.cds_patients import FHIR_ID, PatientLookupError, lookup_at
from serving.jwt_auth import CdsClients
from serving.keys import Principal
from serving.referral_routes import fire_organisations, store_of
from serving.score_results import ScoreResult
from serving.scoring import ObjectedPeople, OutsideCohort, ScoringError, UnknownPeople
from serving.state import ServiceState

log = logging.getLogger("carerisk.serving")

HOOK = "patient-view"
SUMMARY_MAX = 139  # the specification: a summary of fewer than 140 characters
SUGGESTION = "Offer a home safety and falls check by the fire service"
OUTCOME_SYSTEM = "urn:carerisk:outcome"
OVERRIDE_SYSTEM = "urn:carerisk:override-reason"
OVERRIDE_REASONS = (
    ("person-declined", "The person declined a home visit"),
    ("already-supported", "Already has a home safety check or support at home"),
    ("not-now", "Not appropriate now"),
)
CLINICIANS = ("Practitioner", "PractitionerRole")
ERROR_NAMES = {401: "unauthenticated", 404: "not_found", 503: "unavailable"}
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


# --- the request ------------------------------------------------------------------------------


class FhirAuthorization(BaseModel):
    """An access token to the client's FHIR server (the service does not use it)."""

    model_config = ConfigDict(extra="allow")

    access_token: str = Field(min_length=1)
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    patient: str | None = None


class PatientViewContext(BaseModel):
    """The patient-view hook's context: who is looking, at whose record."""

    model_config = ConfigDict(extra="allow")

    userId: Annotated[
        str,
        StringConstraints(
            pattern=rf"^(Practitioner|PractitionerRole|Patient|RelatedPerson)/{FHIR_ID}$"
        ),
    ]
    patientId: Annotated[str, StringConstraints(pattern=rf"^{FHIR_ID}$")]
    encounterId: Annotated[str, StringConstraints(pattern=rf"^{FHIR_ID}$")] | None = None


class HookRequest(BaseModel):
    """A CDS Hooks call (extensions and unrequested prefetch are allowed and ignored)."""

    model_config = ConfigDict(extra="allow")

    hook: Literal["patient-view"]
    hookInstance: str = Field(min_length=1, max_length=128)
    fhirServer: AnyHttpUrl | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: PatientViewContext
    prefetch: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _server_with_token(self) -> HookRequest:
        if self.fhirAuthorization is not None and self.fhirServer is None:
            raise ValueError("fhirServer is required when fhirAuthorization is given")
        return self


@lru_cache(maxsize=8)
def clients_at(path: Path) -> CdsClients:
    return CdsClients(path)


# --- cards ------------------------------------------------------------------------------------


def service_id(outcome: Outcome) -> str:
    return outcome.model_name  # carerisk-falls


def discovery(outcomes: list[Outcome]) -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": HOOK,
                "title": f"carerisk: {outcome.title.lower()} risk",
                "description": f"The calibrated chance of {outcome.predicts}, its band and the "
                "person's main reasons, for people "
                f"{outcome.cohort.words}; with the offer of a home safety and falls check by "
                "the fire service.",
                "id": service_id(outcome),
                "usageRequirements": "The deployment maps the clinical system's Patient.id to "
                "carerisk's pseudonymised id; the client's JWT keys are registered with carerisk.",
            }
            for outcome in outcomes
        ]
    }


@dataclass(frozen=True)
class CardContext:
    """What a card is built from besides the score."""

    outcome: Outcome
    bands: tuple[str, ...]  # the model's band labels, lowest first
    base_url: str  # the service's address as the client reaches it
    receiving_org: str | None  # the one fire organisation, when there is only one
    referral: tuple[str, bool] | None  # the latest referral in words, and whether it is open


def risk_card(result: ScoreResult, ctx: CardContext) -> dict[str, Any]:
    """One card for one score (the clinical view)."""
    outcome = ctx.outcome
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary(result, outcome),
        "detail": detail(result, outcome, ctx.referral[0] if ctx.referral else None),
        "indicator": indicator(result.band, ctx.bands),
        "source": {
            "label": f"carerisk {result.model_name} version {result.model_version}",
            "topic": topic(outcome),
        },
        "links": [
            {
                "label": "Open the person in carerisk (to refer with their agreement)",
                "url": f"{ctx.base_url}/ui/person#{result.person_ref}",
                "type": "absolute",
            }
        ],
    }
    referable = HOME_SAFETY_CHECK in outcome.referral_services
    if referable and (ctx.referral is None or not ctx.referral[1]):  # none open already
        card["suggestions"] = [suggestion(result, ctx)]
        card["selectionBehavior"] = "at-most-one"
        card["overrideReasons"] = [
            {"system": OVERRIDE_SYSTEM, "code": code, "display": display}
            for code, display in OVERRIDE_REASONS
        ]
    return card


def summary(result: ScoreResult, outcome: Outcome) -> str:
    text = (
        f"{outcome.title} risk {result.band}: {result.probability * 100:.0f}% chance within "
        f"{outcome.horizon_months} months"
    )
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def detail(result: ScoreResult, outcome: Outcome, referral: str | None) -> str:
    act_on = [r for r in result.reasons if r.modifiable and r.direction == "raises"]
    others = [r for r in result.reasons if r not in act_on]
    lines = [
        f"**{escape(outcome.title)}: {escape(result.band)} band.** A "
        f"{result.probability * 100:.1f}% chance of {escape(outcome.predicts)}.",
        "",
        "What could be acted on:",
        *(_bullets(act_on) or ["- nothing among the top reasons"]),
        "",
        "Other reasons:",
        *(_bullets(others) or ["- none"]),
        "",
        f"Model {escape(result.model_name)} version {escape(result.model_version)}; data as at "
        f"{result.index_date.isoformat()}.",
    ]
    if referral:
        lines += ["", escape(referral)]
    lines += [f"\n_{escape(note)}_" for note in result.notes]
    return "\n".join(lines)


def _bullets(reasons: list[Reason]) -> list[str]:
    return [f"- {escape(r.label)} ({r.direction} risk)" for r in reasons]


def escape(text: str) -> str:
    """Text that markdown shows as written."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def indicator(band: str, bands: tuple[str, ...]) -> str:
    """The highest band is critical, the next warning, the rest info."""
    position = len(bands) - 1 - bands.index(band) if band in bands else len(bands)
    return {0: "critical", 1: "warning"}.get(position, "info")


def topic(outcome: Outcome) -> dict[str, str]:
    """The card's topic: the outcome's at-risk finding where its definition gives one."""
    if outcome.at_risk_finding:
        code, display = outcome.at_risk_finding
        return {"system": SNOMED, "code": code, "display": display}
    return {"system": OUTCOME_SYSTEM, "code": outcome.name, "display": outcome.title}


def suggestion(result: ScoreResult, ctx: CardContext) -> dict[str, Any]:
    resource = suggested_request(
        person_id=result.person_ref,
        outcome=ctx.outcome,
        band=result.band,
        model=(result.model_name, result.model_version),
        index_date=result.index_date,
        receiving_org=ctx.receiving_org,
    )
    return {
        "label": SUGGESTION,
        "uuid": str(uuid.uuid4()),
        "isRecommended": indicator(result.band, ctx.bands) != "info",
        "actions": [
            {
                "type": "create",
                "description": "Create a referral (ServiceRequest) to the fire and rescue service "
                "for a home safety and falls check, once the person has agreed",
                "resource": resource,
            }
        ],
    }


# --- the app ------------------------------------------------------------------------------------


class LateCors:
    """Starlette's CORSMiddleware, built on the first request with the origins the service's
    settings allow (the settings are read when the service starts, after this app is made)."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app, self.api = app, api
        self._cors: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._cors is None:
            state = getattr(self.api.state, "carerisk", None)
            origins = list(state.config.cds_cors_origins) if state else []
            self._cors = CORSMiddleware(
                self.app, allow_origins=origins, allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"], max_age=600,
            )  # fmt: skip
        await self._cors(scope, receive, send)


def build_cds_app(api: FastAPI) -> FastAPI:
    """The CDS Hooks routes, reading the service state that `api` holds once it has started."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    def state() -> ServiceState:
        call = current_call()  # the request guard pinned the request's state to one scorer
        if call is not None and call.state is not None:
            return call.state  # type: ignore[no-any-return]
        found = getattr(api.state, "carerisk", None)
        if found is None:
            raise HTTPException(503, detail="the service is starting")
        return found.pin()  # type: ignore[no-any-return]

    def client() -> Principal:
        """The CDS client the request guard verified (its JWT is checked before the body is
        read)."""
        call = current_call()
        if call is None or call.principal is None:
            raise HTTPException(401, detail="a signed JWT is needed (Authorization: Bearer <JWT>)")
        return call.principal

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = ERROR_NAMES.get(exc.status_code, f"http_{exc.status_code}")
        body = {"error": code, "message": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        call = current_call()
        audit(state(), call.principal if call else None, _route(request), "invalid", 422)
        fields = [
            {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        return JSONResponse(
            {"error": "invalid_request", "message": "the request does not fit", "fields": fields},
            status_code=422,
        )

    @app.get("/cds-services")
    def cds_discovery(who: Principal = Depends(client)) -> dict[str, Any]:
        current = state()
        audit(current, who, "cds_discovery", "ok", 200)
        return discovery(list(current.outcomes))

    @app.post("/cds-services/{service}")
    def cds_service(
        service: str, body: HookRequest, who: Principal = Depends(client)
    ) -> dict[str, Any]:
        current = state()
        outcome = {service_id(o): o for o in current.outcomes}.get(service)
        if outcome is None:
            audit(current, who, "cds_service", "unknown_service", 404)
            raise HTTPException(404, detail=f"no CDS service {service!r}")
        return answer(current, who, outcome, body, current.config.base_url)

    app.add_middleware(LateCors, api=api)  # outermost: preflights are answered first
    return app


def answer(
    state: ServiceState, who: Principal, outcome: Outcome, body: HookRequest, base: str
) -> dict[str, Any]:
    """The cards for one patient-view call, audited."""
    route, name = "cds_service", outcome.name
    if body.context.userId.split("/", 1)[0] not in CLINICIANS:
        audit(state, who, route, "not_a_clinician", 200, outcome=name)
        return {"cards": []}
    try:
        person = lookup_at(state.config.layout.cds_patients_path).person_of(body.context.patientId)
    except PatientLookupError as error:
        log.error("CDS patient lookup unusable: %s", type(error).__name__)
        audit(state, who, route, "lookup_unavailable", 503, outcome=name)
        raise HTTPException(503, detail="the patient lookup cannot be read") from None
    if person is None:
        audit(state, who, route, "no_patient", 200, outcome=name)
        return {"cards": []}
    if scope_refusal(state, who, [person]) is not None:  # not of the client's practices
        audit(state, who, route, OUTSIDE_SCOPE, 200, person_ids=[person], outcome=name)
        return {"cards": []}
    try:
        result = state.scorer.score_people(name, [person])[0]
    except (UnknownPeople, ObjectedPeople, OutsideCohort) as error:
        quiet = {404: "unknown_person", 451: "objected", 422: "outside_cohort"}[error.status]
        audit(state, who, route, quiet, 200, person_ids=[person], outcome=name)
        return {"cards": []}
    except ScoringError:
        audit(state, who, route, "not_served", 200, person_ids=[person], outcome=name)
        return {"cards": []}
    ctx = CardContext(
        outcome=outcome,
        bands=tuple(state.scorer.model(name).bundle.bands.labels),
        base_url=base,
        receiving_org=_only(fire_organisations(state.keys)),
        referral=referral_note(state, person, name),
    )
    card = risk_card(result, ctx)
    audit(state, who, route, "ok", 200, person_ids=[person], outcome=name, results=[result])
    return {"cards": [card]}


def referral_note(state: ServiceState, person: str, outcome: str) -> tuple[str, bool] | None:
    """The person's latest referral for the outcome in words, and whether it is still open."""
    found = store_of(state).find(person_id=person, outcome=outcome, limit=1)
    if not found:
        return None
    latest = found[0]
    words = (
        f"Referred to {latest.receiving_org} on {latest.created_at[:10]} by "
        f"{latest.referring_org}: {latest.status.replace('_', ' ')}"
    )
    if latest.visit_date:
        words += f" (visited {latest.visit_date.isoformat()})"
    return words + ".", latest.is_open


def _route(request: Request) -> str:
    return "cds_discovery" if request.url.path.rstrip("/") == "/cds-services" else "cds_service"


def _only(names: list[str]) -> str | None:
    return names[0] if len(names) == 1 else None
