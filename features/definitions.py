"""Feature definitions at an index date, written once with Ibis.

Every function takes `src` (contract table name -> Ibis table) and the index date D and
returns an Ibis table keyed by `person_id`. Only records dated strictly before D are read.
The same expressions run on DuckDB and on PySpark (features.engines).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import date, timedelta

import ibis
import ibis.expr.types as ir

from features.codes import (
    AMBULANCE_FALL_CATEGORIES,
    CONDITIONS,
    EFI_BANDS,
    EFI_DENOMINATOR,
    FRID_CLASSES,
    POLYPHARMACY_MEDICINES,
    Codes,
    packaged_codes,
)
from features.feature_list import FEATURES, WINDOWS

Sources = Mapping[str, ir.Table]
DIAG_COLUMNS: tuple[str, ...] = tuple(f"diag_{n:02d}" for n in range(1, 7))
# an admission "for" a fragility fracture (clinical.md): the fracture is its primary diagnosis
FRACTURE_POSITION = DIAG_COLUMNS[0]
HEAVY_DRINKING_UNITS = 14.0  # units a week above which drinking counts as heavy
LOOKBACK_CAP_DAYS = 730


def lit(day: date) -> ir.DateScalar:
    return ibis.literal(day, type="date")


def code_in(column: ir.StringValue, prefixes: Iterable[str]) -> ir.BooleanValue:
    """True when the ICD-10/BNF code starts with one of the prefixes (by prefix length)."""
    by_length: dict[int, set[str]] = {}
    for prefix in prefixes:
        by_length.setdefault(len(prefix), set()).add(prefix)
    tests = [column.substr(0, n).isin(sorted(group)) for n, group in sorted(by_length.items())]
    result = tests[0]
    for test in tests[1:]:
        result = result | test
    return result.fill_null(False)


def fall_prefixes(codes: Codes, excluded: Iterable[str] = ()) -> tuple[str, ...]:
    skip = set(excluded)
    return tuple(p for p in codes.fall_icd10_prefixes if p not in skip)


# --- event tables shared by features and labels (no date filter) -------------------------


def hospital_diagnoses(src: Sources) -> ir.Table:
    """One row per (spell, diagnosis position) with a code: the long form of hospital data."""
    spells = src["hospital_episode"]
    parts = [
        spells.select(
            "person_id",
            event_date=spells.admission_date,
            emergency=spells.admission_method == "emergency",
            code=spells[col],
        )
        for col in DIAG_COLUMNS
    ]
    long = parts[0].union(*parts[1:], distinct=False)
    return long.filter(long.code.notnull())


def fall_events(src: Sources, codes: Codes, excluded: Iterable[str] = ()) -> ir.Table:
    """Every recorded fall as (person_id, event_date), from any service: an A&E attendance or
    emergency admission with a fall cause (W00-W19) in any diagnosis position, an emergency
    admission whose primary diagnosis is a fragility fracture, an ambulance fall call-out, a GP
    fall code. An admission counted for both a cause and a fracture gives two rows of one date."""
    prefixes = fall_prefixes(codes, excluded)
    ae = src["ae_attendance"]
    ae_falls = ae.filter(code_in(ae.injury_cause, prefixes) | code_in(ae.diagnosis_code, prefixes))
    diag = hospital_diagnoses(src)
    with_cause = diag.filter(diag.emergency & code_in(diag.code, prefixes))
    spells = src["hospital_episode"]
    for_fracture = spells.filter(
        (spells.admission_method == "emergency")
        & code_in(spells[FRACTURE_POSITION], codes.fragility_fracture_prefixes)
    )
    amb = src["ambulance_incident"]
    amb_falls = amb.filter(amb.category.isin(sorted(AMBULANCE_FALL_CATEGORIES)))
    gp = src["gp_event"]
    gp_falls = gp.filter(gp.snomed_code.isin(sorted(codes.fall_snomed)))
    return ibis.union(
        ae_falls.select("person_id", event_date=ae_falls.arrival_date),
        with_cause.select("person_id", "event_date"),
        for_fracture.select("person_id", event_date=for_fracture.admission_date),
        amb_falls.select("person_id", event_date=amb_falls.incident_date),
        gp_falls.select("person_id", "event_date"),
        distinct=False,
    )


def fracture_events(src: Sources, codes: Codes) -> ir.Table:
    """Every recorded fragility fracture as (person_id, event_date)."""
    fracture = codes.fragility_fracture_prefixes
    ae = src["ae_attendance"]
    diag = hospital_diagnoses(src)
    gp = src["gp_event"]
    ae_frac = ae.filter(code_in(ae.diagnosis_code, fracture))
    gp_frac = gp.filter(gp.snomed_code.isin(sorted(codes.efi_deficits["fragility_fracture"])))
    return ibis.union(
        ae_frac.select("person_id", event_date=ae_frac.arrival_date),
        diag.filter(code_in(diag.code, fracture)).select("person_id", "event_date"),
        gp_frac.select("person_id", "event_date"),
        distinct=False,
    )


def ongoing_at(care: ir.Table, day: date) -> ir.BooleanValue:
    """A social care service started before `day` and not ended before it."""
    return (care.start_date < lit(day)) & (care.end_date.isnull() | (care.end_date >= lit(day)))


def age_at(birth_month: ir.DateValue, day: date) -> ir.IntegerValue:
    """Whole years from the month of birth to `day`."""
    before_birthday = (birth_month.month() > day.month) | (
        (birth_month.month() == day.month) & (birth_month.day() > day.day)
    )
    return (day.year - birth_month.year() - before_birthday.cast("int64")).cast("int64")


# --- the population and the feature families ---------------------------------------------


def population(src: Sources, day: date) -> ir.Table:
    """Everyone registered, born before D and not dead before D."""
    person = src["person"]
    death = src["death"]
    dead = death.filter(death.date_of_death < lit(day)).select("person_id")
    alive = person.filter(person.birth_month < lit(day)).anti_join(dead, "person_id")
    return alive.select("person_id")


def demographics(src: Sources, day: date) -> ir.Table:
    p = src["person"]
    return p.select(
        "person_id",
        age_years=age_at(p.birth_month, day),
        female=(p.sex == "F").cast("int64"),
        ethnic_group=p.ethnicity,
        imd_decile=p.imd_decile,
        lives_alone=p.lives_alone.cast("int64"),
        informal_carer=p.informal_carer.cast("int64"),
        ethnicity_recorded=p.ethnicity.notnull().cast("int64"),
    )


def _window_counts(
    events: ir.Table, day: date, stem: str, distinct: bool = False
) -> dict[str, ir.Value]:
    out: dict[str, ir.Value] = {}
    for days in WINDOWS:
        inside = events.event_date >= lit(day - timedelta(days=days))
        if distinct:
            out[f"{stem}_{days}d"] = events.event_date.nunique(where=inside)
        else:
            out[f"{stem}_{days}d"] = events.count(where=inside)
    return out


def _recent(events: ir.Table, day: date) -> ir.Table:
    longest = day - timedelta(days=max(WINDOWS))
    return events.filter((events.event_date < lit(day)) & (events.event_date >= lit(longest)))


def ae_activity(src: Sources, day: date) -> ir.Table:
    ae = src["ae_attendance"]
    events = _recent(ae.select("person_id", event_date=ae.arrival_date), day)
    return events.group_by("person_id").aggregate(**_window_counts(events, day, "ae_attendances"))


def ambulance_activity(src: Sources, day: date) -> ir.Table:
    amb = src["ambulance_incident"]
    events = _recent(amb.select("person_id", event_date=amb.incident_date), day)
    return events.group_by("person_id").aggregate(
        **_window_counts(events, day, "ambulance_callouts")
    )


def admissions(src: Sources, day: date, codes: Codes) -> ir.Table:
    """Emergency admissions, bed days inside each window and mental-health stays."""
    spells = src["hospital_episode"]
    emergency = spells.filter(spells.admission_method == "emergency")
    events = _recent(
        emergency.select(
            "person_id",
            event_date=emergency.admission_date,
            # a discharge on or after D is not yet known at D
            left=ibis.least(emergency.discharge_date.fill_null(lit(day)), lit(day)),
        ),
        day,
    )
    aggs = _window_counts(events, day, "emergency_admissions")
    for days in WINDOWS:
        start = lit(day - timedelta(days=days))
        stayed = events.left.delta(ibis.greatest(events.event_date, start), unit="day")
        aggs[f"emergency_bed_days_{days}d"] = ibis.greatest(stayed, 0).sum()
    spells_730 = _recent(
        spells.select("person_id", "main_specialty", event_date=spells.admission_date), day
    )
    mental = spells_730.filter(
        spells_730.main_specialty.isin(sorted(codes.mental_health_specialties))
    )
    counted = events.group_by("person_id").aggregate(**aggs)
    mh = mental.group_by("person_id").aggregate(mental_health_admissions_730d=mental.count())
    return _outer(counted, mh)


def falls_and_fractures(src: Sources, day: date, codes: Codes) -> ir.Table:
    """Falls (distinct dates) and fractures in each window, and days since the last fall."""
    falls = fall_events(src, codes).filter(lambda t: t.event_date < lit(day))
    fall_counts = falls.group_by("person_id").aggregate(
        **_window_counts(falls, day, "falls", distinct=True),
        days_since_last_fall=lit(day).delta(falls.event_date.max(), unit="day"),
    )
    fractures = _recent(fracture_events(src, codes), day)
    fracture_counts = fractures.group_by("person_id").aggregate(
        **_window_counts(fractures, day, "fractures", distinct=True)
    )
    return _outer(fall_counts, fracture_counts)


def last_emergency_admission(src: Sources, day: date) -> ir.Table:
    spells = src["hospital_episode"]
    before = spells.filter(
        (spells.admission_method == "emergency") & (spells.admission_date < lit(day))
    )
    return before.group_by("person_id").aggregate(
        days_since_last_emergency_admission=lit(day).delta(before.admission_date.max(), unit="day")
    )


def gp_record(src: Sources, day: date, codes: Codes) -> ir.Table:
    """Condition and frailty-deficit codes ever recorded, drinking, recent GP contact."""
    gp = src["gp_event"]
    ev = gp.filter(gp.event_date < lit(day))
    code = ev.snomed_code
    heavy = code.isin(sorted(codes.heavy_drinker)) | (
        code.isin(sorted(codes.alcohol_units)) & (ev.value > HEAVY_DRINKING_UNITS)
    )
    contact = ev.group_by("person_id").aggregate(
        heavy_drinking=heavy.fill_null(False).any(),
        bmi_recorded=(code.isin(sorted(codes.bmi)) & ev.value.notnull()).any(),
        has_gp_event_730d=(ev.event_date >= lit(day - timedelta(days=730))).any(),
    )
    return _left(contact, _gp_codes(ev, codes))


def _gp_codes(ev: ir.Table, codes: Codes) -> ir.Table:
    """Condition and deficit flags, from the third of GP events that carry one of their codes
    (a person with none gets nulls, which feature_table turns into 0)."""
    sets = {f"gp_{name}": snomed for name, (snomed, _) in codes.conditions.items()}
    deficits = codes.efi_deficits.items()
    sets.update({f"deficit_{name}": snomed for name, snomed in deficits if snomed})
    relevant = sorted(set().union(*sets.values()))
    coded = ev.filter(ev.snomed_code.isin(relevant))
    return coded.group_by("person_id").aggregate(
        **{name: coded.snomed_code.isin(sorted(snomed)).any() for name, snomed in sets.items()}
    )


def hospital_conditions(src: Sources, day: date, codes: Codes) -> ir.Table:
    diag = hospital_diagnoses(src)
    ev = diag.filter(diag.event_date < lit(day))
    aggs = {
        f"hes_{name}": code_in(ev.code, icd).any() for name, (_, icd) in codes.conditions.items()
    }
    return ev.group_by("person_id").aggregate(**aggs)


def tendency_to_fall(src: Sources, day: date, codes: Codes) -> ir.Table:
    diag = hospital_diagnoses(src).select("person_id", "event_date", "code")
    ae = src["ae_attendance"]
    coded = ibis.union(
        diag, ae.select("person_id", event_date=ae.arrival_date, code=ae.diagnosis_code)
    )
    ev = coded.filter(
        (coded.event_date < lit(day)) & coded.code.isin(sorted(codes.tendency_to_fall_icd10))
    )
    return ev.group_by("person_id").aggregate(tendency_to_fall=ev.count())


def medicines(src: Sources, day: date, codes: Codes) -> ir.Table:
    """Distinct medicines and falls-risk-increasing drugs issued in the last 90 days.

    Two steps (person and medicine, then person) instead of ten COUNT(DISTINCT)s: the same
    counts at a third of the cost.
    """
    rx = src["prescription"]
    ev = rx.filter(
        (rx.issue_date < lit(day))
        & (rx.issue_date >= lit(day - timedelta(days=90)))
        & rx.medicine.notnull()
    )
    classes = {
        f"frid_{name}_90d": code_in(ev.bnf_code, prefixes)
        for name, prefixes in codes.frid_bnf_prefixes.items()
    }
    per_medicine = ev.group_by(["person_id", "medicine"]).aggregate(
        **{name: flag.any() for name, flag in classes.items()}
    )
    return per_medicine.group_by("person_id").aggregate(
        medicines_90d=per_medicine.count(),
        **{name: per_medicine[name].cast("int64").sum() for name in classes},
    )


def _latest(events: ir.Table, values: Mapping[str, ir.Value]) -> ir.Table:
    """The largest of each value on each person's latest event date (ties broken by max)."""
    dated = events.select("person_id", "event_date", **values)
    last = dated.group_by("person_id").aggregate(last_date=dated.event_date.max()).view()
    on_last = dated.join(last, "person_id").filter(lambda t: t.event_date == t.last_date)
    return on_last.group_by("person_id").aggregate(**{n: on_last[n].max() for n in values})


def observations(src: Sources, day: date, codes: Codes) -> ir.Table:
    """Latest BMI and smoking status before D."""
    gp = src["gp_event"]
    ev = gp.filter(gp.event_date < lit(day))
    bmi_rows = ev.filter(ev.snomed_code.isin(sorted(codes.bmi)) & ev.value.notnull())
    bmi = _latest(bmi_rows, {"bmi": bmi_rows.value})
    rank = {"never": 1, "ex": 2, "current": 3}
    smoking_rank = ibis.cases(
        *(
            (
                ev.snomed_code.isin(
                    sorted(c for c, s in codes.smoking_status.items() if s == level)
                ),
                rank[level],
            )
            for level in rank
        )
    )
    smokers = ev.mutate(smoking_rank=smoking_rank).filter(lambda t: t.smoking_rank.notnull())
    smoking = _latest(smokers, {"smoking_rank": smokers.smoking_rank})
    smoking = smoking.select(
        "person_id",
        smoking_status=ibis.cases(*((smoking.smoking_rank == r, s) for s, r in rank.items())),
    )
    return _outer(bmi, smoking)


def social_care(src: Sources, day: date) -> ir.Table:
    """Adult social care status at D."""
    care = src["social_care"]
    ev = care.filter(care.start_date < lit(day))
    now = ongoing_at(ev, day)
    kind = ev.service_type
    last_year = ev.start_date >= lit(day - timedelta(days=365))
    return ev.group_by("person_id").aggregate(
        home_care_now=(now & (kind == "home_care")).any(),
        home_care_hours_now=ev.hours_per_week.sum(where=now & (kind == "home_care")),
        telecare_now=(now & (kind == "telecare")).any(),
        reablement_365d=(last_year & (kind == "reablement")).any(),
        care_assessment_365d=(last_year & (kind == "assessment")).any(),
    )


def residential_now(src: Sources, day: date) -> ir.Table:
    """People in residential or nursing care at D (left out of both cohorts)."""
    care = src["social_care"]
    ev = care.filter(care.service_type.isin(["residential", "nursing"]) & ongoing_at(care, day))
    return ev.select("person_id").distinct()


def fire_visits(src: Sources, day: date) -> ir.Table:
    """Findings of the latest safe and well visit before D (any finding on tied visits)."""
    fire = src["fire_home_visit"]
    ev = fire.filter(fire.visit_date < lit(day)).mutate(event_date=fire.visit_date)
    findings = ("trip_hazards", "smoke_alarm_working", "smoker", "mobility_concern")
    latest = _latest(ev, {f"fire_{f}": ev[f].cast("int64") for f in findings})
    return latest.mutate(fire_visited=1)


def fall_proneness(src: Sources, day: date, codes: Codes) -> ir.Table:
    """Gait or balance codes ever, dizziness and falls assessments in the last year (GP), and
    mobility equipment from social care ever, before D."""
    gp = src["gp_event"]
    wanted = sorted(codes.gait_balance | codes.dizziness | codes.falls_assessment)
    coded = gp.filter((gp.event_date < lit(day)) & gp.snomed_code.isin(wanted))
    year = coded.event_date >= lit(day - timedelta(days=365))
    gp_flags = coded.group_by("person_id").aggregate(
        gait_balance_problem=coded.snomed_code.isin(sorted(codes.gait_balance)).any(),
        dizziness_365d=(coded.snomed_code.isin(sorted(codes.dizziness)) & year).any(),
        falls_assessment_365d=(coded.snomed_code.isin(sorted(codes.falls_assessment)) & year).any(),
    )
    care = src["social_care"]
    equipment = care.filter((care.service_type == "equipment") & (care.start_date < lit(day)))
    held = equipment.select("person_id").distinct().mutate(mobility_equipment=True)
    return _outer(gp_flags, held)


def _left(left: ir.Table, right: ir.Table) -> ir.Table:
    joined = left.left_join(right, "person_id")
    return joined.select(*[c for c in joined.columns if c != "person_id_right"])


def _outer(left: ir.Table, right: ir.Table) -> ir.Table:
    joined = left.outer_join(right.view(), "person_id")
    return joined.select(
        person_id=ibis.coalesce(joined.person_id, joined.person_id_right),
        **{c: joined[c] for c in joined.columns if c not in ("person_id", "person_id_right")},
    )


# --- assembling -------------------------------------------------------------------------------

COUNT_LIKE = frozenset(
    f.name for f in FEATURES if f.kind != "categorical" and f.name not in {
        "age_years", "imd_decile", "lives_alone", "informal_carer", "bmi", "efi",
        "days_since_last_fall", "days_since_last_emergency_admission", "lookback_days",
        "fire_trip_hazards", "fire_smoke_alarm_working", "fire_smoker", "fire_mobility_concern",
        "frid_classes_90d", "ethnicity_recorded",
    }
)  # fmt: skip  # zero when a person has no records


def _joined(src: Sources, day: date, codes: Codes) -> ir.Table:
    families = (
        demographics(src, day),
        ae_activity(src, day),
        ambulance_activity(src, day),
        admissions(src, day, codes),
        falls_and_fractures(src, day, codes),
        last_emergency_admission(src, day),
        gp_record(src, day, codes),
        hospital_conditions(src, day, codes),
        tendency_to_fall(src, day, codes),
        medicines(src, day, codes),
        observations(src, day, codes),
        social_care(src, day),
        fire_visits(src, day),
        fall_proneness(src, day, codes),
    )
    table = population(src, day)
    for family in families:
        table = _left(table, family)
    return table


def _efi_band(deficits: ir.IntegerValue) -> ir.StringValue:
    """Band from the deficit count: the largest k with k/36 inside each band's upper bound."""
    branches = []
    for band, upper in EFI_BANDS:
        most = int(upper * EFI_DENOMINATOR + 1e-9)
        branches.append((deficits <= most, band))
    return ibis.cases(*branches)


def feature_table(
    src: Sources,
    day: date,
    data_start: date,
    codes: Codes | None = None,
    missing: Collection[str] = (),
) -> ir.Table:
    """Every registry feature at D for everyone in the population, in registry order, with
    the codes of `codes` (default: the packaged code lists).

    `missing`: features the source cannot give (features.coverage), NULL for everyone: a
    table the source lacks is no evidence of "none", so its counts are never zero."""
    t = _joined(src, day, codes or packaged_codes())
    zero: dict[str, ir.Value] = {}
    for name in t.columns:
        if name in COUNT_LIKE or name.startswith(("gp_", "hes_", "deficit_", "frid_")):
            col = t[name]
            zero[name] = (col.cast("int64") if col.type().is_boolean() else col).fill_null(0)
    t = t.mutate(**zero)
    conditions = {
        f"has_{name}": ((t[f"gp_{name}"] + t[f"hes_{name}"]) > 0).cast("int64")
        for name in CONDITIONS
    }
    frid_names = [f"frid_{name}_90d" for name in FRID_CLASSES]
    polypharmacy = (t.medicines_90d >= POLYPHARMACY_MEDICINES).cast("int64")
    deficits = [t[c] for c in t.columns if c.startswith("deficit_")]
    deficit_count = sum(deficits[1:], deficits[0]) + polypharmacy
    lookback = max(0, min((day - data_start).days, LOOKBACK_CAP_DAYS))
    derived: dict[str, ir.Value] = {
        **conditions,
        "tendency_to_fall": (t.tendency_to_fall > 0).cast("int64"),
        "efi": deficit_count.cast("float64") / EFI_DENOMINATOR,
        "efi_band": _efi_band(deficit_count),
        "frid_classes_90d": sum(((t[c] > 0).cast("int64") for c in frid_names), ibis.literal(0)),
        "fire_visited": (t.fire_visited > 0).cast("int64"),
        "lookback_days": ibis.literal(lookback, type="int64"),
    }
    t = t.mutate(**derived)
    # Numbers leave the engine as float64, the type every consumer uses (a cast after the
    # query would allocate the whole table a second time).
    return t.select(
        "person_id",
        *[_output(t, f.name, f.kind, f.name in missing) for f in FEATURES],
    )


def _output(t: ir.Table, name: str, kind: str, missing: bool) -> ir.Value:
    """One feature column as it leaves the engine: text for categories, else float64."""
    if missing:
        return ibis.null("string" if kind == "categorical" else "float64").name(name)
    return t[name] if kind == "categorical" else t[name].cast("float64").name(name)
