"""Who is eligible for each outcome at an index date (clinical.md)."""

from __future__ import annotations

from datetime import date

import ibis.expr.types as ir

from features.definitions import Sources, age_at, population, residential_now

MIN_AGE: dict[str, int] = {"falls": 65, "complex_dependency": 18}


def cohort(src: Sources, outcome: str, day: date) -> ir.Table:
    """person_id of everyone in the outcome's cohort at D.

    Both cohorts: registered, born before D, not dead before D and not in residential or
    nursing care at D. Falls: aged 65+ at D. Complex dependency: aged 18+ at D.
    """
    if outcome not in MIN_AGE:
        raise ValueError(f"unknown outcome {outcome!r}; choose one of {', '.join(MIN_AGE)}")
    person = src["person"]
    old_enough = person.filter(age_at(person.birth_month, day) >= MIN_AGE[outcome])
    alive = population(src, day)
    eligible = alive.semi_join(old_enough, "person_id")
    return eligible.anti_join(residential_now(src, day), "person_id")
