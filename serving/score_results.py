"""Typed results the scoring API returns: one score, its reasons, and the fire service's view.

`probability` is the calibrated probability as a fraction from 0 to 1 (not a percentage).
`RestrictedScore` is what the fire role receives: band, rank and non-clinical reasons, and no
probability field at all (see `serving.roles.scope_result`). A reason is the bundle's own type
(models.reasons.Reason); outcomes and band labels are the registered outcomes' and the model's
(features/outcomes.py), so neither is listed here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from features.contract import PERSON_ID_PATTERN
from models.reasons import Reason

OUTCOME_FIELD = "a registered outcome's name (features/outcomes.py), e.g. falls"
BAND_FIELD = "the model's risk band, e.g. high"


class ScoreResult(BaseModel):
    """One person's score for one outcome, as gp, analyst and admin roles see it."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    person_ref: str = Field(pattern=PERSON_ID_PATTERN, description="pseudonymised person id")
    outcome: str = Field(min_length=1, description=OUTCOME_FIELD)
    model_name: str = Field(min_length=1)
    model_version: str = Field(min_length=1)
    index_date: dt.date
    probability: float = Field(ge=0.0, le=1.0, description="calibrated probability, 0 to 1")
    band: str = Field(min_length=1, description=BAND_FIELD)
    rank: int | None = Field(default=None, ge=1, description="1 = highest risk in the cohort")
    reasons: list[Reason] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class RestrictedScore(BaseModel):
    """The fire service's view of a score: no probability, no clinical reasons."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    person_ref: str = Field(pattern=PERSON_ID_PATTERN)
    outcome: str = Field(min_length=1, description=OUTCOME_FIELD)
    model_name: str
    model_version: str
    index_date: dt.date
    band: str = Field(min_length=1, description=BAND_FIELD)
    rank: int | None = None
    reasons: list[Reason] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class ScoreResponse(BaseModel):
    """The answer of the scoring routes: one result per person, in the order asked."""

    results: list[ScoreResult]


class OutcomeRefusal(BaseModel):
    """Why one outcome of a person view has no score: outside its cohort (with the cohort's
    sentence, for the clinical roles) or, for the fire role, just that there is none."""

    model_config = ConfigDict(extra="forbid")

    error: Literal["outside_cohort", "no_score"]
    message: str


class PersonAnswer(BaseModel):
    """`POST /v1/person`: every outcome served, as the caller's role may see it."""

    model_config = ConfigDict(extra="forbid")

    person_id: str = Field(pattern=PERSON_ID_PATTERN)
    role: str
    outcomes: dict[str, ScoreResult | RestrictedScore | OutcomeRefusal]


class Placed(BaseModel):
    district: str | None = None
    practice_code: str | None = None


class PlacedScore(ScoreResult, Placed):
    """A register row for the clinical roles: the score and the person's place."""


class PlacedRestrictedScore(RestrictedScore, Placed):
    """A register row for the fire role: band, rank, non-clinical reasons and the place."""


class RegisterAnswer(BaseModel):
    """`GET /v1/register` as JSON (rank 1 first); `format=csv` gives the same rows as text/csv."""

    model_config = ConfigDict(extra="forbid")

    outcome: str
    role: str
    people: list[PlacedScore | PlacedRestrictedScore]


class Coding(BaseModel):
    system: str
    code: str
    display: str | None = None
    version: str | None = None


class Concept(BaseModel):
    coding: list[Coding] | None = None
    text: str | None = None


class FhirPrediction(BaseModel):
    outcome: Concept
    probabilityDecimal: float = Field(ge=0, le=1)  # noqa: N815 - FHIR's name
    qualitativeRisk: Concept  # noqa: N815
    whenPeriod: dict[str, str]  # noqa: N815
    rationale: str | None = None


class FhirRiskAssessment(BaseModel):
    """A FHIR R4 RiskAssessment (serving/fhir.py): the parts carerisk writes."""

    resourceType: Literal["RiskAssessment"]  # noqa: N815
    status: Literal["final"]
    subject: dict[str, Any]
    occurrenceDateTime: str  # noqa: N815
    method: Concept
    prediction: list[FhirPrediction] = Field(min_length=1, max_length=1)
    mitigation: str | None = None
    note: list[dict[str, str]] | None = None


class OutcomeDescription(BaseModel):
    name: str
    title: str
    predicts: str
    horizon_months: int
    cohort: str
    bands: list[str]


class OutcomesAnswer(BaseModel):
    outcomes: list[OutcomeDescription]


class WhoAmI(BaseModel):
    org: str
    role: str
    key_id: str


class ObjectionsAnswer(BaseModel):
    objections: int = Field(ge=0, description="how many people the list now holds")


class VerifyAnswer(BaseModel):
    ok: bool
    records: int
    first_bad_seq: int | None = None
    reason: str = ""
    head_seq: int | None = None
    head_hash: str | None = None


class ServedModelVersion(BaseModel):
    outcome: str
    model_name: str
    model_version: str


class ServedState(BaseModel):
    """What a state serves: each outcome's champion and the snapshot's date."""

    models: list[ServedModelVersion]
    snapshot_date: dt.date


class ReloadAnswer(BaseModel):
    """A reload that happened: what this worker served before and serves now."""

    before: ServedState
    after: ServedState
    seconds: float = Field(description="how long the new state took to build")


class FieldError(BaseModel):
    path: str = Field(description="where in the request, e.g. body.person_ids.0")
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer: a short machine-readable error and a sentence for people."""

    error: str = Field(description="e.g. unauthenticated, forbidden, UnknownPeople")
    message: str
    person_ids: list[str] | None = Field(default=None, description="the people refused, if any")
    fields: list[FieldError] | None = Field(default=None, description="invalid request fields")


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI `responses` for a route's refusals (and the request guard's), all `ErrorBody`."""
    every = sorted({*GATE_ERRORS, *statuses})
    return {status: {"model": ErrorBody, "description": ERRORS[status]} for status in every}


# What every /v1 route may answer whatever it does: the request guard's refusals
# (serving/request_guard.py).
GATE_ERRORS = (401, 403, 408, 429, 431, 503)
BODY_ERRORS = (400, 413, 422)  # a route that reads a JSON body

ERRORS: dict[int, str] = {
    400: "the body cannot be read as JSON text",
    401: "no valid API key",
    403: "the key's role may not use this route",
    404: "a person is not in the latest snapshot (for the fire role: or has no score it may see)",
    408: "the request did not arrive in time",
    413: "the body or batch is over the limit",
    422: "the request does not fit the schema, or a person is outside the model's cohort",
    429: "the key's rate limit, or the client address's failed authentications, are used up "
    "(see Retry-After)",
    431: "the request head is over 32 KiB or 100 headers",
    451: "a person objected to risk stratification",
    503: "the audit trail cannot be written, so nothing is returned",
}
