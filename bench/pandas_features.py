"""The peer: a plain pandas version of every registry feature (groupby/merge).

Written as a data scientist would: read the columns each family needs from the store into
DataFrames, filter with boolean masks, aggregate with groupby, left-merge onto the
population. Same definitions as features/definitions.py, one function per family, so the
benchmark can assert the two frames are equal.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from features import codes
from features.codes import packaged_codes
from features.feature_list import FEATURES, WINDOWS

COLUMNS: tuple[str, ...] = tuple(f.name for f in FEATURES)
DIAG_COLUMNS = tuple(f"diag_{n:02d}" for n in range(1, 7))
HEAVY_DRINKING_UNITS = 14.0
NOT_FILLED = frozenset(
    {
        "age_years", "imd_decile", "lives_alone", "informal_carer", "bmi", "efi",
        "days_since_last_fall", "days_since_last_emergency_admission",
        "fire_trip_hazards", "fire_smoke_alarm_working", "fire_smoker", "fire_mobility_concern",
        "frid_classes_90d", "ethnicity_recorded", "lookback_days",
    }
)  # fmt: skip
LOOKBACK_CAP_DAYS = 730  # every other numeric feature is zero when a person has no records


def _read(con: duckdb.DuckDBPyConnection, table: str, columns: Iterable[str]) -> pd.DataFrame:
    cols = ", ".join(f'"{c}"' for c in columns)
    return con.execute(f'SELECT {cols} FROM "{table}"').df()


def _ts(day: date) -> pd.Timestamp:
    return pd.Timestamp(day)


def _starts_with(values: pd.Series, prefixes: Iterable[str]) -> pd.Series:
    """True when the code starts with one of the prefixes (False for missing codes)."""
    return values.str.startswith(tuple(prefixes)).fillna(False).astype(bool)


def _days(later: pd.Series | pd.Timestamp, earlier: pd.Series | pd.Timestamp) -> pd.Series:
    return (later - earlier).dt.days  # type: ignore[union-attr,operator]


# --- event tables -----------------------------------------------------------------------


def hospital_long(spells: pd.DataFrame) -> pd.DataFrame:
    """One row per (spell, diagnosis position) with a code."""
    parts = [
        pd.DataFrame(
            {
                "person_id": spells["person_id"],
                "event_date": spells["admission_date"],
                "emergency": spells["admission_method"] == "emergency",
                "code": spells[col],
            }
        )
        for col in DIAG_COLUMNS
    ]
    long = pd.concat(parts, ignore_index=True)
    return long[long["code"].notna()]


def fall_events(t: dict[str, pd.DataFrame], diag: pd.DataFrame) -> pd.DataFrame:
    falls = packaged_codes().fall_icd10_prefixes
    ae = t["ae_attendance"]
    ae_falls = ae[
        _starts_with(ae["injury_cause"], falls) | _starts_with(ae["diagnosis_code"], falls)
    ]
    fall_or_fracture = (*falls, *packaged_codes().fragility_fracture_prefixes)
    admitted = diag[diag["emergency"] & _starts_with(diag["code"], fall_or_fracture)]
    amb = t["ambulance_incident"]
    amb_falls = amb[amb["category"].isin(codes.AMBULANCE_FALL_CATEGORIES)]
    gp = t["gp_event"]
    gp_falls = gp[gp["snomed_code"].isin(packaged_codes().fall_snomed)]
    return pd.concat(
        [
            ae_falls[["person_id", "arrival_date"]].set_axis(["person_id", "event_date"], axis=1),
            admitted[["person_id", "event_date"]],
            amb_falls[["person_id", "incident_date"]].set_axis(["person_id", "event_date"], axis=1),
            gp_falls[["person_id", "event_date"]],
        ],
        ignore_index=True,
    )


def fracture_events(t: dict[str, pd.DataFrame], diag: pd.DataFrame) -> pd.DataFrame:
    fracture = packaged_codes().fragility_fracture_prefixes
    ae = t["ae_attendance"]
    gp = t["gp_event"]
    ae_frac = ae[_starts_with(ae["diagnosis_code"], fracture)]
    gp_frac = gp[gp["snomed_code"].isin(packaged_codes().efi_deficits["fragility_fracture"])]
    return pd.concat(
        [
            ae_frac[["person_id", "arrival_date"]].set_axis(["person_id", "event_date"], axis=1),
            diag[_starts_with(diag["code"], fracture)][["person_id", "event_date"]],
            gp_frac[["person_id", "event_date"]],
        ],
        ignore_index=True,
    )


# --- families -----------------------------------------------------------------------------


def population(t: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    person, death = t["person"], t["death"]
    dead = death.loc[death["date_of_death"] < _ts(day), "person_id"]
    alive = person[(person["birth_month"] < _ts(day)) & ~person["person_id"].isin(dead)]
    return alive[["person_id"]]


def demographics(t: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    p = t["person"]
    born = p["birth_month"]
    before_birthday = (born.dt.month > day.month) | (
        (born.dt.month == day.month) & (born.dt.day > day.day)
    )
    female = (p["sex"] == "F").astype("float64").where(p["sex"].notna())
    return pd.DataFrame(
        {
            "person_id": p["person_id"],
            "age_years": day.year - born.dt.year - before_birthday.astype("int64"),
            "female": female,
            "ethnic_group": p["ethnicity"],
            "imd_decile": p["imd_decile"],
            "lives_alone": p["lives_alone"].astype("float64"),
            "informal_carer": p["informal_carer"].astype("float64"),
            "ethnicity_recorded": p["ethnicity"].notna().astype("int64"),
        }
    )


def _recent(events: pd.DataFrame, day: date) -> pd.DataFrame:
    d = _ts(day)
    start = d - timedelta(days=max(WINDOWS))
    return events[(events["event_date"] < d) & (events["event_date"] >= start)]


def _window_counts(
    events: pd.DataFrame, day: date, stem: str, distinct: bool = False
) -> pd.DataFrame:
    out = {}
    for w in WINDOWS:
        inside = events[events["event_date"] >= _ts(day) - timedelta(days=w)]
        by_person = inside.groupby("person_id")["event_date"]
        out[f"{stem}_{w}d"] = by_person.nunique() if distinct else by_person.size()
    return pd.DataFrame(out)


def ae_activity(t: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    ae = t["ae_attendance"].rename(columns={"arrival_date": "event_date"})
    return _window_counts(_recent(ae, day), day, "ae_attendances")


def ambulance_activity(t: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    amb = t["ambulance_incident"].rename(columns={"incident_date": "event_date"})
    return _window_counts(_recent(amb, day), day, "ambulance_callouts")


def admissions(t: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    d = _ts(day)
    spells = t["hospital_episode"].rename(columns={"admission_date": "event_date"})
    emergency = _recent(spells[spells["admission_method"] == "emergency"], day).copy()
    # a discharge on or after D is not yet known at D
    left = emergency["discharge_date"].fillna(d)
    emergency["left"] = left.mask(left > d, d)
    out = _window_counts(emergency, day, "emergency_admissions")
    for w in WINDOWS:
        start = d - timedelta(days=w)
        admitted = emergency["event_date"]
        stayed = _days(emergency["left"], admitted.mask(admitted < start, start)).clip(lower=0)
        out[f"emergency_bed_days_{w}d"] = stayed.groupby(emergency["person_id"]).sum()
    recent = _recent(spells, day)
    mental = recent[recent["main_specialty"].isin(packaged_codes().mental_health_specialties)]
    mh = mental.groupby("person_id").size().rename("mental_health_admissions_730d")
    return out.join(mh, how="outer")


def falls_and_fractures(t: dict[str, pd.DataFrame], diag: pd.DataFrame, day: date) -> pd.DataFrame:
    d = _ts(day)
    falls = fall_events(t, diag)
    falls = falls[falls["event_date"] < d]
    out = _window_counts(falls, day, "falls", distinct=True)
    last = falls.groupby("person_id")["event_date"].max()
    out = out.join(_days(d, last).rename("days_since_last_fall"), how="outer")
    fractures = _recent(fracture_events(t, diag), day)
    return out.join(_window_counts(fractures, day, "fractures", distinct=True), how="outer")


def last_emergency_admission(t: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    d = _ts(day)
    s = t["hospital_episode"]
    before = s[(s["admission_method"] == "emergency") & (s["admission_date"] < d)]
    last = before.groupby("person_id")["admission_date"].max()
    return _days(d, last).rename("days_since_last_emergency_admission").to_frame()


def gp_record(t: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    d = _ts(day)
    gp = t["gp_event"]
    ev = gp[gp["event_date"] < d]
    code = ev["snomed_code"]
    flags = {
        f"gp_{name}": code.isin(snomed) for name, (snomed, _) in packaged_codes().conditions.items()
    }
    for name, snomed in packaged_codes().efi_deficits.items():
        if snomed:
            flags[f"deficit_{name}"] = code.isin(snomed)
    flags["heavy_drinking"] = code.isin(packaged_codes().heavy_drinker) | (
        code.isin(packaged_codes().alcohol_units) & (ev["value"] > HEAVY_DRINKING_UNITS)
    )
    flags["bmi_recorded"] = code.isin(packaged_codes().bmi) & ev["value"].notna()
    flags["has_gp_event_730d"] = ev["event_date"] >= d - timedelta(days=730)
    frame = pd.DataFrame(flags)
    frame["person_id"] = ev["person_id"]
    return frame.groupby("person_id").any().astype("int64")


def hospital_conditions(diag: pd.DataFrame, day: date) -> pd.DataFrame:
    ev = diag[diag["event_date"] < _ts(day)]
    flags = {
        f"hes_{name}": _starts_with(ev["code"], icd)
        for name, (_, icd) in packaged_codes().conditions.items()
    }
    frame = pd.DataFrame(flags)
    frame["person_id"] = ev["person_id"]
    return frame.groupby("person_id").any().astype("int64")


def tendency_to_fall(t: dict[str, pd.DataFrame], diag: pd.DataFrame, day: date) -> pd.DataFrame:
    ae = t["ae_attendance"]
    coded = pd.concat(
        [
            diag[["person_id", "event_date", "code"]],
            ae[["person_id", "arrival_date", "diagnosis_code"]].set_axis(
                ["person_id", "event_date", "code"], axis=1
            ),
        ],
        ignore_index=True,
    )
    ev = coded[
        (coded["event_date"] < _ts(day))
        & coded["code"].isin(packaged_codes().tendency_to_fall_icd10)
    ]
    return ev.groupby("person_id").size().rename("tendency_to_fall").to_frame()


def medicines(t: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    d = _ts(day)
    rx = t["prescription"]
    ev = rx[(rx["issue_date"] < d) & (rx["issue_date"] >= d - timedelta(days=90))]
    out = {"medicines_90d": ev.groupby("person_id")["medicine"].nunique()}
    for name, prefixes in packaged_codes().frid_bnf_prefixes.items():
        inside = ev[_starts_with(ev["bnf_code"], prefixes)]
        out[f"frid_{name}_90d"] = inside.groupby("person_id")["medicine"].nunique()
    return pd.DataFrame(out)


def _latest(events: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The largest of each column on each person's latest event date."""
    last = events.groupby("person_id")["event_date"].transform("max")
    on_last = events[events["event_date"] == last]
    return on_last.groupby("person_id")[columns].max()


def observations(t: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    gp = t["gp_event"]
    ev = gp[gp["event_date"] < _ts(day)]
    bmi_rows = ev[ev["snomed_code"].isin(packaged_codes().bmi) & ev["value"].notna()]
    bmi = _latest(bmi_rows.rename(columns={"value": "bmi"}), ["bmi"])
    rank = {"never": 1, "ex": 2, "current": 3}
    code_rank = {c: rank[s] for c, s in packaged_codes().smoking_status.items()}
    smokers = ev[ev["snomed_code"].isin(code_rank)].copy()
    smokers["smoking_rank"] = smokers["snomed_code"].map(code_rank)
    smoking = _latest(smokers, ["smoking_rank"])
    by_rank = {r: s for s, r in rank.items()}
    smoking["smoking_status"] = smoking["smoking_rank"].map(by_rank)
    return bmi.join(smoking[["smoking_status"]], how="outer")


def social_care(t: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    d = _ts(day)
    care = t["social_care"]
    ev = care[care["start_date"] < d]
    now = ev["end_date"].isna() | (ev["end_date"] >= d)
    kind = ev["service_type"]
    last_year = ev["start_date"] >= d - timedelta(days=365)
    home_now = now & (kind == "home_care")
    frame = pd.DataFrame(
        {
            "person_id": ev["person_id"],
            "home_care_now": home_now,
            "telecare_now": now & (kind == "telecare"),
            "reablement_365d": last_year & (kind == "reablement"),
            "care_assessment_365d": last_year & (kind == "assessment"),
        }
    )
    out = frame.groupby("person_id").any().astype("int64")
    hours = ev["hours_per_week"].where(home_now)
    out["home_care_hours_now"] = hours.groupby(ev["person_id"]).sum(min_count=1)
    return out


def fire_visits(t: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    fire = t["fire_home_visit"]
    ev = fire[fire["visit_date"] < _ts(day)].rename(columns={"visit_date": "event_date"})
    findings = ["trip_hazards", "smoke_alarm_working", "smoker", "mobility_concern"]
    ev = ev.assign(**{f"fire_{f}": ev[f].astype("float64") for f in findings})
    latest = _latest(ev, [f"fire_{f}" for f in findings])
    latest["fire_visited"] = 1
    return latest


# --- assembling -----------------------------------------------------------------------------

NEEDS: dict[str, tuple[str, ...]] = {
    "person": (
        "person_id", "birth_month", "sex", "ethnicity", "imd_decile", "lives_alone",
        "informal_carer",
    ),
    "death": ("person_id", "date_of_death"),
    "ae_attendance": ("person_id", "arrival_date", "diagnosis_code", "injury_cause"),
    "ambulance_incident": ("person_id", "incident_date", "category"),
    "hospital_episode": (
        "person_id", "admission_date", "discharge_date", "admission_method", "main_specialty",
        *DIAG_COLUMNS,
    ),
    "gp_event": ("person_id", "event_date", "snomed_code", "value"),
    "prescription": ("person_id", "issue_date", "bnf_code", "medicine"),
    "social_care": ("person_id", "service_type", "start_date", "end_date", "hours_per_week"),
    "fire_home_visit": (
        "person_id", "visit_date", "trip_hazards", "smoke_alarm_working", "smoker",
        "mobility_concern",
    ),
}  # fmt: skip
DATE_COLUMNS = (
    "birth_month", "date_of_death", "arrival_date", "incident_date", "admission_date",
    "discharge_date", "event_date", "issue_date", "start_date", "end_date", "visit_date",
)  # fmt: skip


def read_tables(store: Path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(store), read_only=True)
    try:
        tables = {name: _read(con, name, cols) for name, cols in NEEDS.items()}
    finally:
        con.close()
    for frame in tables.values():
        for col in frame.columns:
            if col in DATE_COLUMNS:
                frame[col] = pd.to_datetime(frame[col])
    return tables


def _efi_band(deficits: pd.Series) -> pd.Series:
    band = pd.Series(None, index=deficits.index, dtype="object")
    for name, upper in reversed(codes.EFI_BANDS):
        band = band.mask(deficits <= int(upper * codes.EFI_DENOMINATOR + 1e-9), name)
    return band


def lookback_days(store: Path, day: date) -> int:
    """Days of history before `day` (capped): from the first day the extract covers."""
    from features.extent import data_start  # the extract's start, not a feature

    start = data_start(store) or day - timedelta(days=LOOKBACK_CAP_DAYS)
    return max(0, min((day - start).days, LOOKBACK_CAP_DAYS))


def _derive(frame: pd.DataFrame) -> pd.DataFrame:
    filled = [
        col
        for col in frame.columns
        if col.startswith(("gp_", "hes_", "deficit_", "frid_"))
        or (col in COLUMNS and col not in NOT_FILLED and col not in _CATEGORICAL)
    ]
    frame = frame.fillna(dict.fromkeys(filled, 0))
    derived: dict[str, pd.Series] = {
        f"has_{name}": ((frame[f"gp_{name}"] + frame[f"hes_{name}"]) > 0).astype("int64")
        for name in codes.CONDITIONS
    }
    derived["tendency_to_fall"] = (frame["tendency_to_fall"] > 0).astype("int64")
    deficit_cols = [c for c in frame.columns if c.startswith("deficit_")]
    polypharmacy = (frame["medicines_90d"] >= codes.POLYPHARMACY_MEDICINES).astype("int64")
    deficits = frame[deficit_cols].sum(axis=1) + polypharmacy
    derived["efi"] = deficits.astype("float64") / codes.EFI_DENOMINATOR
    derived["efi_band"] = _efi_band(deficits)
    frid_cols = [f"frid_{name}_90d" for name in codes.FRID_CLASSES]
    derived["frid_classes_90d"] = (frame[frid_cols] > 0).sum(axis=1)
    derived["fire_visited"] = (frame["fire_visited"] > 0).astype("int64")
    kept = frame.drop(columns=[c for c in derived if c in frame.columns])
    return pd.concat([kept, pd.DataFrame(derived)], axis=1)


_CATEGORICAL = frozenset(f.name for f in FEATURES if f.kind == "categorical")


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Registry order, sorted by person_id; numbers as float64, categories as strings."""
    out = pd.DataFrame({"person_id": frame["person_id"].astype("str")})
    for item in FEATURES:
        col = frame[item.name]
        if item.kind == "categorical":
            out[item.name] = col.astype("object").where(col.notna(), None).astype("str")
        else:
            out[item.name] = pd.to_numeric(col).astype("float64")
    return out.sort_values("person_id", kind="stable").reset_index(drop=True)


def pandas_features(store: Path, day: date) -> pd.DataFrame:
    """Every registry feature at `day`, one row per person in the population."""
    t = read_tables(store)
    diag = hospital_long(t["hospital_episode"])
    frame = population(t, day).merge(demographics(t, day), on="person_id", how="left")
    families = (
        ae_activity(t, day),
        ambulance_activity(t, day),
        admissions(t, day),
        falls_and_fractures(t, diag, day),
        last_emergency_admission(t, day),
        gp_record(t, day),
        hospital_conditions(diag, day),
        tendency_to_fall(t, diag, day),
        medicines(t, day),
        observations(t, day),
        social_care(t, day),
        fire_visits(t, day),
    )
    for family in families:
        frame = frame.merge(family, left_on="person_id", right_index=True, how="left")
    frame = _derive(frame)
    if "lookback_days" in COLUMNS:
        frame["lookback_days"] = lookback_days(store, day)
    return _tidy(frame)
