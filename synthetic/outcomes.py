"""The county's realised outcomes: the project's own cohorts and labels (features.cohorts,
features.labels), run over the clean written records.

Nothing about an outcome is restated here: who is in its cohort, its horizon, its events and
their thresholds all come from the `Outcome` and the `LabelSettings` passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import ibis
import pyarrow as pa
import pyarrow.compute as pc

from features.cohorts import cohort
from features.labels import LabelSettings, add_months, labels
from features.outcomes import PRODUCT, Outcome

OUTCOMES_SCHEMA = pa.schema(
    [
        pa.field("person_id", pa.string()),
        pa.field("index_date", pa.date32()),
        pa.field("outcome", pa.string()),
        pa.field("event", pa.int8()),
        pa.field("died_before_event", pa.int8()),
    ]
)


def has_follow_up(outcome: Outcome, day: date, extract: date) -> bool:
    """The outcome's whole horizon from `day` lies inside an extract ending on `extract`."""
    return add_months(day, outcome.horizon_months) <= extract + timedelta(days=1)


def realised_outcomes(
    tables: dict[str, pa.Table],
    index_dates: Sequence[date],
    extract: date,
    outcomes: Sequence[Outcome] = tuple(PRODUCT),
    settings: LabelSettings | None = None,
) -> pa.Table:
    """person_id, index_date, outcome, event, died_before_event for everyone in each outcome's
    cohort at each index date, ordered by index date, outcome and person.

    `tables` are clean contract tables (those the cohorts and labels read). `event` and
    `died_before_event` are the label's and are null when the horizon goes beyond the extract.
    """
    settings = settings or LabelSettings()
    con = ibis.duckdb.connect()
    try:
        src = {name: con.create_table(name, table, temp=True) for name, table in tables.items()}
        parts = [
            _one(src, outcome, day, has_follow_up(outcome, day, extract), settings)
            for day in index_dates
            for outcome in outcomes
        ]
        if not parts:
            return OUTCOMES_SCHEMA.empty_table()
        rows = ibis.union(*parts, distinct=False).to_pyarrow()
    finally:
        con.disconnect()
    rows = rows.cast(OUTCOMES_SCHEMA)
    order = pc.sort_indices(
        rows, [("index_date", "ascending"), ("outcome", "ascending"), ("person_id", "ascending")]
    )
    return rows.take(order)


def _one(
    src: dict[str, ibis.Table],
    outcome: Outcome,
    day: date,
    followed: bool,
    settings: LabelSettings,
) -> ibis.Table:
    members = cohort(src, outcome, day)
    marked = labels(src, outcome, day, settings)
    rows = members.join(marked, "person_id")
    nothing = ibis.null("int8")
    return rows.select(
        "person_id",
        index_date=ibis.literal(day, type="date"),
        outcome=ibis.literal(outcome.name, type="string"),
        event=rows.label.cast("int8") if followed else nothing,
        died_before_event=rows.died_before_event.cast("int8") if followed else nothing,
    )


def cohort_rows(truth: pa.Table, outcomes: pa.Table) -> pa.Array:
    """Which rows of `truth` (person_id, index_date, outcome, ...) are in the cohorts of
    `outcomes`. Raises when a cohort member has no truth row: the simulation must have given
    a probability to everyone the cohort rule takes."""
    have, want = _keys(truth), _keys(outcomes)
    missing = pc.invert(pc.is_in(want, value_set=have))
    if pc.any(missing).as_py():
        row = outcomes.filter(missing).slice(0, 1).to_pylist()[0]
        raise ValueError(
            f"person {row['person_id']} is in the {row['outcome']} cohort at "
            f"{row['index_date']} by the written records but has no true probability"
        )
    return pc.is_in(have, value_set=want)


def _keys(t: pa.Table) -> pa.Array:
    day = pc.cast(t.column("index_date"), pa.string())
    joined = pc.binary_join_element_wise(t.column("person_id"), day, t.column("outcome"), "|")
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined
