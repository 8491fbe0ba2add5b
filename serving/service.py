"""The carerisk scoring service: a BentoML 1.4 service with its HTTP API under /v1.

Start it with `carerisk serve` (which imports the champions and checks them first). Every route
but BentoML's health probes (/livez, /readyz) needs an API key; every scoring answer is audited
before it is returned, and none is returned when the audit cannot be written (503).

Probabilities are calibrated fractions from 0 to 1. FHIR `probabilityDecimal` uses the same
scale (see serving/fhir.py).
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import bentoml
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from features.registry import FEATURES
from serving.api import (
    ROUTE_NAMES,
    FhirRequest,
    PersonRequest,
    RecordsRequest,
    ScoreRequest,
    audit,
    audit_async,
    check_batch,
    json_answer,
    needs,
    now_utc,
    presented_key,
    refuse,
    refuse_async,
    scored_answer,
    state_of,
)
from serving.config import ServingConfig
from serving.fhir import risk_assessment
from serving.keys import Principal
from serving.limits_http import BodyLimit
from serving.register import register_rows, to_csv
from serving.roles import scope_result, sees_clinical
from serving.schemas import ScoreResponse, error_responses
from serving.scoring import ScoringError, check_outcome
from serving.state import build_state
from serving.ui import build_ui_app

log = logging.getLogger("carerisk.serving")

api = FastAPI(
    title="carerisk scoring API",
    version="1",
    description=(
        "Calibrated 12-month risk of a fall (aged 65+) and of complex dependency (aged 18+), "
        "with each person's top reasons from TreeSHAP in plain words. Authenticate with "
        "`Authorization: Bearer <key>`. Probabilities are fractions from 0 to 1, also in FHIR "
        "RiskAssessment.prediction.probabilityDecimal. The fire role receives band, rank and "
        "non-clinical reasons only."
    ),
    docs_url=None,  # the Swagger page loads scripts from a CDN; /v1/openapi.json is served
    redoc_url=None,
)


@api.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field's path; audited (without the values) when the key is valid."""
    state = state_of(request)
    principal = getattr(request.state, "principal", None)
    if principal is None:  # the body failed to parse before the key was checked
        principal = state.keys.check(presented_key(request) or "").principal
    route = ROUTE_NAMES.get(request.url.path, "unknown")
    await audit_async(state, principal, route, "invalid", 422)
    errors = [
        {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]
    return JSONResponse(
        {"error": "invalid_request", "message": "the request does not fit", "fields": errors},
        status_code=422,
    )


@api.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    detail: Any = exc.detail
    if not isinstance(detail, dict):
        detail = {"error": f"http_{exc.status_code}", "message": str(detail)}
    return JSONResponse(detail, status_code=exc.status_code, headers=exc.headers)


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected %s on %s", type(exc).__name__, request.url.path)
    return JSONResponse({"error": "internal", "message": "unexpected error"}, status_code=500)


api.add_middleware(BodyLimit, max_bytes=ServingConfig.model_fields["max_body_bytes"].default)


@api.post(
    "/score",
    summary="Score people by id, with reasons",
    response_model=ScoreResponse,
    responses=error_responses(401, 403, 404, 413, 422, 429, 451, 503),
)
async def score(
    request: Request, body: ScoreRequest, principal: Principal = Depends(needs("score"))
) -> Response:
    # The busiest route, so a plain function on the event loop: BentoML gives a class method
    # its `self` through a synchronous dependency, a thread hop that cost more than scoring one
    # person from the snapshot.
    state = state_of(request)
    outcome = check_outcome(body.outcome)
    if len(body.person_ids) > state.config.max_batch:
        await audit_async(state, principal, "score", "refused", 413, outcome=outcome)
    check_batch(state, len(body.person_ids))
    try:
        bands, answer = await scored_answer(state, outcome, body.person_ids)
    except ScoringError as error:
        raise await refuse_async(state, principal, "score", outcome, error) from None
    await audit_async(state, principal, "score", "ok", 200, person_ids=body.person_ids,
                      outcome=outcome, bands=bands)  # fmt: skip
    return answer


@bentoml.service(name="carerisk", traffic={"timeout": 30})
@bentoml.asgi_app(api, path="/v1")
@bentoml.asgi_app(build_ui_app(), path="/ui")  # practitioner pages (serving/ui.py)
class CareRisk:
    """Loads the verified champions and the latest snapshot once, then answers."""

    def __init__(self) -> None:
        logging.getLogger("carerisk").setLevel(logging.INFO)  # counts and names, no people
        config = ServingConfig.from_env()
        self.state = build_state(config)
        api.state.carerisk = self.state
        # The snapshot's long-lived objects (ids, lookups) never become garbage; kept out of the
        # collector's full passes, they stop stalling requests (20,000 people: batch p99 172 ms
        # before, 51 ms after).
        gc.freeze()

    @api.post(
        "/score/records",
        summary="Score full feature records, with reasons",
        response_model=ScoreResponse,
        responses=error_responses(401, 403, 413, 422, 429, 451, 503),
    )
    def score_records(
        self, body: RecordsRequest, principal: Principal = Depends(needs("score_records"))
    ) -> Response:
        state = self.state
        outcome = check_outcome(body.outcome)
        if len(body.records) > state.config.max_batch:
            audit(state, principal, "score_records", "refused", 413, outcome=outcome)
        check_batch(state, len(body.records))
        frame = pd.DataFrame([r.model_dump() for r in body.records])  # type: ignore[attr-defined]
        refs = frame.pop("person_ref").tolist()
        objected = [p for p in refs if p in state.scorer.objections]
        if objected:
            from serving.scoring import ObjectedPeople

            error = ObjectedPeople("these people have objected and are never scored", objected)
            raise refuse(state, principal, "score_records", outcome, error)
        results = state.scorer.score_frame(outcome, frame, refs, index_date=now_utc().date())
        audit(state, principal, "score_records", "ok", 200, person_ids=refs,
              outcome=outcome, results=results)  # fmt: skip
        return json_answer(ScoreResponse.model_construct(results=results))

    @api.post(
        "/person",
        summary="Both outcomes for one person, as the caller's role may see",
        responses=error_responses(401, 403, 404, 422, 429, 451, 503),
    )
    def person(
        self, body: PersonRequest, principal: Principal = Depends(needs("person"))
    ) -> dict[str, Any]:
        state = self.state
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
            audit(state, principal, "person", "ok", 200, person_ids=[body.person_id],
                  outcome=outcome, results=[result])  # fmt: skip
            answers[outcome] = scope_result(principal.role, result, FEATURES).model_dump(
                mode="json"
            )
        return {"person_id": body.person_id, "role": principal.role, "outcomes": answers}

    @api.post(
        "/fhir/risk-assessment",
        summary="One person's score as a FHIR R4 RiskAssessment",
        responses=error_responses(401, 403, 404, 422, 429, 451, 503),
    )
    def fhir(
        self, body: FhirRequest, principal: Principal = Depends(needs("fhir"))
    ) -> dict[str, Any]:
        state = self.state
        outcome = check_outcome(body.outcome)
        try:
            result = state.scorer.score_people(outcome, [body.person_id])[0]
        except ScoringError as error:
            raise refuse(state, principal, "fhir", outcome, error) from None
        audit(state, principal, "fhir", "ok", 200, person_ids=[body.person_id],
              outcome=outcome, results=[result])  # fmt: skip
        return risk_assessment(result, computed_at=now_utc())

    @api.get(
        "/register",
        summary="A ranked risk register for a district or practice",
        responses=error_responses(401, 403, 422, 429, 503),
    )
    def register(
        self,
        outcome: str,
        district: str | None = None,
        practice: str | None = None,
        top: int = 100,
        format: str = "json",
        principal: Principal = Depends(needs("register")),
    ) -> Any:
        state = self.state
        try:
            name = check_outcome(outcome)
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
        places, results = state.scorer.ranked(
            name, district=district, practice=practice, top=top,
            clinical=sees_clinical(principal.role),
        )  # fmt: skip
        audit(state, principal, "register", "ok", 200, person_ids=[r.person_ref for r in results],
              outcome=name, results=results)  # fmt: skip
        frame = register_rows(places, results, principal.role)
        if format == "csv":
            return PlainTextResponse(to_csv(frame), media_type="text/csv")
        scoped = [
            scope_result(principal.role, r, FEATURES).model_dump(mode="json") for r in results
        ]
        for row, (_, place) in zip(scoped, places.iterrows(), strict=True):
            row["district"], row["practice_code"] = place["district"], place["practice_code"]
        return {"outcome": name, "role": principal.role, "people": scoped}

    @api.get("/whoami", summary="The organisation and role of the key presented")
    def whoami(self, principal: Principal = Depends(needs("whoami"))) -> dict[str, Any]:
        audit(self.state, principal, "whoami", "ok", 200)
        return {"org": principal.org, "role": principal.role, "key_id": principal.key_id}

    @api.post("/admin/objections/reload", summary="Re-read the objections list")
    def reload_objections(
        self, principal: Principal = Depends(needs("reload_objections"))
    ) -> dict[str, Any]:
        count = self.state.scorer.objections.reload()
        audit(self.state, principal, "reload_objections", "ok", 200)
        return {"objections": count}

    @api.get("/admin/audit/verify", summary="Verify the audit hash chain")
    def audit_verify(self, principal: Principal = Depends(needs("audit_verify"))) -> Any:
        audit(self.state, principal, "audit_verify", "ok", 200)
        return self.state.audit.verify().to_dict()
