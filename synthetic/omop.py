"""A synthetic county (a contract extract) written as an OMOP CDM 5.4 DuckDB database.

- person, observation_period, visit_occurrence, condition_occurrence, drug_exposure,
  measurement, observation, death, concept, concept_ancestor and cdm_source in schema main;
- what no CDM table holds (adult social care, fire home visits, ambulance call-outs, and the
  person's area, practice and household) as plain tables in schema `carerisk_local`.

OMOP person ids are 1..N in the order of the county's pseudonyms, which are kept as
`person_source_value` (the truth files are keyed by the pseudonyms). Codes the county uses get
local concepts (ids from 2,000,000,000, as the CDM reserves for them), except BMI, written as
its LOINC measurement. Medicines are written as their RxNorm ingredient, from the importers'
RxNorm -> BNF map; hospital and A&E diagnoses as ICD-10 source values on their visits.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from features.codes import packaged_codes
from features.store_sql import literal
from importers.maps import OmopConcept, map_path, omop_concepts

if TYPE_CHECKING:
    from synthetic.config import CountyConfig, GenerationSummary
    from synthetic.generate import Progress

CDM_VERSION = "5.4"
OMOP_FILE = "omop.duckdb"
LOCAL_SCHEMA = "carerisk_local"
LOCAL_CONCEPT_FROM = 2_000_000_000
LOCAL_TABLES = ("social_care", "fire_home_visit", "ambulance_incident")


def _id(name: str) -> int:
    """The OMOP standard concept id of `name` (importers/maps/omop_concepts.csv)."""
    return omop_concepts().id(name)


def _concept_ids(*names: str) -> tuple[int, ...]:
    return tuple(_id(n) for n in names)


def _bmi_loinc() -> OmopConcept:
    """Body mass index as its LOINC measurement concept."""
    return omop_concepts()["bmi"]


def _bmi() -> str:
    """The SNOMED CT body mass index observable (the code lists' bmi concept)."""
    return sorted(packaged_codes().bmi)[0]


def observation_snomed() -> frozenset[str]:
    """GP entries written to observation (lifestyle, assessments, values other than BMI)."""
    codes = packaged_codes()
    return frozenset(
        {
            *codes.alcohol_units,
            *codes.heavy_drinker,
            *codes.smoking_status,
            *codes.falls_assessment,
        }
    )


def write_omop(extract_dir: Path, database: Path, release_date: str, start: str) -> dict[str, int]:
    """Write the county extract in `extract_dir` (Parquet) as an OMOP CDM 5.4 database;
    returns the rows written per CDM table."""
    database.unlink(missing_ok=True)
    con = duckdb.connect(str(database))
    try:
        con.execute("SET enable_progress_bar = false")
        for name in (
            "person",
            "gp_event",
            "prescription",
            "hospital_episode",
            "ae_attendance",
            "death",
            *LOCAL_TABLES,
        ):
            path = extract_dir / f"{name}.parquet"
            con.execute(f"CREATE TEMP VIEW x_{name} AS SELECT * FROM read_parquet({literal(path)})")
        _ids(con)
        _concepts(con)
        _person(con, start, release_date)
        _visits(con)
        _conditions(con)
        _gp_rest(con)
        _drugs(con)
        _death(con)
        _cdm_source(con, release_date)
        _local(con)
        rows = {}
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND NOT temporary "
            "ORDER BY 1"
        ).fetchall():
            count = con.execute(f"SELECT count(*) FROM main.{name}").fetchone()
            rows[name] = int(count[0]) if count else 0
        return rows
    finally:
        con.close()


def _ids(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TEMP TABLE pid AS SELECT person_id AS pseudonym, "
        "row_number() OVER (ORDER BY person_id) AS person_id FROM x_person"
    )


def _concepts(con: duckdb.DuckDBPyConnection) -> None:
    """Local concepts for the county's SNOMED CT, ICD-10 and RxNorm codes, and BMI's LOINC."""
    diag = " UNION ".join(
        f"SELECT diag_{n:02d} AS code FROM x_hospital_episode" for n in range(1, 7)
    )
    bmi = _bmi_loinc()
    bmi_id, bmi_name, bmi_code = bmi.concept_id, bmi.concept_name, bmi.concept_code
    con.execute(
        f"""
        CREATE TEMP TABLE ingredient AS
        SELECT m.*, row_number() OVER (ORDER BY m.medicine, m.ingredient) AS n
        FROM read_csv({literal(map_path("rxnorm_bnf"))}, header = true, all_varchar = true) m
        WHERE (m.bnf_code, m.medicine) IN (SELECT DISTINCT bnf_code, medicine FROM x_prescription)
        """
    )
    con.execute(
        f"""
        CREATE TABLE concept AS
        WITH codes AS (
            SELECT DISTINCT 'SNOMED' AS vocabulary_id, snomed_code AS code, 'Condition' AS domain,
                'Clinical Finding' AS class, 'S' AS standard
            FROM x_gp_event WHERE snomed_code <> {literal(_bmi())}
            UNION SELECT DISTINCT 'ICD10', code, 'Condition', 'ICD10 code', NULL
            FROM ({diag} UNION SELECT diagnosis_code FROM x_ae_attendance
                UNION SELECT injury_cause FROM x_ae_attendance) WHERE code IS NOT NULL
        ), numbered AS (
            SELECT *, {LOCAL_CONCEPT_FROM} + row_number() OVER (ORDER BY vocabulary_id, code)
                AS concept_id FROM codes
        )
        SELECT CAST(concept_id AS BIGINT) AS concept_id,
            vocabulary_id || ' ' || code AS concept_name,
            domain AS domain_id, vocabulary_id, class AS concept_class_id,
            standard AS standard_concept, code AS concept_code,
            DATE '1970-01-01' AS valid_start_date, DATE '2099-12-31' AS valid_end_date,
            CAST(NULL AS VARCHAR) AS invalid_reason
        FROM numbered
        UNION ALL
        SELECT {bmi_id}, {literal(bmi_name)}, 'Measurement', 'LOINC', 'Clinical Observation',
            'S', {literal(bmi_code)}, DATE '1970-01-01', DATE '2099-12-31', NULL
        UNION ALL
        SELECT {LOCAL_CONCEPT_FROM} + 1000000 + n, ingredient, 'Drug',
            CASE WHEN rxnorm_code IS NULL THEN 'RxNorm Extension' ELSE 'RxNorm' END,
            'Ingredient', 'S',
            coalesce(rxnorm_code, 'OMOP' || CAST({LOCAL_CONCEPT_FROM} + 1000000 + n AS VARCHAR)),
            DATE '1970-01-01', DATE '2099-12-31', NULL
        FROM ingredient
        """
    )
    con.execute(
        f"""
        CREATE TABLE concept_ancestor AS
        SELECT CAST({LOCAL_CONCEPT_FROM} + 1000000 + n AS BIGINT) AS ancestor_concept_id,
            CAST({LOCAL_CONCEPT_FROM} + 1000000 + n AS BIGINT) AS descendant_concept_id,
            0 AS min_levels_of_separation, 0 AS max_levels_of_separation
        FROM ingredient
        """
    )


def _person(con: duckdb.DuckDBPyConnection, start: str, end: str) -> None:
    ehr, male, female = _concept_ids("ehr", "male", "female")
    con.execute(
        f"""
        CREATE TABLE person AS
        SELECT i.person_id, CASE p.sex WHEN 'M' THEN {male} ELSE {female} END AS gender_concept_id,
            year(p.birth_month) AS year_of_birth, month(p.birth_month) AS month_of_birth,
            CAST(NULL AS INTEGER) AS day_of_birth, CAST(NULL AS TIMESTAMP) AS birth_datetime,
            0 AS race_concept_id, 0 AS ethnicity_concept_id, CAST(NULL AS BIGINT) AS location_id,
            CAST(NULL AS BIGINT) AS provider_id, CAST(NULL AS BIGINT) AS care_site_id,
            p.person_id AS person_source_value, p.sex AS gender_source_value,
            0 AS gender_source_concept_id, p.ethnicity AS race_source_value,
            0 AS race_source_concept_id, CAST(NULL AS VARCHAR) AS ethnicity_source_value,
            0 AS ethnicity_source_concept_id
        FROM x_person p JOIN pid i ON i.pseudonym = p.person_id ORDER BY i.person_id
        """
    )
    con.execute(
        f"""
        CREATE TABLE observation_period AS
        SELECT i.person_id AS observation_period_id, i.person_id,
            greatest(DATE {literal(start)}, p.birth_month) AS observation_period_start_date,
            least(DATE {literal(end)}, coalesce(d.date_of_death, DATE {literal(end)}))
                AS observation_period_end_date,
            {ehr} AS period_type_concept_id
        FROM x_person p JOIN pid i ON i.pseudonym = p.person_id
        LEFT JOIN x_death d ON d.person_id = p.person_id ORDER BY i.person_id
        """
    )


def _visits(con: duckdb.DuckDBPyConnection) -> None:
    """Spells (9201, admitted from the ER or from home) then A&E attendances (9203)."""
    ehr, inpatient, er, from_er, from_home = _concept_ids(
        "ehr", "inpatient_visit", "er_visit", "emergency_room_place", "home_place"
    )
    con.execute(
        """
        CREATE TEMP TABLE visit AS
        SELECT row_number() OVER (ORDER BY kind, n) AS visit_occurrence_id, * FROM (
            SELECT 1 AS kind, row_number() OVER (ORDER BY episode_id) AS n, episode_id AS src,
                person_id, admission_date AS start_date, discharge_date AS end_date,
                admission_method AS method, NULL AS disposal
            FROM x_hospital_episode
            UNION ALL
            SELECT 2, row_number() OVER (ORDER BY attendance_id), attendance_id, person_id,
                arrival_date, arrival_date, NULL, disposal
            FROM x_ae_attendance
        )
        """
    )
    con.execute(
        f"""
        CREATE TABLE visit_occurrence AS
        SELECT v.visit_occurrence_id, i.person_id,
            CASE v.kind WHEN 1 THEN {inpatient} ELSE {er} END AS visit_concept_id,
            v.start_date AS visit_start_date, CAST(NULL AS TIMESTAMP) AS visit_start_datetime,
            v.end_date AS visit_end_date, CAST(NULL AS TIMESTAMP) AS visit_end_datetime,
            {ehr} AS visit_type_concept_id, CAST(NULL AS BIGINT) AS provider_id,
            CAST(NULL AS BIGINT) AS care_site_id, v.src AS visit_source_value,
            0 AS visit_source_concept_id,
            CASE v.method WHEN 'emergency' THEN {from_er} WHEN 'elective' THEN {from_home}
                ELSE 0 END AS admitted_from_concept_id,
            v.method AS admitted_from_source_value, 0 AS discharged_to_concept_id,
            v.disposal AS discharged_to_source_value,
            CAST(NULL AS BIGINT) AS preceding_visit_occurrence_id
        FROM visit v JOIN pid i ON i.pseudonym = v.person_id ORDER BY 1
        """
    )


def _conditions(con: duckdb.DuckDBPyConnection) -> None:
    """GP diagnoses and findings (no visit), then each visit's ICD-10 diagnoses in order."""
    ehr, primary, secondary = _concept_ids("ehr", "primary_diagnosis", "secondary_diagnosis")
    diag = " UNION ALL ".join(
        f"SELECT episode_id AS src, {n} AS pos, diag_{n:02d} AS code FROM x_hospital_episode"
        for n in range(1, 7)
    )
    con.execute(
        f"""
        CREATE TABLE condition_occurrence AS
        WITH gp AS (
            SELECT g.event_id, g.person_id, g.event_date, k.concept_id
            FROM x_gp_event g JOIN concept k ON k.vocabulary_id = 'SNOMED'
                AND k.concept_code = g.snomed_code
            WHERE g.value IS NULL AND g.snomed_code NOT IN
                ({", ".join(literal(c) for c in sorted(observation_snomed() | {_bmi()}))})
        ), dx AS (
            SELECT v.visit_occurrence_id, v.person_id, v.start_date, d.pos, d.code
            FROM ({diag}) d JOIN visit v ON v.kind = 1 AND v.src = d.src
            WHERE d.code IS NOT NULL
            UNION ALL
            SELECT v.visit_occurrence_id, v.person_id, v.start_date, d.pos, d.code FROM (
                SELECT attendance_id AS src, 1 AS pos, diagnosis_code AS code FROM x_ae_attendance
                UNION ALL SELECT attendance_id, 2, injury_cause FROM x_ae_attendance
            ) d JOIN visit v ON v.kind = 2 AND v.src = d.src WHERE d.code IS NOT NULL
        ), rows AS (
            SELECT 1 AS part, g.event_id AS k1, 0 AS k2, g.person_id, g.event_date AS day,
                g.concept_id, NULL AS code, NULL AS source_concept, NULL AS visit, NULL AS pos
            FROM gp g
            UNION ALL
            SELECT 2, CAST(d.visit_occurrence_id AS VARCHAR), d.pos, d.person_id, d.start_date, 0,
                d.code, k.concept_id, d.visit_occurrence_id, d.pos
            FROM dx d JOIN concept k ON k.vocabulary_id = 'ICD10' AND k.concept_code = d.code
        )
        SELECT row_number() OVER (ORDER BY part, lpad(k1, 20, '0'), k2) AS condition_occurrence_id,
            i.person_id, r.concept_id AS condition_concept_id, r.day AS condition_start_date,
            CAST(NULL AS TIMESTAMP) AS condition_start_datetime,
            CAST(NULL AS DATE) AS condition_end_date,
            CAST(NULL AS TIMESTAMP) AS condition_end_datetime,
            {ehr} AS condition_type_concept_id,
            CASE WHEN r.pos = 1 THEN {primary} WHEN r.pos > 1 THEN {secondary} ELSE 0 END
                AS condition_status_concept_id,
            CAST(NULL AS VARCHAR) AS stop_reason, CAST(NULL AS BIGINT) AS provider_id,
            r.visit AS visit_occurrence_id, CAST(NULL AS BIGINT) AS visit_detail_id,
            coalesce(r.code, k.concept_code) AS condition_source_value,
            coalesce(r.source_concept, 0) AS condition_source_concept_id,
            CAST(NULL AS VARCHAR) AS condition_status_source_value
        FROM rows r JOIN pid i ON i.pseudonym = r.person_id
        LEFT JOIN concept k ON k.concept_id = r.concept_id
        ORDER BY 1
        """
    )


def _gp_rest(con: duckdb.DuckDBPyConnection) -> None:
    """BMI as a LOINC measurement; lifestyle entries and other values as observations."""
    ehr, bmi = _id("ehr"), _bmi_loinc()
    lifestyle = ", ".join(literal(c) for c in sorted(observation_snomed()))
    con.execute(
        f"""
        CREATE TABLE measurement AS
        SELECT row_number() OVER (ORDER BY g.event_id) AS measurement_id, i.person_id,
            {bmi.concept_id} AS measurement_concept_id, g.event_date AS measurement_date,
            CAST(NULL AS TIMESTAMP) AS measurement_datetime, CAST(NULL AS VARCHAR) AS
            measurement_time, {ehr} AS measurement_type_concept_id, 0 AS operator_concept_id,
            g.value AS value_as_number, 0 AS value_as_concept_id, 0 AS unit_concept_id,
            CAST(NULL AS DOUBLE) AS range_low, CAST(NULL AS DOUBLE) AS range_high,
            CAST(NULL AS BIGINT) AS provider_id, CAST(NULL AS BIGINT) AS visit_occurrence_id,
            CAST(NULL AS BIGINT) AS visit_detail_id,
            {literal(bmi.concept_code)} AS measurement_source_value,
            0 AS measurement_source_concept_id, 'kg/m2' AS unit_source_value,
            0 AS unit_source_concept_id, CAST(g.value AS VARCHAR) AS value_source_value,
            CAST(NULL AS BIGINT) AS measurement_event_id, 0 AS meas_event_field_concept_id
        FROM x_gp_event g JOIN pid i ON i.pseudonym = g.person_id
        WHERE g.snomed_code = {literal(_bmi())}
        ORDER BY 1
        """
    )
    con.execute(
        f"""
        CREATE TABLE observation AS
        SELECT row_number() OVER (ORDER BY g.event_id) AS observation_id, i.person_id,
            k.concept_id AS observation_concept_id, g.event_date AS observation_date,
            CAST(NULL AS TIMESTAMP) AS observation_datetime, {ehr} AS observation_type_concept_id,
            g.value AS value_as_number, CAST(NULL AS VARCHAR) AS value_as_string,
            0 AS value_as_concept_id, 0 AS qualifier_concept_id, 0 AS unit_concept_id,
            CAST(NULL AS BIGINT) AS provider_id, CAST(NULL AS BIGINT) AS visit_occurrence_id,
            CAST(NULL AS BIGINT) AS visit_detail_id, g.snomed_code AS observation_source_value,
            0 AS observation_source_concept_id, CAST(NULL AS VARCHAR) AS unit_source_value,
            CAST(NULL AS VARCHAR) AS qualifier_source_value,
            CAST(g.value AS VARCHAR) AS value_source_value,
            CAST(NULL AS BIGINT) AS observation_event_id, 0 AS obs_event_field_concept_id
        FROM x_gp_event g JOIN pid i ON i.pseudonym = g.person_id
        JOIN concept k ON k.vocabulary_id = 'SNOMED' AND k.concept_code = g.snomed_code
        WHERE g.snomed_code <> {literal(_bmi())}
            AND (g.value IS NOT NULL OR g.snomed_code IN ({lifestyle}))
        ORDER BY 1
        """
    )


def _drugs(con: duckdb.DuckDBPyConnection) -> None:
    ehr_prescription = _id("ehr_prescription")
    con.execute(
        f"""
        CREATE TABLE drug_exposure AS
        SELECT row_number() OVER (ORDER BY p.prescription_id) AS drug_exposure_id, i.person_id,
            {LOCAL_CONCEPT_FROM} + 1000000 + g.n AS drug_concept_id,
            p.issue_date AS drug_exposure_start_date,
            CAST(NULL AS TIMESTAMP) AS drug_exposure_start_datetime,
            p.issue_date AS drug_exposure_end_date,
            CAST(NULL AS TIMESTAMP) AS drug_exposure_end_datetime,
            CAST(NULL AS DATE) AS verbatim_end_date, {ehr_prescription} AS drug_type_concept_id,
            CAST(NULL AS VARCHAR) AS stop_reason, CAST(NULL AS INTEGER) AS refills,
            CAST(NULL AS DOUBLE) AS quantity, CAST(NULL AS INTEGER) AS days_supply,
            CAST(NULL AS VARCHAR) AS sig, 0 AS route_concept_id,
            CAST(NULL AS VARCHAR) AS lot_number, CAST(NULL AS BIGINT) AS provider_id,
            CAST(NULL AS BIGINT) AS visit_occurrence_id, CAST(NULL AS BIGINT) AS visit_detail_id,
            p.medicine AS drug_source_value, 0 AS drug_source_concept_id,
            CAST(NULL AS VARCHAR) AS route_source_value,
            CAST(NULL AS VARCHAR) AS dose_unit_source_value
        FROM x_prescription p JOIN pid i ON i.pseudonym = p.person_id
        JOIN (
            SELECT bnf_code, medicine, min(n) AS n FROM ingredient GROUP BY ALL
        ) g ON g.bnf_code = p.bnf_code AND g.medicine = p.medicine
        ORDER BY 1
        """
    )
    missing = con.execute(
        "SELECT DISTINCT bnf_code, medicine FROM x_prescription "
        "WHERE (bnf_code, medicine) NOT IN (SELECT bnf_code, medicine FROM ingredient)"
    ).fetchall()
    if missing:
        raise ValueError(f"medicines with no RxNorm ingredient in the importers' map: {missing}")


def _death(con: duckdb.DuckDBPyConnection) -> None:
    death_certificate = _id("death_certificate")
    con.execute(
        f"""
        CREATE TABLE death AS
        SELECT i.person_id, d.date_of_death AS death_date,
            CAST(NULL AS TIMESTAMP) AS death_datetime, {death_certificate} AS death_type_concept_id,
            0 AS cause_concept_id, CAST(NULL AS VARCHAR) AS cause_source_value,
            0 AS cause_source_concept_id
        FROM x_death d JOIN pid i ON i.pseudonym = d.person_id ORDER BY 1
        """
    )


def _cdm_source(con: duckdb.DuckDBPyConnection, release_date: str) -> None:
    version = _id("cdm_version_5_4")
    con.execute(
        f"""
        CREATE TABLE cdm_source AS SELECT
            'carerisk synthetic county' AS cdm_source_name, 'carerisk' AS cdm_source_abbreviation,
            'carerisk' AS cdm_holder,
            'A seeded synthetic county with known true risks (carerisk synth --format omop)'
                AS source_description,
            CAST(NULL AS VARCHAR) AS source_documentation_reference,
            'carerisk synthetic/omop.py' AS cdm_etl_reference,
            DATE {literal(release_date)} AS source_release_date,
            DATE {literal(release_date)} AS cdm_release_date,
            {literal(CDM_VERSION)} AS cdm_version, {version} AS cdm_version_concept_id,
            'local concepts only' AS vocabulary_version
        """
    )


def _local(con: duckdb.DuckDBPyConnection) -> None:
    """The county's records no CDM table holds, keyed by the OMOP person id too."""
    con.execute(f"CREATE SCHEMA {LOCAL_SCHEMA}")
    for name in LOCAL_TABLES:
        con.execute(
            f"CREATE TABLE {LOCAL_SCHEMA}.{name} AS SELECT i.person_id AS omop_person_id, t.* "
            f"FROM x_{name} t JOIN pid i ON i.pseudonym = t.person_id ORDER BY 1"
        )
    con.execute(
        f"CREATE TABLE {LOCAL_SCHEMA}.person_area AS SELECT i.person_id AS omop_person_id, "
        "p.person_id, p.ethnicity, p.lsoa_code, p.imd_decile, p.district, p.practice_code, "
        "p.gp_system, p.lives_alone, p.informal_carer "
        "FROM x_person p JOIN pid i ON i.pseudonym = p.person_id ORDER BY 1"
    )


def generate_omop(
    config: CountyConfig, out_dir: Path, progress: Progress | None = None
) -> GenerationSummary:
    """Write the county as out_dir/omop.duckdb (CDM 5.4), out_dir/truth/ and manifest.json."""
    from synthetic.generate import generate

    out_dir = Path(out_dir)
    county = out_dir / ".county"
    shutil.rmtree(county, ignore_errors=True)
    try:
        summary = generate(config, county, "parquet", progress)
        shutil.rmtree(out_dir / "truth", ignore_errors=True)
        shutil.move(county / "truth", out_dir / "truth")
        manifest = json.loads((county / "manifest.json").read_text())
        rows = write_omop(county, out_dir / OMOP_FILE, manifest["extract_date"], manifest["start"])
    finally:
        shutil.rmtree(county, ignore_errors=True)
    manifest.update(
        {
            "format": "omop",
            "omop": {
                "database": OMOP_FILE,
                "cdm_version": CDM_VERSION,
                "local_schema": LOCAL_SCHEMA,
                "rows": rows,
                "person_ids": "OMOP person_id 1..N; person_source_value is the truth's person_id",
            },
        }
    )
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (out_dir / "manifest.json").write_text(text)
    return dataclasses.replace(summary, out_dir=str(out_dir), rows=rows)
