"""The OMOP importer on a hand-built CDM of a few people: every mapping rule and every drop
reason, checked row by row, and what it writes loaded by the real `carerisk load`."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from importers.extract import SourceError
from importers.omop import import_omop
from tests.importers.extracts import (
    dropped,
    dropped_count,
    dropped_reasons,
    loaded,
    manifest,
    rows,
    stored_rows,
)

D = date.fromisoformat
PERSON = ["person_id", "gender_concept_id", "year_of_birth", "month_of_birth", "birth_datetime"]
CONCEPT = ["concept_id", "concept_name", "vocabulary_id", "concept_class_id", "concept_code"]
CONDITION = [
    "condition_occurrence_id", "person_id", "condition_concept_id", "condition_start_date",
    "condition_source_value", "condition_source_concept_id", "condition_status_concept_id",
    "visit_occurrence_id",
]  # fmt: skip
VISIT_53 = [
    "visit_occurrence_id", "person_id", "visit_concept_id", "visit_start_date",
    "visit_end_date", "admitting_source_concept_id",
]  # fmt: skip
CDM: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {
    "person": (
        PERSON,
        [
            (1, 8507, 1940, 3, ""),
            (2, 8532, 1945, "", "1945-07-15"),
            (3, 8551, 1947, 1, ""),  # unknown gender
            (4, 8532, "", 1, ""),  # no year
            (5, 8532, 1950, "", ""),  # no month
            (1, 8507, 1940, 3, ""),  # repeated
            ("abc", 8507, 1940, 3, ""),  # not a number
        ],
    ),
    "concept": (
        CONCEPT,
        [
            (100, "Dementia", "SNOMED", "Clinical Finding", "52448006"),
            (101, "Fracture of neck of femur", "SNOMED", "Clinical Finding", "5913000"),
            (102, "BMI", "LOINC", "Clinical Observation", "39156-5"),
            (103, "Glucose", "LOINC", "Lab Test", "2345-7"),
            (104, "Smoker", "SNOMED", "Clinical Finding", "77176002"),
            (105, "Cerebrovascular accident", "SNOMED", "Clinical Finding", "230690007"),
            (200, "sertraline", "RxNorm", "Ingredient", "36437"),
            (201, "sertraline 50 MG Oral Tablet", "RxNorm", "Clinical Drug", "312940"),
            (202, "oxycodone", "RxNorm", "Ingredient", "7804"),
            (203, "acetaminophen", "RxNorm", "Ingredient", "161"),
            (204, "acetaminophen 325 MG / oxycodone 5 MG", "RxNorm", "Clinical Drug", "1049621"),
            (205, "ibuprofen", "RxNorm", "Ingredient", "5640"),
            (206, "Zopiclone", "RxNorm Extension", "Ingredient", "OMOP999"),
            (207, "influenza vaccine", "CVX", "CVX", "140"),
            (300, "Fracture of neck of femur", "ICD10CM", "7-char billing code", "S72.001A"),
        ],
    ),
    "concept_ancestor": (
        ["ancestor_concept_id", "descendant_concept_id"],
        [(200, 200), (200, 201), (202, 202), (203, 203), (202, 204), (203, 204), (205, 205)],
    ),
    "visit_occurrence": (
        VISIT_53,
        [
            (10, 1, 9201, "2020-01-10", "2020-01-15", 8870),  # admitted from the ER
            (11, 1, 9201, "2020-03-01", "2020-03-02", 0),  # an ER visit the same day
            (12, 1, 9203, "2020-03-01", "2020-03-01", 0),
            (13, 2, 9201, "2020-05-01", "2020-05-03", 0),  # elective
            (14, 2, 9202, "2020-05-10", "2020-05-10", 0),  # outpatient
            (15, 3, 9201, "2020-05-10", "2020-05-11", 0),  # person not written
            (16, 1, 9201, "2020-05-10", "2020-05-01", 0),  # ends before it starts
            (17, 1, 9201, "2018-01-01", "2019-06-01", 0),  # over a year
            (18, 2, 9201, "2020-06-01", "2020-06-02", 0),  # no diagnosis
            (19, 1, 9203, "2020-08-01", "2020-08-01", 0),
            (12, 1, 9203, "2020-03-01", "2020-03-01", 0),  # repeated
            (21, 1, 9201, "", "2020-09-01", 0),  # no start
        ],
    ),
    "condition_occurrence": (
        CONDITION,
        [
            (1000, 1, 100, "2019-05-01", "52448006", 0, 0, ""),
            (1001, 1, 0, "2019-06-01", "26929004", 0, 0, ""),  # SNOMED from the source value
            (1002, 1, 0, "2019-06-02", "not-a-code", 0, 0, ""),
            (1003, 9, 100, "2019-06-03", "52448006", 0, 0, ""),
            (1004, 1, 100, "", "52448006", 0, 0, ""),
            (1000, 1, 100, "2019-05-01", "52448006", 0, 0, ""),  # repeated
            (1010, 1, 101, "2020-01-10", "S72.001A", 300, 0, 10),
            (1011, 1, 101, "2020-01-10", "5913000", 0, 0, 10),  # S720 again, by the map
            (1012, 1, 100, "2020-01-10", "52448006", 0, 0, 10),  # F03 by the map
            (1013, 1, 0, "2020-01-10", "K92.2", 0, 32902, 10),  # the primary diagnosis
            (1014, 1, 0, "2020-01-10", "E11.9", 0, 0, 10),
            (1015, 1, 0, "2020-01-10", "I64", 0, 0, 10),
            (1016, 1, 0, "2020-01-10", "J44.9", 0, 0, 10),
            (1017, 1, 0, "2020-01-10", "N18.9", 0, 0, 10),  # a seventh
            (1018, 1, 104, "2020-01-10", "77176002", 0, 0, 10),  # no ICD-10 for it
            (1020, 1, 0, "2020-03-01", "W19X", 0, 0, 11),
            (1030, 2, 105, "2020-05-01", "230690007", 0, 0, 13),
            (1040, 3, 101, "2020-05-10", "S72.0", 0, 0, 15),
            (1041, 1, 0, "2020-05-10", "S72.0", 0, 0, 16),
            (1050, 1, 0, "2020-08-01", "W19", 0, 0, 19),
            (1051, 1, 0, "2020-08-01", "S72.0", 0, 0, 19),
            (1052, 1, 0, "2020-08-01", "S52.5", 0, 0, 19),  # a second diagnosis
            (1055, 1, 0, "2020-03-01", "R55", 0, 0, 12),
            (1060, 2, 100, "2020-05-10", "52448006", 0, 0, 14),  # an outpatient visit
            (1061, 2, 100, "2020-05-11", "52448006", 0, 0, 999),  # a visit not in the CDM
        ],
    ),
    "observation": (
        [
            "observation_id",
            "person_id",
            "observation_concept_id",
            "observation_date",
            "value_as_number",
            "observation_source_value",
        ],
        [
            (2000, 1, 104, "2019-07-01", "", "77176002"),
            (2001, 1, 0, "2019-07-02", "", "86933000"),
            (2002, 1, 103, "2019-07-03", 5.5, "2345-7"),
            (2003, 9, 104, "2019-07-04", "", ""),
            (2004, 1, 104, "", "", ""),
            (2000, 1, 104, "2019-07-01", "", "77176002"),
        ],
    ),  # fmt: skip
    "measurement": (
        [
            "measurement_id",
            "person_id",
            "measurement_concept_id",
            "measurement_date",
            "value_as_number",
            "measurement_source_value",
        ],
        [
            (3000, 1, 102, "2019-08-01", 27.5, ""),
            (3001, 2, 0, "2019-08-02", 31, "39156-5"),  # BMI by its source value
            (3002, 2, 103, "2019-08-03", 5.5, "2345-7"),
        ],
    ),  # fmt: skip
    "drug_exposure": (
        [
            "drug_exposure_id",
            "person_id",
            "drug_concept_id",
            "drug_exposure_start_date",
            "drug_source_value",
        ],
        [
            (4000, 1, 201, "2019-09-01", ""),
            (4001, 1, 204, "2019-09-02", ""),  # oxycodone, a falls-risk class, first
            (4002, 1, 205, "2019-09-03", ""),
            (4003, 1, 207, "2019-09-04", ""),
            (4004, 2, 0, "2019-09-05", "36437"),  # the ingredient code as source value
            (4005, 2, 206, "2019-09-06", ""),  # matched by the ingredient's name
            (4006, 9, 201, "2019-09-07", ""),
            (4007, 1, 201, "", ""),
            (4000, 1, 201, "2019-09-01", ""),
        ],
    ),  # fmt: skip
    "death": (
        ["person_id", "death_date"],
        [(2, "2021-01-01"), (2, "2021-02-01"), (9, "2021-01-01"), (1, "")],
    ),
    "observation_period": (
        ["person_id", "observation_period_start_date", "observation_period_end_date"],
        [(1, "2015-01-01", "2021-06-30"), (2, "2016-01-01", "2021-01-01")],
    ),
    "cdm_source": (["cdm_version", "source_release_date"], [("v5.3.1", "2021-06-30")]),
}


def write_folder(folder: Path, cdm: dict[str, tuple[list[str], list[tuple[Any, ...]]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for table, (header, data) in cdm.items():
        with (folder / f"{table.upper()}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(data)
    return folder


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("omop")
    import_omop(str(write_folder(root / "cdm", CDM)), root / "extract")
    return root / "extract"


def test_person(extract: Path) -> None:
    assert rows(extract, "person", ["person_id", "birth_month", "sex"]) == [
        ("omop-1", D("1940-03-01"), "M"),
        ("omop-2", D("1945-07-01"), "F"),
    ]
    unsupplied = ["ethnicity", "lsoa_code", "imd_decile", "district", "practice_code",
                  "gp_system", "lives_alone", "informal_carer"]  # fmt: skip
    assert set(rows(extract, "person", unsupplied)) == {(None,) * len(unsupplied)}
    assert dropped(extract, "person") == {
        "3": "gender_concept_id is neither 8507 (male) nor 8532 (female)",
        "4": "year_of_birth is missing or not a year",
        "5": "no month of birth (month_of_birth or birth_datetime)",
        "1": "person_id repeats an earlier row",
        "None": "person_id is missing or not a number",
    }


def test_gp_events(extract: Path) -> None:
    assert rows(extract, "gp_event") == [
        ("c1000", "omop-1", D("2019-05-01"), "52448006", None),
        ("c1001", "omop-1", D("2019-06-01"), "26929004", None),
        ("c1060", "omop-2", D("2020-05-10"), "52448006", None),
        ("c1061", "omop-2", D("2020-05-11"), "52448006", None),
        ("m3000", "omop-1", D("2019-08-01"), "60621009", 27.5),
        ("m3001", "omop-2", D("2019-08-02"), "60621009", 31.0),
        ("o2000", "omop-1", D("2019-07-01"), "77176002", None),
        ("o2001", "omop-1", D("2019-07-02"), "86933000", None),
    ]
    assert dropped(extract, "observation") == {
        "2002": "no SNOMED CT code (concept, LOINC map or source value)",
        "2003": "person not among the persons written",
        "2004": "observation_date is missing or not a date",
        "2000": "observation_id repeats an earlier row",
    }
    assert dropped(extract, "measurement") == {
        "3002": "no SNOMED CT code (concept, LOINC map or source value)"
    }


def test_hospital_episodes(extract: Path) -> None:
    assert rows(extract, "hospital_episode") == [
        ("v10", "omop-1", D("2020-01-10"), D("2020-01-15"), "emergency", None,
         "K922", "S720", "F03", "E119", "I64", "J449"),
        ("v11", "omop-1", D("2020-03-01"), D("2020-03-02"), "emergency", None,
         "W19X", None, None, None, None, None),
        ("v13", "omop-2", D("2020-05-01"), D("2020-05-03"), "elective", None,
         "I64", None, None, None, None, None),
    ]  # fmt: skip
    assert rows(extract, "ae_attendance") == [
        ("v12", "omop-1", D("2020-03-01"), "R55", None, None),
        ("v19", "omop-1", D("2020-08-01"), "S720", "W19", None),
    ]
    assert dropped(extract, "visit_occurrence") == {
        "14": "not an inpatient (9201, 262) or ER (9203) visit",
        "15": "person not among the persons written",
        "16": "visit_end_date before visit_start_date",
        "17": "stay of more than 365 days: not a hospital spell",
        "18": "no ICD-10 diagnosis on the spell",
        "12": "visit_occurrence_id repeats an earlier row",
        "21": "visit_start_date is missing or not a date",
    }


def test_condition_drops(extract: Path) -> None:
    assert dropped(extract, "condition_occurrence") == {
        "1002": "no SNOMED CT code (concept or source value)",
        "1003": "person not among the persons written",
        "1004": "condition_start_date is missing or not a date",
        "1000": "condition_occurrence_id repeats an earlier row",
        "1011": "the same ICD-10 code is already on the visit",
        "1017": "beyond the sixth diagnosis of the spell",
        "1018": "no ICD-10 code (source value, source concept or SNOMED CT map)",
        "1040": "person not among the persons written",
        "1041": "its visit was not written",
        "1052": "beyond the attendance's one diagnosis and one external cause",
    }


def test_prescriptions(extract: Path) -> None:
    assert rows(extract, "prescription") == [
        ("d4000", "omop-1", D("2019-09-01"), "0403030Q0", "sertraline"),
        ("d4001", "omop-1", D("2019-09-02"), "040702", "oxycodone"),
        ("d4004", "omop-2", D("2019-09-05"), "0403030Q0", "sertraline"),
        ("d4005", "omop-2", D("2019-09-06"), "0401010Z0", "zopiclone"),
    ]
    assert dropped(extract, "drug_exposure") == {
        "4002": "ingredient not in the RxNorm to BNF map",
        "4003": "no RxNorm ingredient (concept, concept_ancestor or source value)",
        "4006": "person not among the persons written",
        "4007": "drug_exposure_start_date is missing or not a date",
        "4000": "drug_exposure_id repeats an earlier row",
    }


def test_death(extract: Path) -> None:
    assert rows(extract, "death") == [("omop-2", D("2021-01-01"))]
    assert dropped(extract, "death") == {
        "2": "a later death row of the same person",
        "9": "person not among the persons written",
        "1": "death_date is missing or not a date",
    }


def test_manifest_and_coverage(extract: Path) -> None:
    m = manifest(extract)
    assert (m["extract_date"], m["start"], m["kind"]) == ("2021-06-30", "2015-01-01", "full")
    cover = m["coverage"]
    assert cover["source"]["kind"] == "omop" and cover["source"]["version"] == "5.3"
    assert set(cover["maps"]) == {"codelists", "rxnorm_bnf", "snomed_icd10", "loinc_snomed"}
    tables = cover["tables"]
    assert [n for n, t in tables.items() if t["state"] == "absent"] == [
        "ambulance_incident", "social_care", "fire_home_visit"
    ]  # fmt: skip
    assert tables["social_care"]["reason"] == "OMOP CDM holds no adult social care"
    assert tables["hospital_episode"]["not_supplied"] == ["main_specialty"]
    assert tables["ae_attendance"]["not_supplied"] == ["disposal"]
    for name in ("ambulance_incident", "social_care", "fire_home_visit"):
        assert not (extract / f"{name}.parquet").exists()
    expected_read = {t: len(data) for t, (_, data) in CDM.items()}
    for source, counts in cover["sources"].items():
        assert counts["read"] == expected_read[source], source
        assert counts["read"] == counts["written"] + sum(counts["dropped"].values())
        assert sum(counts["dropped"].values()) == dropped_count(extract, source)


def test_the_load_takes_every_row_written(extract: Path, tmp_path: Path) -> None:
    store = loaded(extract, tmp_path)
    assert len(stored_rows(store, "person")) == len(rows(extract, "person")) > 0
    for name in ("ambulance_incident", "social_care", "fire_home_visit"):
        assert stored_rows(store, name) == []


def test_cdm_54_duckdb_with_an_empty_table_stored_as_its_header(tmp_path: Path) -> None:
    """A DuckDB file, 5.4 names (admitted_from_concept_id), a death table holding only its
    header in column0.. columns, no drug_exposure table at all."""
    db = tmp_path / "cdm.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA cdm.cdm")
        con.execute(
            "CREATE TABLE cdm.cdm.person AS SELECT 7 AS person_id, 8532 AS gender_concept_id, "
            "1939 AS year_of_birth, 11 AS month_of_birth"
        )
        con.execute(
            "CREATE TABLE cdm.cdm.visit_occurrence AS SELECT 1 AS visit_occurrence_id, "
            "7 AS person_id, 9201 AS visit_concept_id, DATE '2020-02-01' AS visit_start_date, "
            "DATE '2020-02-03' AS visit_end_date, 8870 AS admitted_from_concept_id"
        )
        con.execute(
            "CREATE TABLE cdm.cdm.condition_occurrence AS SELECT 5 AS condition_occurrence_id, "
            "7 AS person_id, 0 AS condition_concept_id, DATE '2020-02-01' AS "
            "condition_start_date, 'S72.0' AS condition_source_value, 1 AS visit_occurrence_id"
        )
        con.execute(
            "CREATE TABLE cdm.cdm.death AS SELECT 'person_id' AS column0, 'death_date' AS column1"
        )
    m = import_omop(str(db), tmp_path / "out")
    cover = m["coverage"]
    assert cover["source"]["version"] == "5.4"
    assert cover["tables"]["death"]["state"] == "mapped"
    assert cover["sources"]["death"] == {"read": 0, "written": 0, "dropped": {}}
    assert cover["tables"]["prescription"] == {
        "state": "absent",
        "sources": [],
        "reason": "the OMOP source has no drug_exposure table",
    }
    assert not (tmp_path / "out" / "prescription.parquet").exists()
    assert rows(tmp_path / "out", "death") == []
    spells = rows(
        tmp_path / "out", "hospital_episode", ["episode_id", "admission_method", "diag_01"]
    )
    assert spells == [("v1", "emergency", "S720")]
    store = loaded(tmp_path / "out", tmp_path / "home")
    assert stored_rows(store, "prescription") == stored_rows(store, "death") == []


def test_a_missing_required_column_names_table_and_column(tmp_path: Path) -> None:
    header, data = CDM["person"]
    cdm = {
        "person": ([c for c in header if c != "gender_concept_id"], [r[:1] + r[2:] for r in data])
    }
    with pytest.raises(SourceError, match="table person: no column gender_concept_id"):
        import_omop(str(write_folder(tmp_path / "cdm", cdm)), tmp_path / "out")


def test_a_source_without_person_is_refused(tmp_path: Path) -> None:
    cdm = {"death": CDM["death"]}
    with pytest.raises(SourceError, match="no person table"):
        import_omop(str(write_folder(tmp_path / "cdm", cdm)), tmp_path / "out")
    with pytest.raises(SourceError, match="no such file or folder"):
        import_omop(str(tmp_path / "nowhere"), tmp_path / "out")


def test_source_value_ids_an_er_and_inpatient_visit_and_missing_ids(tmp_path: Path) -> None:
    cdm: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {
        "person": (
            ["person_id", "gender_concept_id", "year_of_birth", "month_of_birth",
             "person_source_value"],
            [(1, 8507, 1940, 3, "P000000000a1"), (2, 8532, 1941, 4, ""),
             (3, 8532, 1942, 5, "P000000000a1")],
        ),
        "visit_occurrence": (
            ["visit_occurrence_id", "person_id", "visit_concept_id", "visit_start_date",
             "visit_end_date"],
            [(30, 1, 262, "2020-01-01", "2020-01-04"), ("", 1, 9203, "2020-02-01", "")],
        ),
        "condition_occurrence": (
            ["condition_occurrence_id", "person_id", "condition_concept_id",
             "condition_start_date", "condition_source_value", "visit_occurrence_id"],
            [(1, 1, 0, "2020-01-01", "S72.0", 30), ("", 1, 0, "2020-01-01", "W19", 30)],
        ),
        "measurement": (
            ["measurement_id", "person_id", "measurement_concept_id", "measurement_date"],
            [("", 1, 0, "2020-01-01")],
        ),
        "drug_exposure": (
            ["drug_exposure_id", "person_id", "drug_concept_id", "drug_exposure_start_date"],
            [("", 1, 0, "2020-01-01")],
        ),
    }  # fmt: skip
    out = tmp_path / "out"
    import_omop(str(write_folder(tmp_path / "cdm", cdm)), out, person_ids="person_source_value")
    assert rows(out, "person", ["person_id"]) == [("P000000000a1",)]
    assert sorted(dropped_reasons(out, "person")) == [
        "person_source_value is empty",
        "person_source_value repeats an earlier person",
    ]
    spells = rows(out, "hospital_episode", ["episode_id", "person_id", "admission_method",
                                            "diag_01"])  # fmt: skip
    assert spells == [("v30", "P000000000a1", "emergency", "S720")]
    assert dropped_reasons(out, "visit_occurrence") == [
        "visit_occurrence_id is missing or not a number"
    ]
    for source in ("condition_occurrence", "measurement", "drug_exposure"):
        column = "drug_exposure_id" if source == "drug_exposure" else f"{source}_id"
        assert dropped_reasons(out, source) == [f"{column} is missing or not a number"]
    loaded(out, tmp_path / "home")
