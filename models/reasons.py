"""A reason: one feature's part in one person's score, in plain words.

The one reason type, from the bundle (models.bundle) to the API's JSON (serving.score_results): the
service's fast path builds the same fields as plain data with `reason_fields` (a test holds the
two to the same field order) and serialises them without building a model per reason.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.feature_list import Feature

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


def shown_as_reason(feature: Feature, missing: Collection[str] = ()) -> bool:
    """Whether a feature may be given as a reason: it means something to act on, and the
    model's source could give it (a feature `missing` from the source is never a reason)."""
    return feature.explain and feature.name not in missing


def reason_fields(feature: Feature, label: str, value: Any, contribution: float) -> dict[str, Any]:
    """One reason as plain data, in Reason's field order: the one place a reason is made."""
    return {
        "feature": feature.name,
        "label": label,
        "value": value,
        "contribution": contribution,
        "direction": "raises" if contribution > 0 else "lowers",
        "modifiable": feature.modifiable,
        "clinical": feature.clinical,
    }


def make_reason(feature: Feature, label: str, value: Any, contribution: float) -> Reason:
    """A Reason from trusted parts (a bundle's own features and SHAP values), unvalidated."""
    return Reason.model_construct(**reason_fields(feature, label, value, contribution))
