"""The peer: a plain pandas version of part of the feature definitions (groupby/merge).

Covers the population, age and the A&E, ambulance and emergency admission counts in each
window: the columns the benchmark compares. The rest of the registry is not ported yet.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd

WINDOWS = (90, 365, 730)
COLUMNS: tuple[str, ...] = (
    "age_years",
    *(f"{stem}_{w}d" for stem in ("ae_attendances", "ambulance_callouts",
                                  "emergency_admissions") for w in WINDOWS),
)  # fmt: skip


def _read(store: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(store), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def _counts(events: pd.DataFrame, day: date, stem: str) -> pd.DataFrame:
    d = pd.Timestamp(day)
    events = events[events["event_date"] < d]
    out = {}
    for w in WINDOWS:
        inside = events[events["event_date"] >= d - timedelta(days=w)]
        out[f"{stem}_{w}d"] = inside.groupby("person_id").size()
    return pd.DataFrame(out)


def pandas_features(store: Path, day: date) -> pd.DataFrame:
    person = _read(store, "SELECT person_id, birth_month FROM person")
    death = _read(store, "SELECT person_id, date_of_death FROM death")
    d = pd.Timestamp(day)
    dead = set(death.loc[pd.to_datetime(death["date_of_death"]) < d, "person_id"])
    born = pd.to_datetime(person["birth_month"])
    person = person[(born < d) & ~person["person_id"].isin(dead)].copy()
    born = pd.to_datetime(person["birth_month"])
    person["age_years"] = d.year - born.dt.year - ((born.dt.month > d.month).astype("int64"))
    ae = _read(store, "SELECT person_id, arrival_date AS event_date FROM ae_attendance")
    amb = _read(store, "SELECT person_id, incident_date AS event_date FROM ambulance_incident")
    hes = _read(
        store,
        "SELECT person_id, admission_date AS event_date FROM hospital_episode "
        "WHERE admission_method = 'emergency'",
    )
    frame = person.set_index("person_id")[["age_years"]]
    for events, stem in ((ae, "ae_attendances"), (amb, "ambulance_callouts"),
                         (hes, "emergency_admissions")):  # fmt: skip
        events["event_date"] = pd.to_datetime(events["event_date"])
        frame = frame.join(_counts(events, day, stem), how="left")
    frame = frame.fillna(0).astype("float64").sort_index()
    return frame.reset_index()[["person_id", *COLUMNS]]
