"""A county written with `synth --format omop` and imported back gives the tables and the
features of the same county loaded directly, for everything OMOP holds."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from features import contract
from features.registry import FEATURES
from features.store_sql import literal
from importers.omop import COVERAGE, import_omop
from synthetic.config import CountyConfig
from synthetic.generate import generate
from synthetic.omop import LOCAL_SCHEMA, OMOP_FILE, generate_omop
from tests.importers.extracts import features_of, manifest

CONFIG = CountyConfig(people=2_000, seed=3)
MAPPED = frozenset(COVERAGE)
# features reading person or spell columns OMOP does not carry (ethnicity, household, area,
# specialty): the importer leaves those columns empty
UNCARRIED = frozenset(
    {"ethnic_group", "ethnicity_recorded", "imd_decile", "lives_alone", "informal_carer",
     "mental_health_admissions_730d"}
)  # fmt: skip
ID_COLUMNS = frozenset({"event_id", "prescription_id", "episode_id", "attendance_id"})


@pytest.fixture(scope="module")
def counties(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("round_trip")
    generate(CONFIG, root / "direct")
    generate_omop(CONFIG, root / "omop")
    import_omop(str(root / "omop" / OMOP_FILE), root / "back", person_ids="person_source_value")
    return root / "direct", root / "back"


def _compared_columns(spec: contract.Table, back: Path) -> list[str]:
    cover = manifest(back)["coverage"]["tables"][spec.name]
    skip = set(cover["not_supplied"]) | ID_COLUMNS
    if spec.name == "person":
        skip |= {"ethnicity", "lives_alone", "informal_carer"}
    return [c for c in spec.column_names if c not in skip]


@pytest.mark.parametrize("table", sorted(MAPPED))
def test_the_tables_come_back(counties: tuple[Path, Path], table: str) -> None:
    direct, back = counties
    cols = ", ".join(_compared_columns(contract.table(table), back))
    a = f"SELECT {cols} FROM read_parquet({literal(direct / f'{table}.parquet')})"
    b = f"SELECT {cols} FROM read_parquet({literal(back / f'{table}.parquet')})"
    with duckdb.connect() as con:
        assert (
            con.execute(f"SELECT count(*) FROM ({a})").fetchone()
            == con.execute(f"SELECT count(*) FROM ({b})").fetchone()
        )
        assert con.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchone() == (0,)
        assert con.execute(f"SELECT count(*) FROM ({b} EXCEPT ALL {a})").fetchone() == (0,)


def test_nothing_is_dropped_and_the_window_is_the_county(counties: tuple[Path, Path]) -> None:
    direct, back = counties
    m = manifest(back)
    for source, counts in m["coverage"]["sources"].items():
        assert counts["dropped"] == {}, source
    county = manifest(direct)
    assert (m["start"], m["extract_date"]) == (county["start"], county["extract_date"])


def test_the_local_schema_keeps_what_no_cdm_table_holds(counties: tuple[Path, Path]) -> None:
    direct, back = counties
    database = back.parent / "omop" / OMOP_FILE
    with duckdb.connect(str(database), read_only=True) as con:
        for name in ("social_care", "fire_home_visit", "ambulance_incident"):
            local = con.execute(f"SELECT count(*) FROM {LOCAL_SCHEMA}.{name}").fetchone()
            path = literal(direct / f"{name}.parquet")
            assert local == con.execute(f"SELECT count(*) FROM read_parquet({path})").fetchone()
        main = "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
        cdm = {r[0] for r in con.execute(main).fetchall()}
    assert not cdm & {"social_care", "fire_home_visit", "ambulance_incident"}
    assert (back.parent / "omop" / "truth" / "true_risk.parquet").exists()


def test_the_features_come_back(counties: tuple[Path, Path], tmp_path: Path) -> None:
    direct, back = counties
    day = date(2024, 4, 1)
    expected = features_of(direct, tmp_path / "direct.duckdb", day)
    got = features_of(back, tmp_path / "back.duckdb", day)
    held = [f.name for f in FEATURES if set(f.sources) <= MAPPED and f.name not in UNCARRIED]
    assert len(held) > 40
    pd.testing.assert_frame_equal(
        got[["person_id", *held]].reset_index(drop=True),
        expected[["person_id", *held]].reset_index(drop=True),
    )
