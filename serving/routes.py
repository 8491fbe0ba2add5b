"""The HTTP API's routes, built when the service starts from the outcomes it serves.

Request bodies that name an outcome are models built from the outcome registry (serving.api
`request_models`), so FastAPI validates an outcome against the registered names and the OpenAPI
document lists them. Each route reads the service state from the request (serving.api
`state_of`): authorise, score, audit, answer.

This module does not use postponed annotations: FastAPI reads each route's parameter types from
its signature, and the request models are local values, not names it could look up later.
"""

from typing import Any

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response

from features.outcomes import Outcome
from features.registry import FEATURES
from serving.api import (
    PersonRequest,
    RequestModels,
    audit,
    audit_async,
    check_batch,
    json_answer,
    needs,
    now_utc,
    refuse,
    refuse_async,
    scored_answer,
    state_of,
    unaudited,
)
from serving.audit import AuditUnavailable
from serving.fhir import risk_assessment
from serving.keys import Principal
from serving.referral_routes import fire_gate, read_result
from serving.register import RegisterQuery, ranked_register, to_csv
from serving.roles import scope_result, sees_clinical
from serving.schemas import ScoreResponse, error_responses
from serving.scoring import ObjectedPeople, ScoringError


def router(models: RequestModels) -> APIRouter:
    """Every /v1 route, with `models` as the bodies that name an outcome."""
    routes = APIRouter()
    _scoring_routes(routes, models)
    _people_routes(routes, models)
    _other_routes(routes)
    return routes


def _scoring_routes(routes: APIRouter, models: RequestModels) -> None:
    ScoreBody, RecordsBody = models.score, models.records

    @routes.post(
        "/score",
        summary="Score people by id, with reasons",
        response_model=ScoreResponse,
        responses=error_responses(401, 403, 404, 413, 422, 429, 451, 503),
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
        try:
            bands, answer = await scored_answer(state, outcome, person_ids)
        except ScoringError as error:
            raise await refuse_async(state, principal, "score", outcome, error) from None
        await audit_async(state, principal, "score", "ok", 200, person_ids=person_ids,
                          outcome=outcome, bands=bands)  # fmt: skip
        return answer

    @routes.post(
        "/score/records",
        summary="Score full feature records, with reasons",
        response_model=ScoreResponse,
        responses=error_responses(401, 403, 413, 422, 429, 451, 503),
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
        objected = [p for p in refs if p in state.scorer.objections]
        if objected:
            error = ObjectedPeople("these people have objected and are never scored", objected)
            raise refuse(state, principal, "score_records", outcome, error)
        results = state.scorer.score_frame(outcome, frame, refs, index_date=now_utc().date())
        audit(state, principal, "score_records", "ok", 200, person_ids=refs,
              outcome=outcome, results=results)  # fmt: skip
        return json_answer(ScoreResponse.model_construct(results=results))


def _people_routes(routes: APIRouter, models: RequestModels) -> None:
    FhirBody = models.fhir

    @routes.post(
        "/person",
        summary="Every outcome for one person, as the caller's role may see",
        responses=error_responses(401, 403, 404, 422, 429, 451, 503),
    )
    def person(
        request: Request, body: PersonRequest, principal: Principal = Depends(needs("person"))
    ) -> dict[str, Any]:
        state = state_of(request)
        fire_gate(state, principal, "person")
        answers: dict[str, Any] = {}
        for outcome in state.scorer.models:
            try:
                result = state.scorer.score_people(
                    outcome, [body.person_id], clinical=sees_clinical(principal.role)
                )[0]
            except ScoringError as error:
                if error.status != 422:  # unknown or objecting: refuse the whole request
                    raise refuse(state, principal, "person", outcome, error) from None
                answers[outcome] = {"error": "outside_cohort", "message": error.message}
                continue
            audit(state, principal, "person", read_result(state, principal), 200,
                  person_ids=[body.person_id],
                  outcome=outcome, results=[result])  # fmt: skip
            answers[outcome] = scope_result(principal.role, result, FEATURES).model_dump(
                mode="json"
            )
        return {"person_id": body.person_id, "role": principal.role, "outcomes": answers}

    @routes.post(
        "/fhir/risk-assessment",
        summary="One person's score as a FHIR R4 RiskAssessment",
        responses=error_responses(401, 403, 404, 422, 429, 451, 503),
    )
    def fhir(
        request: Request,
        body: FhirBody,  # type: ignore[valid-type]
        principal: Principal = Depends(needs("fhir")),
    ) -> dict[str, Any]:
        state = state_of(request)
        outcome, person_id = body.outcome, body.person_id  # type: ignore[attr-defined]
        try:
            result = state.scorer.score_people(outcome, [person_id])[0]
        except ScoringError as error:
            raise refuse(state, principal, "fhir", outcome, error) from None
        audit(state, principal, "fhir", "ok", 200, person_ids=[person_id],
              outcome=outcome, results=[result])  # fmt: skip
        definition = state.scorer.model(outcome).outcome
        return risk_assessment(result, definition, computed_at=now_utc())

    @routes.get(
        "/register",
        summary="A ranked risk register for a district or practice",
        responses=error_responses(401, 403, 422, 429, 503),
    )
    def register(
        request: Request,
        outcome: str,
        district: str | None = None,
        practice: str | None = None,
        top: int = 100,
        format: str = "json",
        principal: Principal = Depends(needs("register")),
    ) -> Any:
        state = state_of(request)
        fire_gate(state, principal, "register")
        try:
            name = state.scorer.resolve(outcome)
        except ScoringError as error:
            raise refuse(state, principal, "register", outcome, error) from None
        if not 1 <= top <= state.config.register_max:
            audit(state, principal, "register", "refused", 422, outcome=name)
            raise HTTPException(
                422,
                detail={
                    "error": "invalid_top",
                    "message": f"top must be 1 to {state.config.register_max}",
                },  # fmt: skip
            )
        query = RegisterQuery(name, district=district, practice=practice, top=top)
        try:
            found = ranked_register(state, principal, query, result=read_result(state, principal))
        except AuditUnavailable:
            raise unaudited("register") from None
        if format == "csv":
            return PlainTextResponse(to_csv(found.rows()), media_type="text/csv")
        return {"outcome": found.outcome, "role": principal.role, "people": found.scoped()}


def _other_routes(routes: APIRouter) -> None:
    @routes.get("/outcomes", summary="The outcomes served: titles, cohorts and band labels")
    def outcomes(
        request: Request, principal: Principal = Depends(needs("outcomes"))
    ) -> dict[str, Any]:
        state = state_of(request)
        audit(state, principal, "outcomes", "ok", 200)
        return {"outcomes": [_described(m.outcome, m.bundle.bands.labels)
                             for m in state.scorer.models.values()]}  # fmt: skip

    @routes.get("/whoami", summary="The organisation and role of the key presented")
    def whoami(request: Request, principal: Principal = Depends(needs("whoami"))) -> dict[str, Any]:
        audit(state_of(request), principal, "whoami", "ok", 200)
        return {"org": principal.org, "role": principal.role, "key_id": principal.key_id}

    @routes.post("/admin/objections/reload", summary="Re-read the objections list")
    def reload_objections(
        request: Request, principal: Principal = Depends(needs("reload_objections"))
    ) -> dict[str, Any]:
        state = state_of(request)
        count = state.scorer.objections.reload()
        audit(state, principal, "reload_objections", "ok", 200)
        return {"objections": count}

    @routes.get("/admin/audit/verify", summary="Verify the audit hash chain")
    def audit_verify(
        request: Request, principal: Principal = Depends(needs("audit_verify"))
    ) -> Any:
        state = state_of(request)
        audit(state, principal, "audit_verify", "ok", 200)
        return state.audit.verify().to_dict()


def _described(outcome: Outcome, bands: tuple[str, ...]) -> dict[str, Any]:
    return {
        "name": outcome.name,
        "title": outcome.title,
        "predicts": outcome.predicts,
        "horizon_months": outcome.horizon_months,
        "cohort": outcome.cohort.words,
        "bands": list(bands),
    }
