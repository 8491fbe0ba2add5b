"""A county written with `synth --format omop`, imported back and loaded by the real `carerisk
load`, gives the tables and the features of the same county loaded directly, for everything
OMOP holds; the features from what OMOP lacks (social care, fire visits, ambulance call-outs,
the area fields) are missing."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from features import contract
from features.feature_list import FEATURES
from features.store_sql import literal
from importers.omop import COVERAGE, import_omop
from synthetic.config import CountyConfig
from synthetic.generate import generate
from synthetic.omop import LOCAL_SCHEMA, OMOP_FILE, generate_omop
from tests.importers.extracts import (
    assert_missing_for_everyone,
    features_of,
    load,
    loaded,
    manifest,
    missing_features,
)

CONFIG = CountyConfig(people=2_000, seed=3)
MAPPED = frozenset(COVERAGE)
# features reading person columns OMOP carries no concept for (ethnicity as the county codes
# it, household): the importer leaves those columns empty, which the contract reads as unknown
UNCARRIED = frozenset({"ethnic_group", "ethnicity_recorded", "lives_alone", "informal_carer"})
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


@pytest.fixture(scope="module")
def stores(
    counties: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """The county loaded directly, and loaded from what the importer wrote (reconciled)."""
    direct, back = counties
    home = tmp_path_factory.mktemp("round_trip_homes")
    report = load(direct, home / "direct")
    assert report["ok"] and report["clean"]
    return home / "direct" / "store.duckdb", loaded(back, home / "back")


@pytest.fixture(scope="module")
def frames(stores: tuple[Path, Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    direct, back = stores
    day = date(2024, 4, 1)
    return features_of(direct, day), features_of(back, day)


def test_the_features_come_back(
    stores: tuple[Path, Path], frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    expected, got = frames
    gone = set(missing_features(stores[1]))
    held = [
        f.name for f in FEATURES
        if set(f.sources) <= MAPPED and f.name not in UNCARRIED | gone
    ]  # fmt: skip
    assert len(held) > 40
    pd.testing.assert_frame_equal(
        got[["person_id", *held]].reset_index(drop=True),
        expected[["person_id", *held]].reset_index(drop=True),
    )


def test_what_omop_lacks_is_missing(
    stores: tuple[Path, Path], frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """Features from social care, fire visits, ambulance call-outs and the area fields are
    missing for everyone after the round trip, though the direct load holds them."""
    expected, got = frames
    gone = assert_missing_for_everyone(got, stores[1])
    lacking = {"social_care", "fire_home_visit", "ambulance_incident"}
    by_name = {f.name: f for f in FEATURES}
    from_absent = [f.name for f in FEATURES if f.sources and set(f.sources) <= lacking]
    assert from_absent and set(from_absent) <= set(gone)
    assert "imd_decile" in gone and "mental_health_admissions_730d" in gone
    for name in gone:
        assert expected[name].notna().any(), name
        assert set(by_name[name].sources) <= lacking or by_name[name].reads, name
