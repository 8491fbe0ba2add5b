"""The HTTP API's routes, built when the service starts from the outcomes it serves.

Request bodies that name an outcome are models built from the outcome set (serving.api
`request_models`), so FastAPI validates an outcome against the registered names and the OpenAPI
document lists them. The request guard (serving/request_guard.py) has admitted the caller before a
route runs; each route reads the service state from the request (serving.api `state_of`): score,
audit, answer. Every route declares what it answers, errors included (one `ErrorBody` shape), and
its success's schema.

This module does not use postponed annotations: FastAPI reads each route's parameter types from
its signature, and the request models are local values, not names it could look up later.
"""

from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from features.feature_list import FEATURES
from features.objections import ObjectionListError
from features.outcomes import Outcome
from serving.api import (
    IN_CARE_HOME,
    OUTSIDE_SCOPE,
    PersonRequest,
    RequestModels,
    append_all,
    audit,
    audit_async,
    audit_entry,
    check_batch,
    check_scope,
    json_answer,
    mount,
    needs,
    now_utc,
    refuse,
    refuse_async,
    request_models,
    scope_refusal,
    scored_answer,
    state_of,
    unaudited,
)
from serving.audit import AuditEntry, AuditUnavailable
from serving.checkpoints import CheckpointError, read_checkpoints
from serving.config import ServingConfig
from serving.fhir import risk_assessment
from serving.keys import Principal
from serving.referral_routes import fire_gate, read_result, referral_router
from serving.risk_register import RegisterQuery, ranked_register, to_csv
from serving.roles import scope_result, sees_clinical
from serving.score_results import (
    BODY_ERRORS,
    ErrorBody,
    FhirRiskAssessment,
    ObjectionsAnswer,
    OutcomesAnswer,
    PersonAnswer,
    RegisterAnswer,
    ReloadAnswer,
    ScoreResponse,
    VerifyAnswer,
    WhoAmI,
    error_responses,
)
from serving.scoring import (
    NOT_IN_SNAPSHOT,
    ObjectedPeople,
    OutsideCohort,
    ScoringError,
    UnknownPeople,
)
from serving.state import ServiceState
from serving.swap import ReloadBusy, ReloadRefused


def v1_routers(outcomes: Sequence[Outcome], config: ServingConfig) -> list[APIRouter]:
    """The routers of every /v1 route for the outcomes served, each route mounted from the one
    route table (serving/roles.py `ROUTES`): this module's and the referrals'."""
    served = [o.name for o in outcomes]
    return [router(request_models(outcomes), config), referral_router(served)]


def router(models: RequestModels, config: ServingConfig) -> APIRouter:
    """Every /v1 route, with `models` as the bodies that name an outcome."""
    routes = APIRouter()
    _scoring_routes(routes, models)
    _person_route(routes)
    _fhir_route(routes, models)
    _register_route(routes, models, config)
    _other_routes(routes)
    return routes


def _scoring_routes(routes: APIRouter, models: RequestModels) -> None:
    ScoreBody, RecordsBody = models.score, models.records

    @mount(
        routes,
        "score",
        summary="Score people by id, with reasons",
        response_model=ScoreResponse,
        responses=error_responses(*BODY_ERRORS, 404, 451),
    )
    async def score(
        request: Request,
        body: ScoreBody,  # type: ignore[valid-type]
        principal: Principal = Depends(needs("score")),
    ) -> Response:
        # The busiest route, so a coroutine on the event loop: no thread hop before scoring one
        # person from the snapshot (larger batches are scored in a thread).
        state = state_of(request)
        outcome, person_ids = body.outcome, body.person_ids  # type: ignore[attr-defined]
        if len(person_ids) > state.config.max_batch:
            await audit_async(state, principal, "score", "refused", 413, outcome=outcome)
        check_batch(state, len(person_ids))
        refusal = scope_refusal(state, principal, person_ids)
        if refusal is not None:
            raise await refuse_async(state, principal, "score", outcome, refusal, OUTSIDE_SCOPE)
        try:
            bands, answer = await scored_answer(state, outcome, person_ids)
        except ScoringError as error:
            raise await refuse_async(state, principal, "score", outcome, error) from None
        await audit_async(state, principal, "score", "ok", 200, person_ids=person_ids,
                          outcome=outcome, bands=bands)  # fmt: skip
        return answer

    @mount(
        routes,
        "score_records",
        summary="Score full feature records, with reasons",
        description=(
            "Each record holds every registry feature (null where unknown; age_years always), "
            f"of its registry type and range, and `{IN_CARE_HOME}`. A record outside the "
            "outcome's cohort (too young, or in a care home where the cohort leaves care-home "
            "residents out) is refused with 422 and the cohort's definition."
        ),
        response_model=ScoreResponse,
        responses=error_responses(*BODY_ERRORS, 451),
    )
    def score_records(
        request: Request,
        body: RecordsBody,  # type: ignore[valid-type]
        principal: Principal = Depends(needs("score_records")),
    ) -> Response:
        state = state_of(request)
        outcome, records = body.outcome, body.records  # type: ignore[attr-defined]
        if len(records) > state.config.max_batch:
            audit(state, principal, "score_records", "refused", 413, outcome=outcome)
        check_batch(state, len(records))
        frame = pd.DataFrame([r.model_dump() for r in records])
        refs = frame.pop("person_ref").tolist()
        in_care_home = frame.pop(IN_CARE_HOME).tolist()
        definition = state.scorer.model(outcome).outcome
        outside = outside_cohort(definition, frame["age_years"].tolist(), in_care_home, refs)
        if outside:
            error: ScoringError = OutsideCohort(definition.outside_cohort(), outside)
            raise refuse(state, principal, "score_records", outcome, error)
        objected = [p for p in refs if p in state.scorer.objections]
        if objected:
            error = ObjectedPeople("these people have objected and are never scored", objected)
            raise refuse(state, principal, "score_records", outcome, error)
        results = state.scorer.score_frame(outcome, frame, refs, index_date=now_utc().date())
        audit(state, principal, "score_records", "ok", 200, person_ids=refs,
              outcome=outcome, results=results)  # fmt: skip
        return json_answer(ScoreResponse.model_construct(results=results))


def outside_cohort(
    outcome: Outcome, ages: Sequence[float], in_care_home: Sequence[bool], refs: Sequence[str]
) -> list[str]:
    """The records' people the outcome's cohort rule leaves out (features/outcomes.py)."""
    cohort = outcome.cohort
    return [
        ref
        for ref, age, care in zip(refs, ages, in_care_home, strict=True)
        if age < cohort.min_age or (cohort.exclude_care_home and care)
    ]


# --- one person --------------------------------------------------------------------------

NO_SCORE = {"error": "no_score", "message": "no score for this outcome"}


def _person_route(routes: APIRouter) -> None:
    @mount(
        routes,
        "person",
        summary="Every outcome for one person, as the caller's role may see",
        description=(
            "The clinical roles see each outcome's score, or why there is none (outside its "
            "cohort, with the cohort's definition); an unknown id is 404 and an objector 451. "
            "The fire role sees the scores it may see; for an outcome without one it is told "
            "only that there is none, and a person with no score it may see (unknown, "
            "objected or outside every cohort) is 404, the same answer as an unknown id."
        ),
        response_model=None,
        responses={
            200: {"model": PersonAnswer, "description": "the person's outcomes"},
            **error_responses(*BODY_ERRORS, 404, 451),
        },  # fmt: skip
    )
    def person(
        request: Request, body: PersonRequest, principal: Principal = Depends(needs("person"))
    ) -> dict[str, Any]:
        state = state_of(request)
        fire_gate(state, principal, "person")
        clinical = sees_clinical(principal.role)
        read = read_result(state, principal)
        answers: dict[str, Any] = {}
        entries: list[AuditEntry] = []
        pid = body.person_id
        check_scope(state, principal, "person", "", [pid])
        for outcome in state.scorer.models:
            try:
                result = state.scorer.score_people(outcome, [pid], clinical=clinical)[0]
            except OutsideCohort as error:
                answers[outcome] = (
                    {"error": "outside_cohort", "message": error.message} if clinical else NO_SCORE
                )
                entries.append(audit_entry(state, principal, "person", "outside_cohort", 200,
                                           person_ids=[pid], outcome=outcome))  # fmt: skip
                continue
            except ScoringError as error:  # unknown or objecting: the whole request is refused
                raise _refused_person(state, principal, pid, outcome, error, clinical) from None
            entries.append(audit_entry(state, principal, "person", read, 200, person_ids=[pid],
                                       outcome=outcome, results=[result]))  # fmt: skip
            answers[outcome] = scope_result(principal.role, result, FEATURES).model_dump(
                mode="json"
            )
        if not clinical and all(a is NO_SCORE for a in answers.values()):
            nowhere = OutsideCohort("outside every cohort", [pid])
            raise _refused_person(state, principal, pid, None, nowhere, clinical)
        append_all(state, entries)
        return {"person_id": pid, "role": principal.role, "outcomes": answers}


def _refused_person(
    state: ServiceState,
    principal: Principal,
    pid: str,
    outcome: str | None,
    error: ScoringError,
    clinical: bool,
) -> HTTPException:
    """The refusal of a person view. The fire role gets what an unknown id gets, whatever the
    reason, so it cannot learn that the id exists or why it has no score; the audit records
    the reason."""
    if clinical:
        return refuse(state, principal, "person", outcome or "", error)
    shown = UnknownPeople(NOT_IN_SNAPSHOT, [pid])
    reason = {ObjectedPeople: "objected", OutsideCohort: "outside_cohort"}.get(
        type(error), "refused"
    )
    append_all(state, [audit_entry(state, principal, "person", reason, shown.status,
                                   person_ids=[pid], outcome=outcome)])  # fmt: skip
    detail = {"error": "UnknownPeople", "message": shown.message, "person_ids": [pid]}
    return HTTPException(shown.status, detail=detail)


def _fhir_route(routes: APIRouter, models: RequestModels) -> None:
    FhirBody = models.fhir

    @mount(
        routes,
        "fhir",
        summary="One person's score as a FHIR R4 RiskAssessment",
        response_model=None,
        responses={
            200: {"model": FhirRiskAssessment, "description": "a RiskAssessment"},
            **error_responses(*BODY_ERRORS, 404, 451),
        },  # fmt: skip
    )
    def fhir(
        request: Request,
        body: FhirBody,  # type: ignore[valid-type]
        principal: Principal = Depends(needs("fhir")),
    ) -> dict[str, Any]:
        state = state_of(request)
        outcome, person_id = body.outcome, body.person_id  # type: ignore[attr-defined]
        check_scope(state, principal, "fhir", outcome, [person_id])
        try:
            result = state.scorer.score_people(outcome, [person_id])[0]
        except ScoringError as error:
            raise refuse(state, principal, "fhir", outcome, error) from None
        audit(state, principal, "fhir", "ok", 200, person_ids=[person_id],
              outcome=outcome, results=[result])  # fmt: skip
        definition = state.scorer.model(outcome).outcome
        return risk_assessment(result, definition, computed_at=now_utc())


# --- registers -----------------------------------------------------------------------------


def _register_route(routes: APIRouter, models: RequestModels, config: ServingConfig) -> None:
    Outcomes: Any = Literal[models.outcomes]  # type: ignore[valid-type]
    most = config.register_max
    csv = {"text/csv": {"schema": {"type": "string", "description": "the register's rows"}}}

    @mount(
        routes,
        "register",
        summary="A ranked risk register for a district or practice",
        description=(
            "A GP key acting for named practices sees only theirs: another practice is 404; "
            "with no practice asked for, a key for one practice gets its register and a key for "
            "several must name one (422)."
        ),
        response_model=None,
        responses={
            200: {
                "model": RegisterAnswer,
                "content": csv,
                "description": "the register, as JSON or (format=csv) CSV",
            },
            **error_responses(422),
            404: {"model": ErrorBody, "description": "a practice outside the key's practices"},
        },  # fmt: skip
    )
    def register(
        request: Request,
        outcome: Outcomes,
        district: str | None = Query(None, max_length=100),
        practice: str | None = Query(None, max_length=20),
        top: int = Query(
            100, description=f"1 to {most}", json_schema_extra={"minimum": 1, "maximum": most}
        ),  # fmt: skip
        format: Literal["json", "csv"] = "json",
        principal: Principal = Depends(needs("register")),
    ) -> Any:
        state = state_of(request)
        fire_gate(state, principal, "register")
        if not 1 <= top <= state.config.register_max:
            audit(state, principal, "register", "refused", 422, outcome=outcome)
            message = f"top must be 1 to {state.config.register_max}"
            raise HTTPException(422, detail={"error": "invalid_top", "message": message})
        practice = _register_practice(state, principal, outcome, practice)
        query = RegisterQuery(outcome, district=district, practice=practice, top=top)
        try:
            found = ranked_register(state, principal, query, result=read_result(state, principal))
        except ScoringError as error:
            raise refuse(state, principal, "register", outcome, error) from None
        except AuditUnavailable:
            raise unaudited("register") from None
        if format == "csv":
            return PlainTextResponse(to_csv(found.rows()), media_type="text/csv")
        return {"outcome": found.outcome, "role": principal.role, "people": found.scoped()}


def _register_practice(
    state: ServiceState, principal: Principal, outcome: str, practice: str | None
) -> str | None:
    """The practice a register is ranked within. A key acting for some practices sees only
    theirs: another practice is 404 (audited as outside_scope), and with none asked for, a key
    for one practice gets that practice's register and a key for several must name one."""
    if principal.practices is None:
        return practice
    if practice is None and len(principal.practices) == 1:
        return next(iter(principal.practices))
    if practice is None:
        audit(state, principal, "register", "practice_needed", 422, outcome=outcome)
        named = ", ".join(sorted(principal.practices)) or "none"
        message = f"this key acts for practices {named}: name one with practice="
        raise HTTPException(422, detail={"error": "practice_needed", "message": message})
    if not principal.covers(practice):
        audit(state, principal, "register", OUTSIDE_SCOPE, 404, outcome=outcome)
        message = "no such practice that this key may see"
        raise HTTPException(404, detail={"error": "not_found", "message": message})
    return practice


# --- the rest ----------------------------------------------------------------------------


def _other_routes(routes: APIRouter) -> None:
    @mount(
        routes,
        "outcomes",
        summary="The outcomes served: titles, cohorts and band labels",
        response_model=OutcomesAnswer,
        responses=error_responses(),
    )
    def outcomes(
        request: Request, principal: Principal = Depends(needs("outcomes"))
    ) -> dict[str, Any]:
        state = state_of(request)
        audit(state, principal, "outcomes", "ok", 200)
        return {"outcomes": [_described(m.outcome, m.bundle.bands.labels)
                             for m in state.scorer.models.values()]}  # fmt: skip

    @mount(
        routes,
        "whoami",
        summary="The organisation and role of the key presented",
        response_model=WhoAmI,
        responses=error_responses(),
    )
    def whoami(request: Request, principal: Principal = Depends(needs("whoami"))) -> dict[str, Any]:
        audit(state_of(request), principal, "whoami", "ok", 200)
        return {"org": principal.org, "role": principal.role, "key_id": principal.key_id}

    @mount(
        routes,
        "reload_objections",
        summary="Re-read the objections list",
        description="A malformed file is 422 naming its line (never its content); the list "
        "in use is kept.",
        response_model=ObjectionsAnswer,
        responses=error_responses(422),
    )
    def reload_objections(
        request: Request, principal: Principal = Depends(needs("reload_objections"))
    ) -> dict[str, Any]:
        state = state_of(request)
        try:
            count = state.scorer.objections.reload()
        except ObjectionListError as error:
            audit(state, principal, "reload_objections", "invalid", 422)
            detail = {"error": "invalid_objections", "message": str(error)}
            raise HTTPException(422, detail=detail) from None
        audit(state, principal, "reload_objections", "ok", 200)
        return {"objections": count}

    _reload_route(routes)

    @mount(
        routes,
        "audit_verify",
        summary="Verify the audit hash chain (against the checkpoints, when configured)",
        response_model=VerifyAnswer,
        responses=error_responses(),
    )
    def audit_verify(
        request: Request, principal: Principal = Depends(needs("audit_verify"))
    ) -> Any:
        state = state_of(request)
        audit(state, principal, "audit_verify", "ok", 200)
        folder = state.config.audit_checkpoints
        try:
            checkpoints = read_checkpoints(folder) if folder else []
        except CheckpointError as error:
            return {"ok": False, "records": state.audit.count(), "reason": str(error)}
        return state.audit.verify(checkpoints).to_dict()


RELOAD_DOC = (
    "Build a new state beside the one served (the registry's champions, verified; the snapshot; "
    "the objections; every probability) and switch to it: requests under way finish on the old "
    "one. The other workers follow within seconds. A new state that cannot be served (a bundle "
    "whose checksum fails, a feature list that disagrees with the registry, no snapshot) is "
    "refused with 422 saying why, and the old state goes on serving; 409 while a reload is "
    "under way."
)


def _reload_route(routes: APIRouter) -> None:
    @mount(
        routes,
        "reload_service",
        summary="Swap in the registry's champions and the latest snapshot, without downtime",
        description=RELOAD_DOC,
        response_model=ReloadAnswer,
        responses={
            **error_responses(),
            409: {"model": ErrorBody, "description": "a reload is under way"},
            422: {"model": ErrorBody, "description": "the new state cannot be served: why"},
        },  # fmt: skip
    )
    async def reload_service(
        request: Request, principal: Principal = Depends(needs("reload_service"))
    ) -> dict[str, Any]:
        state = state_of(request)
        if state.reloads is None:  # served without the service's reloads (e.g. in a test)
            refused: ReloadRefused = ReloadBusy("this process does not reload")
        else:
            try:  # built in a worker thread: the event loop goes on answering
                reloaded = await run_in_threadpool(state.reloads.reload, announce=True)
            except ReloadRefused as error:
                refused = error
            else:
                await audit_async(state, principal, "reload_service", "ok", 200)
                return reloaded.to_dict()
        await audit_async(state, principal, "reload_service", "refused", refused.status)
        detail = {"error": refused.code, "message": str(refused)}
        raise HTTPException(refused.status, detail=detail)


def _described(outcome: Outcome, bands: tuple[str, ...]) -> dict[str, Any]:
    return {
        "name": outcome.name,
        "title": outcome.title,
        "predicts": outcome.predicts,
        "horizon_months": outcome.horizon_months,
        "cohort": outcome.cohort.words,
        "bands": list(bands),
    }
