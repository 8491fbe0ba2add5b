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
