"""Outcome labels over the horizon [D, D + horizon months), as clinical.md defines them.

Each outcome's label function (named by its definition in features/outcomes.py) returns the
people with an outcome event in the horizon; `labels` turns that into one row per person.
Deaths end follow-up: outcome events dated after the death do not count (an event on the
day of death does). `died_before_event` marks a death inside the horizon with no outcome
event on or before it: the competing event. `follow_up_days` runs from D to the death or
the end of the horizon, whichever comes first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import ibis
import ibis.expr.types as ir

from features.codes import Codes, packaged_codes
from features.definitions import Sources, fall_events, lit

if TYPE_CHECKING:
    from features.outcomes import Outcome


@dataclass(frozen=True)
class LabelSettings:
    home_care_hours: float = 14.0  # new home care at or above this many hours a week
    long_stay_days: int = 21  # an emergency stay longer than this is "super-stranded"
    min_emergency_admissions: int = 3
    exclude_optional_fall_codes: bool = False  # leave out W02, W12 and W15
    # the outcomes' codes (default: the packaged code lists)
    codes: Codes = field(default_factory=packaged_codes, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.home_care_hours < 0 or self.long_stay_days < 0:
            raise ValueError("LabelSettings thresholds must not be negative")


def add_months(day: date, months: int) -> date:
    """The same day `months` later (clamped to the month's end)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    last = [31, 29 if _leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    return date(year, month, min(day.day, last))


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def in_horizon(when: ir.DateValue, died: ir.DateValue, day: date, end: date) -> ir.BooleanValue:
    """An event dated in [day, end) on or before the person's death (`died`, null if alive)."""
    alive = died.isnull() | (when <= died)
    return (when >= lit(day)) & (when < lit(end)) & alive


def with_death(events: ir.Table, src: Sources) -> ir.Table:
    """`events` with each person's date of death as `died` (null for the living)."""
    death = src["death"].select("person_id", died=src["death"].date_of_death)
    return events.left_join(death, "person_id").drop("person_id_right")


def falls_events(src: Sources, settings: LabelSettings) -> ir.Table:
    codes = settings.codes
    excluded = codes.fall_icd10_optional_exclusions if settings.exclude_optional_fall_codes else ()
    return fall_events(src, codes, excluded)


def falls_outcome(src: Sources, day: date, end: date, settings: LabelSettings) -> ir.Table:
    """person_id of everyone with a recorded fall in [day, end)."""
    ev = with_death(falls_events(src, settings), src)
    return ev.filter(in_horizon(ev.event_date, ev.died, day, end)).select("person_id").distinct()


def complex_dependency_outcome(
    src: Sources, day: date, end: date, settings: LabelSettings
) -> ir.Table:
    """person_id of everyone with new high-intensity care, 3+ emergency admissions or a
    super-stranded stay in [day, end)."""
    care = with_death(src["social_care"], src)
    high = (
        (care.service_type == "home_care") & (care.hours_per_week >= settings.home_care_hours)
    ) | care.service_type.isin(["residential", "nursing"])
    new_care = care.filter(high.fill_null(False) & in_horizon(care.start_date, care.died, day, end))
    spells = with_death(src["hospital_episode"], src)
    emergency = spells.filter(
        (spells.admission_method == "emergency")
        & in_horizon(spells.admission_date, spells.died, day, end)
    )
    # a stay with no discharge yet is counted up to the end of the horizon
    stay = emergency.discharge_date.fill_null(lit(end)).delta(emergency.admission_date, unit="day")
    per_person = emergency.group_by("person_id").aggregate(
        admissions=emergency.count(), longest=stay.max()
    )
    heavy_use = per_person.filter(
        (per_person.admissions >= settings.min_emergency_admissions)
        | (per_person.longest > settings.long_stay_days)
    )
    return ibis.union(new_care.select("person_id"), heavy_use.select("person_id"), distinct=True)


def labels(
    src: Sources, outcome: Outcome, day: date, settings: LabelSettings | None = None
) -> ir.Table:
    """person_id, label, died_before_event, follow_up_days for everyone in `person`, over the
    outcome's horizon, from its label function.

    Apply the cohort separately (features.cohorts.cohort).
    """
    settings = settings or LabelSettings()
    end = add_months(day, outcome.horizon_months)
    events = outcome.label(src, day, end, settings)
    people = with_death(src["person"].select("person_id"), src)
    marked = people.left_join(events.mutate(hit=1), "person_id").drop("person_id_right")
    label = marked.hit.fill_null(0).cast("int64")
    died_in = marked.died.notnull() & (marked.died >= lit(day)) & (marked.died < lit(end))
    stop = ibis.ifelse(died_in, marked.died, lit(end))
    return marked.select(
        "person_id",
        label=label,
        died_before_event=(died_in & (label == 0)).cast("int64"),
        follow_up_days=stop.delta(lit(day), unit="day").cast("int64"),
    )
