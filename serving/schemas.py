"""Typed results the scoring API returns: one score, its reasons, and the fire service's view.

`probability` is the calibrated probability as a fraction from 0 to 1 (not a percentage).
`RestrictedScore` is what the fire role receives: band, rank and non-clinical reasons, and no
probability field at all (see `serving.roles.scope_result`). A reason is the bundle's own type
(models.reasons.Reason); outcomes and band labels are the registered outcomes' and the model's
(features/outcomes.py), so neither is listed here.
"""

from __future__ import annotations

import datetime as dt

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
    """OpenAPI `responses` for a route's refusals, all with the `ErrorBody` shape."""
    return {status: {"model": ErrorBody, "description": ERRORS[status]} for status in statuses}


ERRORS: dict[int, str] = {
    401: "no valid API key",
    403: "the key's role may not use this route",
    404: "a person is not in the latest snapshot",
    413: "the body or batch is over the limit",
    422: "the request does not fit the schema, or a person is outside the model's cohort",
    429: "the key's rate limit is used up (see Retry-After)",
    451: "a person objected to risk stratification",
    503: "the audit trail cannot be written, so nothing is returned",
}
