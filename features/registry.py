"""The feature registry: the one place a feature is defined.

Training, serving, registers and reports read features only through `FEATURES`.
Each entry says what the feature is in plain words, where it comes from, its window,
whether a practitioner can act on it, whether it is clinical (hidden from the fire
service), and the direction of its expected effect on each outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["falls", "complex_dependency"]
OUTCOMES: tuple[Outcome, ...] = ("falls", "complex_dependency")
FeatureKind = Literal["numeric", "binary", "categorical"]


@dataclass(frozen=True)
class Feature:
    name: str
    label: str  # plain words with a {value} placeholder, e.g. "{value} falls in the last 12 months"
    sources: tuple[str, ...]  # contract tables it reads
    kind: FeatureKind = "numeric"
    window_days: int | None = None  # lookback; None for "ever" or status at the index date
    unit: str = ""
    modifiable: bool = False  # something a practitioner can act on
    clinical: bool = True  # diagnoses, medicines, hospital detail: never shown to the fire role
    # +1 raises risk, -1 lowers it, 0 no stated direction; by outcome
    direction: Mapping[str, int] = field(default_factory=dict)
    # use the direction as a monotone constraint in training (clinically justified only)
    constrain: bool = False
    categories: tuple[str, ...] = ()  # for categorical features, the known levels in order
    minimum: float | None = None
    maximum: float | None = None

    def direction_for(self, outcome: str) -> int:
        return int(self.direction.get(outcome, 0))

    def describe(self, value: object) -> str:
        """The label with the person's value filled in."""
        return self.label.format(value=value)
