"""`synth --format omop`: the county as an OMOP CDM 5.4 DuckDB, its local concepts and the
tables no CDM table holds kept apart."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from synthetic.config import CountyConfig
from synthetic.omop import CDM_VERSION, LOCAL_CONCEPT_FROM, LOCAL_SCHEMA, OMOP_FILE, generate_omop

CDM_54_COLUMNS = {
    "person": ["person_id", "gender_concept_id", "year_of_birth", "month_of_birth",
               "day_of_birth", "birth_datetime", "race_concept_id", "ethnicity_concept_id",
               "location_id", "provider_id", "care_site_id", "person_source_value",
               "gender_source_value", "gender_source_concept_id", "race_source_value",
               "race_source_concept_id", "ethnicity_source_value", "ethnicity_source_concept_id"],
    "visit_occurrence": ["visit_occurrence_id", "person_id", "visit_concept_id",
                         "visit_start_date", "visit_start_datetime", "visit_end_date",
                         "visit_end_datetime", "visit_type_concept_id", "provider_id",
                         "care_site_id", "visit_source_value", "visit_source_concept_id",
                         "admitted_from_concept_id", "admitted_from_source_value",
                         "discharged_to_concept_id", "discharged_to_source_value",
                         "preceding_visit_occurrence_id"],
    "death": ["person_id", "death_date", "death_datetime", "death_type_concept_id",
              "cause_concept_id", "cause_source_value", "cause_source_concept_id"],
}  # fmt: skip


@pytest.fixture(scope="module")
def county(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("omop_county")
    generate_omop(CountyConfig(people=300, seed=8), out)
    return out


def test_the_cdm_tables_have_the_54_columns(county: Path) -> None:
    with duckdb.connect(str(county / OMOP_FILE), read_only=True) as con:
        for table, columns in CDM_54_COLUMNS.items():
            got = [r[0] for r in con.execute(f"DESCRIBE main.{table}").fetchall()]
            assert got == columns, table
        version = con.execute("SELECT cdm_version FROM cdm_source").fetchone()
        assert version == (CDM_VERSION,)


def test_concepts_are_local_except_bmi(county: Path) -> None:
    with duckdb.connect(str(county / OMOP_FILE), read_only=True) as con:
        below = con.execute(
            "SELECT vocabulary_id, concept_code FROM concept WHERE concept_id < ?",
            [LOCAL_CONCEPT_FROM],
        ).fetchall()
        assert below == [("LOINC", "39156-5")]
        orphans = con.execute(
            "SELECT count(*) FROM condition_occurrence c WHERE condition_concept_id <> 0 AND "
            "condition_concept_id NOT IN (SELECT concept_id FROM concept)"
        ).fetchone()
        assert orphans == (0,)


def test_records_no_cdm_table_holds_are_kept_apart(county: Path) -> None:
    with duckdb.connect(str(county / OMOP_FILE), read_only=True) as con:
        local = {r[0] for r in con.execute(
            f"SELECT table_name FROM duckdb_tables() WHERE schema_name = '{LOCAL_SCHEMA}'"
        ).fetchall()}  # fmt: skip
        people = con.execute("SELECT count(*) FROM person").fetchone()
        areas = con.execute(f"SELECT count(*) FROM {LOCAL_SCHEMA}.person_area").fetchone()
    assert local == {"social_care", "fire_home_visit", "ambulance_incident", "person_area"}
    assert people == areas == (300,)
    assert (county / "truth" / "true_risk.parquet").exists()
