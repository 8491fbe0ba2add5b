"""Settings of a synthetic county and the summary of one generation run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CountyConfig(BaseModel):
    """Everything that decides a county; the same config and seed give the same bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    people: Annotated[int, Field(ge=100, le=5_000_000)] = 20_000
    seed: Annotated[int, Field(ge=0)] = 0
    start: date = date(2022, 4, 1)
    end: date = date(2025, 3, 31)
    mess_rate: Annotated[float, Field(ge=0.0, le=0.2)] = 0.0
    # how traits combine into risk: "realistic" (non-additive effects that real linked data
    # show; synthetic/process.py REALISTIC_*) or "additive" (the control: every log-hazard a
    # sum of traits, the logistic baseline's own form)
    structure: Literal["realistic", "additive"] = "realistic"
    underrecording_practice_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.15
    # people simulated together (bounds memory; part of the seed's meaning)
    chunk_people: Annotated[int, Field(ge=1_000)] = 50_000
    people_per_practice: Annotated[int, Field(ge=500)] = 7_000
    people_per_lsoa: Annotated[int, Field(ge=100)] = 1_600
    # chance a frailty deficit is coded at all, at ordinary and at under-recording practices
    record_prob: Annotated[float, Field(gt=0.0, le=1.0)] = 0.85
    underrecord_prob: Annotated[float, Field(gt=0.0, le=1.0)] = 0.35

    @model_validator(mode="after")
    def _check_dates(self) -> CountyConfig:
        if self.start.day != 1:
            raise ValueError("start must be the first day of a month")
        after = date.fromordinal(self.end.toordinal() + 1)
        if after.day != 1:
            raise ValueError("end must be the last day of a month")
        if months_between(self.start, after) < 15:
            raise ValueError("the extract must cover at least 15 months")
        return self

    @property
    def months(self) -> int:
        """Number of whole months from start to end inclusive."""
        return months_between(self.start, date.fromordinal(self.end.toordinal() + 1))

    @property
    def index_months(self) -> list[int]:
        """Month offsets of the truth's index dates: every quarter from start+12 to end+1 day."""
        return list(range(12, self.months + 1, 3))

    def index_dates(self) -> list[date]:
        return [add_months(self.start, m) for m in self.index_months]


def months_between(a: date, b: date) -> int:
    return (b.year - a.year) * 12 + (b.month - a.month)


def add_months(d: date, months: int) -> date:
    total = d.year * 12 + d.month - 1 + months
    return date(total // 12, total % 12 + 1, 1)


@dataclass(frozen=True)
class GenerationSummary:
    """What one run wrote: rows per table, mess rows, truth rows and the seconds it took."""

    out_dir: str
    rows: dict[str, int]
    mess_rows: int
    truth_rows: int
    seconds: float
    index_dates: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "out_dir": self.out_dir,
            "rows": dict(self.rows),
            "total_rows": sum(self.rows.values()),
            "mess_rows": self.mess_rows,
            "truth_rows": self.truth_rows,
            "seconds": round(self.seconds, 3),
            "index_dates": list(self.index_dates),
        }
