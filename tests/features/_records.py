"""Hand-built records and small DuckDB stores for the feature tests.

`make_store(path, rows)` creates all nine contract tables (empty unless given rows) with
exactly the contract's DuckDB types. The row builders fill every column with a plain default.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from features.contract import TABLES, create_table_sql

Row = dict[str, Any]
_ids = itertools.count(1)
_ID_COLUMNS = {
    "gp_event": "event_id",
    "prescription": "prescription_id",
    "hospital_episode": "episode_id",
    "ae_attendance": "attendance_id",
    "ambulance_incident": "incident_id",
    "social_care": "service_id",
    "fire_home_visit": "visit_id",
}


def _next_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):07d}"


def person(pid: str, born: date = date(1940, 1, 1), **kw: Any) -> tuple[str, Row]:
    row: Row = {
        "person_id": pid,
        "birth_month": born,
        "sex": "F",
        "ethnicity": "white",
        "lsoa_code": "E01000001",
        "imd_decile": 5,
        "district": "Wychavon",
        "practice_code": "M81001",
        "gp_system": "EMIS",
        "lives_alone": False,
        "informal_carer": False,
    }
    row.update(kw)
    return "person", row


def gp(pid: str, day: date, snomed: str, value: float | None = None) -> tuple[str, Row]:
    return "gp_event", {
        "event_id": _next_id("G"),
        "person_id": pid,
        "event_date": day,
        "snomed_code": snomed,
        "value": value,
    }


def rx(pid: str, day: date, bnf: str, medicine: str) -> tuple[str, Row]:
    return "prescription", {
        "prescription_id": _next_id("P"),
        "person_id": pid,
        "issue_date": day,
        "bnf_code": bnf,
        "medicine": medicine,
    }


def spell(
    pid: str,
    admitted: date,
    discharged: date | None = None,
    method: str = "emergency",
    specialty: str = "300",
    diags: Iterable[str] = ("R69X",),
) -> tuple[str, Row]:
    codes = list(diags) + [None] * 6
    row: Row = {
        "episode_id": _next_id("H"),
        "person_id": pid,
        "admission_date": admitted,
        "discharge_date": discharged,
        "admission_method": method,
        "main_specialty": specialty,
    }
    row.update({f"diag_{n:02d}": codes[n - 1] for n in range(1, 7)})
    return "hospital_episode", row


def ae(
    pid: str,
    day: date,
    diagnosis: str | None = None,
    cause: str | None = None,
    disposal: str = "discharged",
) -> tuple[str, Row]:
    return "ae_attendance", {
        "attendance_id": _next_id("A"),
        "person_id": pid,
        "arrival_date": day,
        "diagnosis_code": diagnosis,
        "injury_cause": cause,
        "disposal": disposal,
    }


def ambulance(
    pid: str, day: date, category: str = "other", conveyed: bool = False
) -> tuple[str, Row]:
    return "ambulance_incident", {
        "incident_id": _next_id("I"),
        "person_id": pid,
        "incident_date": day,
        "category": category,
        "conveyed": conveyed,
    }


def care(
    pid: str,
    service: str,
    start: date,
    end: date | None = None,
    hours: float | None = None,
) -> tuple[str, Row]:
    return "social_care", {
        "service_id": _next_id("S"),
        "person_id": pid,
        "service_type": service,
        "start_date": start,
        "end_date": end,
        "hours_per_week": hours,
    }


def fire(pid: str, day: date, **findings: bool) -> tuple[str, Row]:
    row: Row = {
        "visit_id": _next_id("V"),
        "person_id": pid,
        "visit_date": day,
        "trip_hazards": False,
        "smoke_alarm_working": True,
        "smoker": False,
        "mobility_concern": False,
        "referral_made": False,
    }
    row.update(findings)
    return "fire_home_visit", row


def death(pid: str, day: date) -> tuple[str, Row]:
    return "death", {"person_id": pid, "date_of_death": day}


def group(records: Iterable[tuple[str, Row]]) -> dict[str, list[Row]]:
    """Records grouped by table name."""
    out: dict[str, list[Row]] = {}
    for name, row in records:
        out.setdefault(name, []).append(row)
    return out


def make_store(path: Path, records: Iterable[tuple[str, Row]] | Mapping[str, list[Row]]) -> Path:
    """A DuckDB store with all nine contract tables holding the given records."""
    rows = records if isinstance(records, Mapping) else group(records)
    con = duckdb.connect(str(path))
    try:
        for spec in TABLES:
            con.execute(create_table_sql(spec))
            given = rows.get(spec.name, [])
            if not given:
                continue
            frame = pd.DataFrame(given, columns=spec.column_names)  # noqa: F841
            con.execute(f'INSERT INTO "{spec.name}" SELECT * FROM frame')
    finally:
        con.close()
    return path


# --- a small random county (seeded) for engine and property tests -------------------------

GP_CODES: tuple[tuple[str, float | None], ...] = (
    ("1912002", None), ("52448006", None), ("60621009", 27.0), ("60621009", 31.5),
    ("77176002", None), ("8517006", None), ("1082641000000106", 20.0), ("86933000", None),
    ("5913000", None), ("21134002", None), ("84114007", None), ("397540003", None),
)  # fmt: skip
MEDICINES: tuple[tuple[str, str], ...] = (
    ("0403010A0", "sertraline"), ("0401010Z0", "zopiclone"), ("0205051R0", "ramipril"),
    ("0407020Q0", "morphine"), ("0212000B0", "atorvastatin"), ("0408010A0", "valproate"),
    ("0601022B0", "metformin"),
)  # fmt: skip
DIAGNOSES: tuple[tuple[str, ...], ...] = (
    ("R69X",),
    ("S720",),
    ("I500", "W19X"),
    ("R296",),
    ("F03X",),
    ("J449", "W06X"),
)
SERVICES: tuple[str, ...] = ("assessment", "home_care", "reablement", "telecare", "residential")


def random_record(rng: Any, pid: str, day: date) -> tuple[str, Row]:
    """One record of a random table for `pid` dated `day`, from `random.Random`-like rng."""
    kind = rng.randrange(7)
    if kind == 0:
        code, value = rng.choice(GP_CODES)
        return gp(pid, day, code, value)
    if kind == 1:
        return rx(pid, day, *rng.choice(MEDICINES))
    if kind == 2:
        stay = rng.choice([None, 0, 3, 25])
        end = None if stay is None else date.fromordinal(day.toordinal() + stay)
        method = rng.choice(["emergency", "emergency", "elective"])
        return spell(pid, day, end, method, rng.choice(["300", "710"]), rng.choice(DIAGNOSES))
    if kind == 3:
        return ae(pid, day, rng.choice([None, "S525", "R296"]), rng.choice([None, "W19X"]))
    if kind == 4:
        return ambulance(pid, day, rng.choice(["fall", "long_lie", "other"]))
    if kind == 5:
        length = rng.choice([None, 30, 400])
        end = None if length is None else date.fromordinal(day.toordinal() + length)
        return care(pid, rng.choice(SERVICES), day, end, rng.choice([None, 7.0, 16.5]))
    return fire(pid, day, trip_hazards=rng.random() < 0.5, smoker=rng.random() < 0.3)


def random_county(
    rng: Any, people: int, first: date, last: date, records_each: int = 8
) -> list[tuple[str, Row]]:
    """People with random records between `first` and `last` (some die, some have none)."""
    out: list[tuple[str, Row]] = []
    span = last.toordinal() - first.toordinal()
    for i in range(people):
        pid = f"R{i:06d}"
        born = date(rng.randrange(1920, 2006), rng.randrange(1, 13), 1)
        out.append(
            person(
                pid,
                born=born,
                sex=rng.choice("FM"),
                ethnicity=rng.choice([None, "white", "asian"]),
                imd_decile=rng.randrange(1, 11),
                lives_alone=rng.choice([None, True, False]),
            )
        )
        if i % 10 == 9:
            continue  # no records at all
        for _ in range(rng.randrange(records_each)):
            day = date.fromordinal(first.toordinal() + rng.randrange(span))
            out.append(random_record(rng, pid, day))
        if i % 13 == 5:
            out.append(death(pid, date.fromordinal(first.toordinal() + rng.randrange(span))))
    return out
