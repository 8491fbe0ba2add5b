"""`carerisk import omop`: an OMOP CDM 5.3 or 5.4 source to a contract extract, in SQL.

Every source row gets one candidate row with the reason it is dropped (NULL when written):
- person: sex from gender 8507/8532, month of birth from month_of_birth or birth_datetime;
- condition_occurrence: a row on an inpatient (9201), ER and inpatient (262) or ER (9203)
  visit is a hospital diagnosis (ICD-10 from the source value when it is ICD-10, else from
  the SNOMED CT -> ICD-10 map); any other is a GP record entry (SNOMED CT);
- observation, measurement: GP record entries (SNOMED CT; LOINC BMI as its SNOMED observable);
- drug_exposure: the RxNorm ingredients of the drug (concept_ancestor) through the
  RxNorm -> BNF map;
- visit_occurrence: inpatient visits are spells, ER visits attendances;
- death: the earliest death row of each person.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

import duckdb

from importers import codes
from importers.extract import Coverage, Plan, absent, cand, dates_of, write_extract
from importers.maps import omop_concepts
from importers.omop_source import OmopSource, open_omop
from importers.sql import NO_PERSON, prepare

PersonIds = Literal["person_id", "person_source_value"]
LONGEST_SPELL_DAYS = 365  # a longer inpatient visit is a long-term stay, not a hospital spell
PERSON_ID_PREFIX = "omop-"  # contract person ids need 6 characters or more
NOT_HELD = {
    "ambulance_incident": "OMOP CDM holds no ambulance call-outs",
    "social_care": "OMOP CDM holds no adult social care",
    "fire_home_visit": "OMOP CDM holds no fire and rescue home visits",
}
SOURCES = (
    "person",
    "condition_occurrence",
    "observation",
    "measurement",
    "drug_exposure",
    "visit_occurrence",
    "death",
)


def import_omop(
    source: str,
    out_dir: Path,
    *,
    schema: str | None = None,
    person_ids: PersonIds = "person_id",
    extract_date: date | None = None,
) -> dict[str, Any]:
    """Read the CDM at `source` and write the contract extract into `out_dir`; returns the
    manifest written (with its coverage block)."""
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    try:
        src = open_omop(con, source, schema)
        versions = prepare(con)
        _concepts(con)
        _persons(con, person_ids)
        _visits(con)
        _conditions(con)
        _visits_final(con)
        _gp_source(con, "observation", "o")
        _gp_source(con, "measurement", "m")
        _drugs(con)
        _deaths(con)
        plan = _plan(con, src, versions, extract_date)
        return write_extract(con, plan, Path(out_dir))
    finally:
        con.close()


def _id(name: str) -> int:
    """The OMOP standard concept id of `name` (importers/maps/omop_concepts.csv)."""
    return omop_concepts().id(name)


def _ids(*names: str) -> tuple[int, ...]:
    return tuple(_id(n) for n in names)


def _concepts(con: duckdb.DuckDBPyConnection) -> None:
    """One row per concept id (a doubled concept row must not double the events)."""
    con.execute(
        "CREATE TABLE concepts AS SELECT concept_id, any_value(vocabulary_id) AS vocabulary_id, "
        "any_value(concept_code) AS concept_code, any_value(concept_class_id) AS "
        "concept_class_id, lower(any_value(concept_name)) AS concept_name FROM src.concept "
        "WHERE concept_id IS NOT NULL GROUP BY concept_id"
    )


def _persons(con: duckdb.DuckDBPyConnection, person_ids: PersonIds) -> None:
    male, female = _ids("male", "female")
    if person_ids == "person_source_value":
        pid = "nullif(trim(person_source_value), '')"
    else:
        pid = f"'{PERSON_ID_PREFIX}' || CAST(person_id AS VARCHAR)"
    con.execute(
        f"""
        CREATE TABLE {cand("person")} AS
        WITH p AS (
            SELECT *, {pid} AS pid, coalesce(month_of_birth, month(birth_datetime)) AS m,
                row_number() OVER (
                    PARTITION BY person_id ORDER BY year_of_birth, m, gender_concept_id, pid
                ) AS nth
            FROM src.person
        ), q AS (
            SELECT *, row_number() OVER (PARTITION BY pid ORDER BY person_id) AS nth_pid FROM p
        )
        SELECT CAST(person_id AS VARCHAR) AS src_row, person_id AS omop_id, pid AS person_id,
            CASE
                WHEN person_id IS NULL THEN 'person_id is missing or not a number'
                WHEN nth > 1 THEN 'person_id repeats an earlier row'
                WHEN pid IS NULL THEN 'person_source_value is empty'
                WHEN nth_pid > 1 THEN 'person_source_value repeats an earlier person'
                WHEN gender_concept_id IS NULL OR gender_concept_id NOT IN ({male}, {female})
                    THEN 'gender_concept_id is neither {male} (male) nor {female} (female)'
                WHEN year_of_birth IS NULL OR year_of_birth NOT BETWEEN 1850 AND 2100
                    THEN 'year_of_birth is missing or not a year'
                WHEN m IS NULL OR m NOT BETWEEN 1 AND 12
                    THEN 'no month of birth (month_of_birth or birth_datetime)'
            END AS reason,
            CASE WHEN year_of_birth BETWEEN 1850 AND 2100 AND m BETWEEN 1 AND 12
                THEN make_date(CAST(year_of_birth AS INTEGER), CAST(m AS INTEGER), 1)
            END AS birth_month,
            CASE gender_concept_id WHEN {male} THEN 'M' WHEN {female} THEN 'F' END AS sex
        FROM q
        """
    )
    con.execute(
        f"CREATE TABLE persons AS SELECT omop_id, person_id FROM {cand('person')} "
        "WHERE reason IS NULL"
    )


def _visits(con: duckdb.DuckDBPyConnection) -> None:
    """Inpatient and ER visits with the reasons known before their diagnoses are."""
    inpatient, er_and_inpatient, er, er_place = _ids(
        "inpatient_visit", "er_and_inpatient_visit", "er_visit", "emergency_room_place"
    )
    con.execute(
        f"""
        CREATE TABLE visit_base AS
        WITH v AS (
            SELECT *, row_number() OVER (
                PARTITION BY visit_occurrence_id ORDER BY visit_start_date, visit_concept_id,
                visit_end_date, person_id
            ) AS nth
            FROM src.visit_occurrence
        ), er AS (
            SELECT DISTINCT person_id, visit_start_date AS day FROM src.visit_occurrence
            WHERE visit_concept_id = {er}
        ), kinds AS (
            SELECT DISTINCT visit_occurrence_id, visit_concept_id FROM src.visit_occurrence
        )
        SELECT v.visit_occurrence_id AS vid, pe.person_id, v.visit_start_date AS start_date,
            v.visit_end_date AS end_date,
            CASE WHEN v.visit_concept_id IN ({inpatient}, {er_and_inpatient}) THEN 'spell'
                WHEN v.visit_concept_id = {er} THEN 'attendance' END AS target,
            CASE
                WHEN v.visit_concept_id = {er_and_inpatient}
                    OR v.admitted_from_concept_id = {er_place} THEN 'emergency'
                WHEN coalesce(v.admitted_from_concept_id, 0) <> 0 THEN 'elective'
                WHEN prev.visit_concept_id = {er} OR EXISTS (
                    SELECT 1 FROM er WHERE er.person_id = v.person_id
                    AND er.day BETWEEN v.visit_start_date - 1 AND v.visit_start_date
                ) THEN 'emergency'
                ELSE 'elective'
            END AS method,
            CASE
                WHEN v.visit_occurrence_id IS NULL
                    THEN 'visit_occurrence_id is missing or not a number'
                WHEN v.nth > 1 THEN 'visit_occurrence_id repeats an earlier row'
                WHEN v.visit_concept_id IS NULL
                    OR v.visit_concept_id NOT IN ({inpatient}, {er_and_inpatient}, {er})
                    THEN 'not an inpatient ({inpatient}, {er_and_inpatient}) or ER ({er}) visit'
                WHEN pe.person_id IS NULL THEN '{NO_PERSON}'
                WHEN v.visit_start_date IS NULL THEN 'visit_start_date is missing or not a date'
                WHEN v.visit_end_date < v.visit_start_date
                    THEN 'visit_end_date before visit_start_date'
                WHEN v.visit_concept_id <> {er}
                    AND v.visit_end_date - v.visit_start_date > {LONGEST_SPELL_DAYS}
                    THEN 'stay of more than {LONGEST_SPELL_DAYS} days: not a hospital spell'
            END AS reason
        FROM v
        LEFT JOIN persons pe ON pe.omop_id = v.person_id
        LEFT JOIN (
            SELECT visit_occurrence_id, min(visit_concept_id) AS visit_concept_id FROM kinds
            GROUP BY visit_occurrence_id
        ) prev ON prev.visit_occurrence_id = v.preceding_visit_occurrence_id
        """
    )


def _conditions(con: duckdb.DuckDBPyConnection) -> None:
    """Conditions: hospital diagnoses on inpatient and ER visits, GP entries otherwise."""
    primary = _id("primary_diagnosis")
    con.execute(
        f"""
        CREATE TABLE cond_base AS
        WITH c AS (
            SELECT *, row_number() OVER (
                PARTITION BY condition_occurrence_id ORDER BY condition_start_date,
                condition_concept_id, condition_source_value, person_id, visit_occurrence_id
            ) AS nth
            FROM src.condition_occurrence
        ), visits AS (
            SELECT vid, any_value(target) AS target, bool_or(reason IS NULL) AS ok
            FROM visit_base WHERE target IS NOT NULL AND vid IS NOT NULL GROUP BY vid
        ), b AS (
            SELECT c.condition_occurrence_id AS id, pe.person_id, c.nth,
                c.condition_start_date AS day, v.vid, v.target, v.ok,
                coalesce(CASE WHEN k.vocabulary_id = 'SNOMED' THEN k.concept_code END,
                    snomed_of(c.condition_source_value)) AS snomed,
                coalesce(CASE WHEN c.condition_source_value IS NOT NULL
                    AND NOT regexp_full_match(trim(c.condition_source_value), '[0-9]+')
                    THEN icd10_of(c.condition_source_value) END,
                    CASE WHEN s.vocabulary_id LIKE 'ICD10%' THEN icd10_of(s.concept_code) END
                ) AS source_icd10,
                coalesce(c.condition_status_concept_id = {primary}, false)
                    AS is_primary
            FROM c
            LEFT JOIN persons pe ON pe.omop_id = c.person_id
            LEFT JOIN visits v ON v.vid = c.visit_occurrence_id
            LEFT JOIN concepts k ON k.concept_id = c.condition_concept_id
            LEFT JOIN concepts s ON s.concept_id = c.condition_source_concept_id
        )
        SELECT b.*, coalesce(b.source_icd10, m.icd10_code) AS icd10,
            CASE
                WHEN b.id IS NULL THEN 'condition_occurrence_id is missing or not a number'
                WHEN b.nth > 1 THEN 'condition_occurrence_id repeats an earlier row'
                WHEN b.person_id IS NULL THEN '{NO_PERSON}'
                WHEN b.day IS NULL THEN 'condition_start_date is missing or not a date'
                WHEN b.target IS NOT NULL AND NOT b.ok THEN 'its visit was not written'
                WHEN b.target IS NOT NULL AND coalesce(b.source_icd10, m.icd10_code) IS NULL
                    THEN 'no ICD-10 code (source value, source concept or SNOMED CT map)'
                WHEN b.target IS NULL AND b.snomed IS NULL
                    THEN 'no SNOMED CT code (concept or source value)'
            END AS early
        FROM b LEFT JOIN snomed_icd10 m ON m.snomed_code = b.snomed
        """
    )
    con.execute(
        """
        CREATE TABLE cond_diag AS
        WITH e AS (
            SELECT id, vid, target, icd10, is_primary,
                row_number() OVER (PARTITION BY vid, icd10 ORDER BY is_primary DESC, id) AS same
            FROM cond_base WHERE early IS NULL AND target IS NOT NULL
        )
        SELECT id, is_external(icd10) AS external,
            row_number() OVER (
                PARTITION BY vid, CASE WHEN target = 'attendance' THEN is_external(icd10) END
                ORDER BY is_primary DESC, id
            ) AS pos
        FROM e WHERE same = 1
        """
    )
    con.execute(
        f"""
        CREATE TABLE {cand("condition_occurrence")} AS
        SELECT CAST(b.id AS VARCHAR) AS src_row, b.id, b.person_id, b.day, b.snomed, b.icd10,
            b.vid, b.target, d.pos, d.external,
            coalesce(b.early, CASE
                WHEN b.target IS NULL THEN NULL
                WHEN d.id IS NULL THEN 'the same ICD-10 code is already on the visit'
                WHEN b.target = 'spell' AND d.pos > 6 THEN 'beyond the sixth diagnosis of the spell'
                WHEN b.target = 'attendance' AND d.pos > 1
                    THEN 'beyond the attendance''s one diagnosis and one external cause'
            END) AS reason
        FROM cond_base b LEFT JOIN cond_diag d ON d.id = b.id
        """
    )


def _visits_final(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""
        CREATE TABLE {cand("visit_occurrence")} AS
        SELECT CAST(v.vid AS VARCHAR) AS src_row, v.*, coalesce(v.reason, CASE
            WHEN v.target = 'spell' AND d.vid IS NULL THEN 'no ICD-10 diagnosis on the spell'
        END) AS final_reason
        FROM visit_base v
        LEFT JOIN (
            SELECT DISTINCT vid FROM {cand("condition_occurrence")}
            WHERE reason IS NULL AND vid IS NOT NULL
        ) d ON d.vid = v.vid
        """
    )
    con.execute(f"ALTER TABLE {cand('visit_occurrence')} DROP COLUMN reason")
    con.execute(f"ALTER TABLE {cand('visit_occurrence')} RENAME final_reason TO reason")


def _gp_source(con: duckdb.DuckDBPyConnection, table: str, prefix: str) -> None:
    """Observations or measurements: SNOMED CT from the concept, the LOINC map or the source
    value."""
    con.execute(
        f"""
        CREATE TABLE {cand(table)} AS
        WITH o AS (
            SELECT *, row_number() OVER (
                PARTITION BY {table}_id ORDER BY {table}_date, {table}_concept_id,
                {table}_source_value, value_as_number, person_id
            ) AS nth FROM src.{table}
        ), b AS (
            SELECT o.*, pe.person_id AS pid, coalesce(
                CASE WHEN k.vocabulary_id = 'SNOMED' THEN k.concept_code END,
                l.snomed_code, snomed_of(o.{table}_source_value)) AS code
            FROM o
            LEFT JOIN persons pe ON pe.omop_id = o.person_id
            LEFT JOIN concepts k ON k.concept_id = o.{table}_concept_id
            LEFT JOIN map_loinc_snomed l ON l.loinc_code = coalesce(
                CASE WHEN k.vocabulary_id = 'LOINC' THEN k.concept_code END,
                trim(o.{table}_source_value))
        )
        SELECT CAST({table}_id AS VARCHAR) AS src_row,
            CASE
                WHEN {table}_id IS NULL THEN '{table}_id is missing or not a number'
                WHEN nth > 1 THEN '{table}_id repeats an earlier row'
                WHEN pid IS NULL THEN '{NO_PERSON}'
                WHEN {table}_date IS NULL THEN '{table}_date is missing or not a date'
                WHEN code IS NULL THEN 'no SNOMED CT code (concept, LOINC map or source value)'
            END AS reason,
            '{prefix}' || CAST({table}_id AS VARCHAR) AS event_id, pid AS person_id,
            {table}_date AS event_date, code AS snomed_code, value_as_number AS value
        FROM b
        """
    )


def _drugs(con: duckdb.DuckDBPyConnection) -> None:
    """Drug exposures through their RxNorm ingredients to the BNF map; of a combination, the
    ingredient the map orders first (a falls-risk class first)."""
    con.execute(
        """
        CREATE TABLE drug_ingredient AS
        SELECT DISTINCT ca.descendant_concept_id AS drug, i.concept_code AS code,
            i.concept_name AS name
        FROM src.concept_ancestor ca JOIN concepts i ON i.concept_id = ca.ancestor_concept_id
        WHERE i.concept_class_id = 'Ingredient'
            AND i.vocabulary_id IN ('RxNorm', 'RxNorm Extension')
        UNION
        SELECT concept_id, concept_code, concept_name FROM concepts
        WHERE concept_class_id = 'Ingredient' AND vocabulary_id IN ('RxNorm', 'RxNorm Extension')
        """
    )
    con.execute(
        """
        CREATE TABLE drug_bnf AS
        SELECT i.drug, arg_min(m.bnf_code, m.choice) AS bnf_code,
            arg_min(m.medicine, m.choice) AS medicine
        FROM drug_ingredient i JOIN rxnorm_bnf m
            ON m.rxnorm_code = i.code OR lower(m.ingredient) = i.name
        GROUP BY i.drug
        """
    )
    con.execute(
        f"""
        CREATE TABLE {cand("drug_exposure")} AS
        WITH d AS (
            SELECT *, row_number() OVER (
                PARTITION BY drug_exposure_id ORDER BY drug_exposure_start_date, drug_concept_id,
                drug_source_value, person_id
            ) AS nth
            FROM src.drug_exposure
        ), by_code AS (
            SELECT rxnorm_code, arg_min(bnf_code, choice) AS bnf_code,
                arg_min(medicine, choice) AS medicine
            FROM rxnorm_bnf WHERE rxnorm_code IS NOT NULL GROUP BY rxnorm_code
        )
        SELECT CAST(d.drug_exposure_id AS VARCHAR) AS src_row,
            CASE
                WHEN d.drug_exposure_id IS NULL THEN 'drug_exposure_id is missing or not a number'
                WHEN d.nth > 1 THEN 'drug_exposure_id repeats an earlier row'
                WHEN pe.person_id IS NULL THEN '{NO_PERSON}'
                WHEN d.drug_exposure_start_date IS NULL
                    THEN 'drug_exposure_start_date is missing or not a date'
                WHEN b.drug IS NULL AND s.rxnorm_code IS NULL AND NOT EXISTS (
                    SELECT 1 FROM drug_ingredient i WHERE i.drug = d.drug_concept_id)
                    THEN 'no RxNorm ingredient (concept, concept_ancestor or source value)'
                WHEN b.drug IS NULL AND s.rxnorm_code IS NULL
                    THEN 'ingredient not in the RxNorm to BNF map'
            END AS reason,
            'd' || CAST(d.drug_exposure_id AS VARCHAR) AS prescription_id,
            pe.person_id, d.drug_exposure_start_date AS issue_date,
            coalesce(b.bnf_code, s.bnf_code) AS bnf_code,
            coalesce(b.medicine, s.medicine) AS medicine
        FROM d
        LEFT JOIN persons pe ON pe.omop_id = d.person_id
        LEFT JOIN drug_bnf b ON b.drug = d.drug_concept_id
        LEFT JOIN by_code s ON s.rxnorm_code = trim(d.drug_source_value)
        """
    )


def _deaths(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""
        CREATE TABLE {cand("death")} AS
        WITH d AS (
            SELECT *, row_number() OVER (PARTITION BY person_id ORDER BY death_date NULLS LAST)
                AS nth
            FROM src.death
        )
        SELECT CAST(d.person_id AS VARCHAR) AS src_row,
            CASE
                WHEN pe.person_id IS NULL THEN '{NO_PERSON}'
                WHEN d.death_date IS NULL THEN 'death_date is missing or not a date'
                WHEN d.nth > 1 THEN 'a later death row of the same person'
            END AS reason,
            pe.person_id, d.death_date AS date_of_death
        FROM d LEFT JOIN persons pe ON pe.omop_id = d.person_id
        """
    )


# --- what is written -------------------------------------------------------------------------

NONE = "NULL"
QUERIES: dict[str, str] = {
    "person": (
        f"SELECT person_id, birth_month, sex, {NONE} AS ethnicity, {NONE} AS lsoa_code, "
        f"{NONE} AS imd_decile, {NONE} AS district, {NONE} AS practice_code, {NONE} AS "
        f"gp_system, {NONE} AS lives_alone, {NONE} AS informal_carer "
        f"FROM {cand('person')} WHERE reason IS NULL"
    ),
    "gp_event": " UNION ALL ".join(
        [
            f"SELECT 'c' || CAST(id AS VARCHAR) AS event_id, person_id, day AS event_date, "
            f"snomed AS snomed_code, CAST(NULL AS DOUBLE) AS value "
            f"FROM {cand('condition_occurrence')} WHERE reason IS NULL AND target IS NULL",
            *(
                f"SELECT event_id, person_id, event_date, snomed_code, value FROM {cand(t)} "
                "WHERE reason IS NULL"
                for t in ("observation", "measurement")
            ),
        ]
    ),
    "prescription": (
        f"SELECT prescription_id, person_id, issue_date, bnf_code, medicine "
        f"FROM {cand('drug_exposure')} WHERE reason IS NULL"
    ),
    "hospital_episode": (
        "SELECT 'v' || CAST(v.vid AS VARCHAR) AS episode_id, v.person_id, "
        "v.start_date AS admission_date, v.end_date AS discharge_date, "
        f"v.method AS admission_method, {NONE} AS main_specialty, "
        + ", ".join(
            f"max(CASE WHEN c.pos = {n} THEN c.icd10 END) AS diag_{n:02d}" for n in range(1, 7)
        )
        + f" FROM {cand('visit_occurrence')} v JOIN {cand('condition_occurrence')} c "
        "ON c.vid = v.vid AND c.reason IS NULL "
        "WHERE v.reason IS NULL AND v.target = 'spell' GROUP BY ALL"
    ),
    "ae_attendance": (
        "SELECT 'v' || CAST(v.vid AS VARCHAR) AS attendance_id, v.person_id, "
        "v.start_date AS arrival_date, "
        "max(CASE WHEN NOT c.external THEN c.icd10 END) AS diagnosis_code, "
        "max(CASE WHEN c.external THEN c.icd10 END) AS injury_cause, "
        f"{NONE} AS disposal FROM {cand('visit_occurrence')} v "
        f"LEFT JOIN {cand('condition_occurrence')} c ON c.vid = v.vid AND c.reason IS NULL "
        "WHERE v.reason IS NULL AND v.target = 'attendance' GROUP BY ALL"
    ),
    "death": (f"SELECT person_id, date_of_death FROM {cand('death')} WHERE reason IS NULL"),
}
COVERAGE: dict[str, Coverage] = {
    "person": Coverage(
        "mapped",
        ["person"],
        ["lsoa_code", "imd_decile", "district", "practice_code", "gp_system"],
    ),
    "gp_event": Coverage("mapped", ["condition_occurrence", "observation", "measurement"]),
    "prescription": Coverage("mapped", ["drug_exposure"]),
    "hospital_episode": Coverage(
        "mapped", ["visit_occurrence", "condition_occurrence"], ["main_specialty"]
    ),
    "ae_attendance": Coverage("mapped", ["visit_occurrence", "condition_occurrence"], ["disposal"]),
    "death": Coverage("mapped", ["death"]),
}


def _plan(
    con: duckdb.DuckDBPyConnection,
    src: OmopSource,
    versions: dict[str, str],
    extract_date: date | None,
) -> Plan:
    tables: dict[str, Coverage] = {}
    queries: dict[str, str] = {}
    for name, cover in COVERAGE.items():
        present = [s for s in cover.sources if s in src.present]
        # a table whose own source table is missing from the CDM is absent, not empty
        if cover.sources[0] not in src.present:
            tables[name] = absent(f"the OMOP source has no {cover.sources[0]} table")
            continue
        tables[name] = Coverage(cover.state, present, list(cover.not_supplied))
        queries[name] = QUERIES[name]
    for name, reason in NOT_HELD.items():
        tables[name] = absent(reason)
    first, last = _window(con, queries)
    return Plan(
        source={
            "kind": "omop",
            "version": src.version,
            "form": src.kind,
            "location": src.location,
        },
        maps={"codelists": codes.codelists_digest(), **versions},
        tables=tables,
        queries=queries,
        candidates=[s for s in SOURCES if s in src.present],
        extract_date=extract_date or last,
        start=first,
    )


def _window(con: duckdb.DuckDBPyConnection, queries: dict[str, str]) -> tuple[date, date]:
    """The first day the source covers (its first observation period, else its first event)
    and its last (the release date, the last period end or the last event, the latest)."""
    events = dates_of(con, queries)
    row = con.execute(
        "SELECT min(observation_period_start_date), max(observation_period_end_date) "
        "FROM src.observation_period"
    ).fetchone()
    period_start, period_end = (row[0], row[1]) if row else (None, None)
    release = con.execute("SELECT max(source_release_date) FROM src.cdm_source").fetchone()
    ends = [d for d in (period_end, release[0] if release else None) if d is not None]
    if events:
        ends.append(events[1])
    start = period_start or (events[0] if events else None)
    if start is None or not ends:
        today = date.today()
        return start or today, max(ends) if ends else today
    return start, max(ends)
