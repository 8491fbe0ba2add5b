"""Risk bands from calibrated probabilities: ordered cut points, one label per band.

The one band type: an outcome's default bands (features/outcomes.py), a trained bundle's bands
(models/bundle.py), the evaluation's capacity tables and the service's answers all use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RiskBands:
    """`cuts` are lower bounds of every band after the first; len(labels) == len(cuts) + 1."""

    cuts: tuple[float, ...]
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.cuts) + 1:
            raise ValueError(
                f"risk bands need one more label than cut points: {self.cuts} vs {self.labels}"
            )
        if any(not 0.0 < c < 1.0 for c in self.cuts) or list(self.cuts) != sorted(set(self.cuts)):
            raise ValueError(f"band cut points must rise strictly inside (0, 1): {self.cuts}")
        if len(set(self.labels)) != len(self.labels) or not all(self.labels):
            raise ValueError(f"band labels must be distinct and not empty: {self.labels}")

    def band(self, probabilities: Sequence[float] | np.ndarray) -> list[str]:
        """The band of each probability; a probability equal to a cut is in the upper band."""
        index = np.searchsorted(np.asarray(self.cuts), np.asarray(probabilities), side="right")
        return [self.labels[i] for i in index]

    def highest(self, count: int) -> tuple[str, ...]:
        """The labels of the `count` highest bands, highest first."""
        return tuple(reversed(self.labels))[:count]

    def to_dict(self) -> dict[str, Any]:
        return {"cuts": list(self.cuts), "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RiskBands:
        return cls(tuple(float(c) for c in data["cuts"]), tuple(data["labels"]))
