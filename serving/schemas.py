"""Typed results the scoring API returns: one score, its reasons, and the fire service's view.

`probability` is the calibrated probability as a fraction from 0 to 1 (not a percentage).
`RestrictedScore` is what the fire role receives: band, rank and non-clinical reasons, and no
probability field at all (see `serving.roles.scope_result`).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.contract import PERSON_ID_PATTERN

Band = Literal["low", "moderate", "high", "very high"]
BANDS: tuple[Band, ...] = ("low", "moderate", "high", "very high")
OutcomeName = Literal["falls", "complex_dependency"]
Direction = Literal["raises", "lowers"]

ReasonValue = bool | int | float | str | None


class Reason(BaseModel):
    """One feature's contribution to a score, in plain words."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: str = Field(min_length=1, description="feature name in the registry")
    label: str = Field(min_length=1, description="plain words with the value filled in")
    value: ReasonValue = None
    contribution: float = Field(description="SHAP value on the model's log-odds scale")
    direction: Direction
    modifiable: bool
    clinical: bool

    @field_validator("value", mode="before")
    @classmethod
    def _plain_value(cls, value: object) -> object:
        """numpy scalars (np.int64, np.bool_) become the matching Python value."""
        item = getattr(value, "item", None)
        return item() if callable(item) and not isinstance(value, str) else value


class ScoreResult(BaseModel):
    """One person's score for one outcome, as gp, analyst and admin roles see it."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    person_ref: str = Field(pattern=PERSON_ID_PATTERN, description="pseudonymised person id")
    outcome: OutcomeName
    model_name: str = Field(min_length=1)
    model_version: str = Field(min_length=1)
    index_date: dt.date
    probability: float = Field(ge=0.0, le=1.0, description="calibrated probability, 0 to 1")
    band: Band
    rank: int | None = Field(default=None, ge=1, description="1 = highest risk in the cohort")
    reasons: list[Reason] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class RestrictedScore(BaseModel):
    """The fire service's view of a score: no probability, no clinical reasons."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    person_ref: str = Field(pattern=PERSON_ID_PATTERN)
    outcome: OutcomeName
    model_name: str
    model_version: str
    index_date: dt.date
    band: Band
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
