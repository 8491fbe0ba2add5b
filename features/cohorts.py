"""Who is eligible for each outcome at an index date: the one place a cohort rule is applied.

Training sets and the feature snapshot's cohort flags both come from `cohort`, so the people a
model was trained on and the people the service scores follow the same rule (the outcome's
`Cohort` in features/outcomes.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import ibis
import ibis.expr.types as ir

from features.definitions import Sources, age_at, lit, residential_now
from features.outcomes import Outcome


def cohort(src: Sources, outcome: Outcome, day: date) -> ir.Table:
    """person_id of everyone in the outcome's cohort at D.

    Registered, born before D, alive at the end of D (a death dated on or before D leaves a
    person out), aged the cohort's minimum or over at D and, when the rule says so, not in
    residential or nursing care at D.
    """
    rule = outcome.cohort
    person = src["person"]
    death = src["death"]
    died = death.filter(death.date_of_death <= lit(day)).select("person_id")
    eligible = person.filter(
        (person.birth_month < lit(day)) & (age_at(person.birth_month, day) >= rule.min_age)
    ).anti_join(died, "person_id")
    if rule.exclude_care_home:
        eligible = eligible.anti_join(residential_now(src, day), "person_id")
    return eligible.select("person_id")


def cohort_flags(src: Sources, outcomes: Iterable[Outcome], day: date) -> ir.Table:
    """person_id and one boolean `cohort_<outcome>` column per outcome, for everyone in
    `person` (false outside the cohort)."""
    table = src["person"].select("person_id")
    for outcome in outcomes:
        members = cohort(src, outcome, day).mutate(_member=ibis.literal(True))
        joined = table.left_join(members, "person_id").drop("person_id_right")
        table = joined.rename({outcome.cohort_column: "_member"}).mutate(
            **{outcome.cohort_column: ibis._[outcome.cohort_column].fill_null(False)}
        )
    return table
