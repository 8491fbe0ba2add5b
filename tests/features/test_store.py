"""The store: loading, quarantine reasons, idempotent reloads, contract errors, the CLI."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from carerisk.cli import app
from features import contract
from features.home import Home
from features.store import (
    ContractError,
    LoadReport,
    connect,
    load_extract,
    resolve_extract_date,
    validate_extract,
)
from tests.features.conftest import EXTRACT_DATE, small_extract, write_extract

Tables = dict[str, pd.DataFrame]


def _text(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else repr(value)


def plant(tables: Tables, table: str, changes: dict[str, Any], base: int = 0) -> int:
    """Append a copy of row `base` of `table` with `changes`; returns its row number."""
    frame = tables[table]
    row = frame.iloc[base].to_dict()
    row.update(changes)
    for col, value in changes.items():
        if (
            isinstance(value, str)
            and frame[col].dtype.kind in "fiMb"
            or (isinstance(value, str) and str(frame[col].dtype) in ("boolean", "Int64", "Float64"))
        ):
            frame[col] = frame[col].map(_text).astype(object)
    for col in frame.columns:
        if frame[col].dtype == object:
            row[col] = _text(row[col])
    new = pd.DataFrame([row], columns=frame.columns)
    for col in frame.columns:
        if frame[col].dtype != object:
            new[col] = new[col].astype(frame[col].dtype)
    tables[table] = pd.concat([frame, new], ignore_index=True)
    return len(frame)


# (name, table, changes, base row, column, reason)
BAD_ROWS: list[tuple[str, str, dict[str, Any], int, str, str]] = [
    (
        "missing_person",
        "gp_event",
        {"event_id": "G90", "person_id": None},
        0,
        "person_id",
        "missing_value",
    ),
    (
        "missing_date",
        "prescription",
        {"prescription_id": "R90", "issue_date": None},
        0,
        "issue_date",
        "missing_value",
    ),
    ("text_in_float", "gp_event", {"event_id": "G91", "value": "n/a"}, 1, "value", "wrong_type"),
    (
        "text_in_int",
        "person",
        {"person_id": "P00091", "imd_decile": "high"},
        0,
        "imd_decile",
        "wrong_type",
    ),
    (
        "text_in_date",
        "ae_attendance",
        {"attendance_id": "A90", "arrival_date": "yesterday"},
        0,
        "arrival_date",
        "wrong_type",
    ),
    (
        "text_in_bool",
        "fire_home_visit",
        {"visit_id": "F90", "smoker": "maybe"},
        0,
        "smoker",
        "wrong_type",
    ),
    (
        "snomed_check_digit",
        "gp_event",
        {"event_id": "G92", "snomed_code": "1912003"},
        0,
        "snomed_code",
        "invalid_code",
    ),
    ("not_allowed", "person", {"person_id": "P00092", "sex": "X"}, 0, "sex", "invalid_code"),
    (
        "icd10_pattern",
        "hospital_episode",
        {"episode_id": "H90", "diag_02": "W19.X"},
        0,
        "diag_02",
        "invalid_code",
    ),
    ("bad_person_id", "person", {"person_id": "P 1"}, 0, "person_id", "invalid_code"),
    (
        "imd_range",
        "person",
        {"person_id": "P00093", "imd_decile": 11},
        0,
        "imd_decile",
        "out_of_range",
    ),
    (
        "hours_range",
        "social_care",
        {"service_id": "C90", "hours_per_week": 200.0},
        0,
        "hours_per_week",
        "out_of_range",
    ),
    ("exact_copy", "prescription", {}, 1, "prescription_id", "duplicate_row"),
    ("same_key", "ambulance_incident", {"category": "stroke"}, 0, "incident_id", "duplicate_key"),
    (
        "stranger",
        "fire_home_visit",
        {"visit_id": "F91", "person_id": "P99999"},
        0,
        "person_id",
        "unknown_person",
    ),
    (
        "after_death",
        "ae_attendance",
        {"attendance_id": "A91", "person_id": "P00005", "arrival_date": pd.Timestamp("2024-04-01")},
        0,
        "arrival_date",
        "after_death",
    ),
    (
        "future",
        "social_care",
        {"service_id": "C91", "start_date": pd.Timestamp("2024-07-15"), "end_date": None},
        0,
        "start_date",
        "future_date",
    ),
    (
        "discharge_first",
        "hospital_episode",
        {"episode_id": "H91", "discharge_date": pd.Timestamp("2023-05-01")},
        0,
        "discharge_date",
        "date_order",
    ),
    ("nhs_number", "person", {"person_id": "9434765919"}, 0, "person_id", "nhs_number"),
    (
        "mid_month_birth",
        "person",
        {"person_id": "P00094", "birth_month": pd.Timestamp("1940-01-15")},
        0,
        "birth_month",
        "not_first_of_month",
    ),
    (
        "event_before_birth",
        "gp_event",
        {"event_id": "G93", "event_date": pd.Timestamp("1939-12-31")},
        0,
        "event_date",
        "before_birth",
    ),
    (
        "death_before_birth",
        "death",
        {"person_id": "P00004", "date_of_death": pd.Timestamp("1980-11-30")},
        0,
        "date_of_death",
        "before_birth",
    ),
]
CASE_IDS = [c[0] for c in BAD_ROWS]


def quarantine(store: Path) -> set[tuple[str, int, str, str]]:
    with connect(store) as con:
        rows = con.execute(
            "SELECT table_name, row_number, column_name, reason FROM quarantine"
        ).fetchall()
    return {(t, int(r), c, why) for t, r, c, why in rows}


def assert_balanced(report: LoadReport) -> None:
    assert report.ok
    for t in report.tables:
        counted = t.rows_loaded + t.rows_updated + t.rows_unchanged + t.rows_quarantined
        assert t.rows_read == counted, t


def row_counts(store: Path) -> dict[str, int]:
    with connect(store) as con:
        return {
            n: int(con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0])  # type: ignore[index]
            for n in contract.TABLE_NAMES
        }


# --- clean extracts -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_clean_extract_loads_fully(tmp_path: Path, clean_tables: Tables, fmt: str) -> None:
    folder = write_extract(tmp_path / "x", clean_tables, fmt)
    store = Home(tmp_path).store_path
    report = load_extract(folder, store)
    assert_balanced(report)
    assert report.clean and report.load_id == 1
    assert report.extract_date == EXTRACT_DATE  # from manifest.json
    expected = {n: len(f) for n, f in clean_tables.items()}
    assert {t.table: t.rows_loaded for t in report.tables} == expected
    assert row_counts(store) == expected
    with connect(store) as con:
        gp = con.execute("SELECT * FROM gp_event ORDER BY event_id").df()
        person = con.execute("SELECT * FROM person ORDER BY person_id").df()
        log = con.execute("SELECT count(*), min(load_id) FROM load_log").fetchone()
    assert gp["value"].tolist()[1] == 27.5 and gp["value"].isna().sum() == 3
    assert person["lives_alone"].tolist()[:2] == [True, False]
    assert pd.isna(person["ethnicity"][1]) and person["imd_decile"].tolist() == [1, 5, 10, 3, 7]
    assert str(person["birth_month"][0])[:10] == "1940-01-01"
    assert log == (9, 1)


def test_store_has_contract_columns_and_types_and_declares_no_key(
    tmp_path: Path, make_extract: Any
) -> None:
    store = tmp_path / "s.duckdb"
    load_extract(make_extract(), store)
    with connect(store) as con:
        for spec in contract.TABLES:
            described = con.execute(f'DESCRIBE "{spec.name}"').fetchall()
            assert [(r[0], r[1]) for r in described] == [
                (c.name, contract.DUCKDB_TYPES[c.kind]) for c in spec.columns
            ]
            assert {r[3] for r in described} == {None}, spec.name  # no PRI, no UNI
        constraints = con.execute(
            "SELECT table_name, constraint_type FROM duckdb_constraints() "
            "WHERE constraint_type IN ('PRIMARY KEY', 'UNIQUE')"
        ).fetchall()
        indexes = con.execute("SELECT table_name, index_name FROM duckdb_indexes()").fetchall()
    assert constraints == [] and indexes == []


# --- keys unique without a declared key: the loader's work, shown by behaviour -------------


def duplicate_keys(store: Path) -> dict[str, int]:
    """Keys held by more than one row, per contract table (an independent count)."""
    found = {}
    with connect(store) as con:
        for spec in contract.TABLES:
            keys = ", ".join(f'"{k}"' for k in spec.key)
            row = con.execute(
                f'SELECT count(*) FROM (SELECT {keys} FROM "{spec.name}" '
                "GROUP BY ALL HAVING count(*) > 1)"
            ).fetchone()
            found[spec.name] = int(row[0]) if row else -1
    return found


def assert_keys_unique(store: Path) -> None:
    from features.store_check import check_store

    assert duplicate_keys(store) == dict.fromkeys(contract.TABLE_NAMES, 0)
    result = check_store(store)
    assert result.ok, [c for c in result.checks if not c.ok]


def increment(tables: Tables) -> Tables:
    """A later increment: one person changed, a new event, and two rows repeating keys (one
    with other content, one identical), which the loader quarantines."""
    later = {name: frame.iloc[:0] for name, frame in tables.items()}
    person = tables["person"].iloc[[0]].copy()
    person["imd_decile"] = pd.array([2], dtype="Int64")
    later["person"] = person
    gp = tables["gp_event"]
    later["gp_event"] = pd.concat([gp.iloc[[0, 0, 1]], gp.iloc[[1]]], ignore_index=True)
    later["gp_event"].loc[0, "event_id"] = "G50"
    later["gp_event"].loc[3, "value"] = 31.0  # G2 again, with other content
    later["gp_event"] = pd.concat([later["gp_event"], gp.iloc[[1]]], ignore_index=True)
    return later


def retiring(tables: Tables) -> Tables:
    """A full extract that lacks a person (taking their records) and a prescription."""
    out = {name: frame.copy() for name, frame in tables.items()}
    for name, frame in out.items():
        out[name] = frame[frame["person_id"] != "P00004"].reset_index(drop=True)
    out["prescription"] = out["prescription"][out["prescription"]["prescription_id"] != "R1"]
    return out


@pytest.mark.slow  # a long run of loads into one store
def test_keys_stay_unique_through_loads_increments_reloads_retirements_and_refresh(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    store = home / "store.duckdb"
    tables = small_extract()
    first = write_extract(tmp_path / "a", tables)
    load_extract(first, store)
    assert_keys_unique(store)
    report = load_extract(write_extract(tmp_path / "b", increment(tables), kind="increment"), store)
    assert report.table("gp_event").rows_quarantined == 2 and report.table("person").rows_updated
    assert_keys_unique(store)
    again = load_extract(first, store, kind="full")  # the first extract again: G50 retired
    assert again.table("gp_event").rows_retired == 1
    assert_keys_unique(store)
    load_extract(first, store, kind="full")  # reloaded unchanged
    assert_keys_unique(store)
    gone = load_extract(write_extract(tmp_path / "c", retiring(tables)), store)
    assert gone.table("person").rows_retired == 1 and gone.table("prescription").rows_retired
    assert_keys_unique(store)
    result = CliRunner().invoke(
        app, ["--home", str(home), "refresh", str(first), "--full", "--no-log", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"][0]["totals"]["rows_loaded"] > 0
    assert_keys_unique(store)
    assert row_counts(store) == {n: len(f) for n, f in small_extract().items()}


def old_keyed_store(path: Path) -> Path:
    """A store as earlier versions made it: every contract table with a PRIMARY KEY."""
    from features.store import create_history_sql

    with duckdb.connect(str(path)) as con:
        for spec in contract.TABLES:
            cols = ", ".join(f'"{c.name}" {contract.DUCKDB_TYPES[c.kind]}' for c in spec.columns)
            keys = ", ".join(f'"{k}"' for k in spec.key)
            con.execute(f'CREATE TABLE "{spec.name}" ({cols}, PRIMARY KEY ({keys}))')
            con.execute(create_history_sql(spec))
    return path


def test_a_store_with_the_old_declared_keys_opens_and_loads(tmp_path: Path) -> None:
    store = old_keyed_store(tmp_path / "s.duckdb")
    tables = small_extract()
    first = load_extract(write_extract(tmp_path / "a", tables), store)
    assert_balanced(first)
    later = load_extract(write_extract(tmp_path / "b", increment(tables), kind="increment"), store)
    assert_balanced(later)
    gone = load_extract(write_extract(tmp_path / "c", retiring(tables)), store)
    assert_balanced(gone)
    assert_keys_unique(store)
    with connect(store) as con:
        keyed = con.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
        ).fetchone()
    assert keyed == (len(contract.TABLES),)  # its constraints stay; it loads as before
    assert row_counts(store)["person"] == len(tables["person"]) - 1


# --- every reason code on a planted row --------------------------------------------------


def plant_all(tables: Tables) -> set[tuple[str, int, str, str]]:
    """Plant every bad row of BAD_ROWS; returns the quarantine entries expected."""
    expected = set()
    for _, table, changes, base, column, reason in BAD_ROWS:
        expected.add((table, plant(tables, table, changes, base), column, reason))
    return expected


@pytest.mark.parametrize("case", BAD_ROWS, ids=CASE_IDS)
def test_each_reason_quarantines_the_planted_row(
    tmp_path: Path, case: tuple[str, str, dict[str, Any], int, str, str]
) -> None:
    _, table, changes, base, column, reason = case
    tables = small_extract()
    row = plant(tables, table, changes, base)
    store = Home(tmp_path).store_path
    report = load_extract(write_extract(tmp_path / "x", tables), store)
    assert_balanced(report)
    assert quarantine(store) == {(table, row, column, reason)}
    assert report.reasons() == {reason: 1}
    for t in report.tables:
        assert t.rows_quarantined == (1 if t.table == table else 0)
        assert t.rows_loaded == len(tables[t.table]) - t.rows_quarantined
    with connect(store) as con:
        value, raw = con.execute("SELECT value, raw_row FROM quarantine").fetchone()  # type: ignore[misc]
    assert json.loads(raw)[column] == (None if value is None else json.loads(raw)[column])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_every_bad_row_at_once(tmp_path: Path, fmt: str) -> None:
    tables = small_extract()
    expected = plant_all(tables)
    store = Home(tmp_path).store_path
    report = load_extract(write_extract(tmp_path / "x", tables, fmt), store)
    assert quarantine(store) == expected
    assert_balanced(report)
    assert report.totals()["rows_quarantined"] == len(BAD_ROWS)
    assert row_counts(store) == {n: len(f) for n, f in small_extract().items()}


def test_quarantine_keeps_value_detail_and_raw_row(tmp_path: Path) -> None:
    tables = small_extract()
    plant(tables, "gp_event", {"event_id": "G91", "value": "n/a"}, 1)
    store = tmp_path / "s.duckdb"
    load_extract(write_extract(tmp_path / "x", tables), store)
    with connect(store) as con:
        row = con.execute(
            "SELECT load_id, source_file, value, detail, raw_row FROM quarantine"
        ).fetchone()
    assert row is not None
    load_id, source, value, detail, raw = row
    assert load_id == 1 and source.endswith("gp_event.parquet")
    assert value == "n/a" and detail == "not a number"
    raw_row = json.loads(raw)
    assert raw_row.pop("event_date").startswith("2023-05-02")  # as in the file: a timestamp
    assert raw_row == {
        "event_id": "G91",
        "person_id": "P00001",
        "snomed_code": "60621009",
        "value": "n/a",
    }


def test_one_row_with_several_problems_counts_once(tmp_path: Path) -> None:
    tables = small_extract()
    row = plant(
        tables,
        "gp_event",
        {"event_id": "G99", "snomed_code": "123", "value": 5000.0, "person_id": "P77777"},
    )
    store = tmp_path / "s.duckdb"
    report = load_extract(write_extract(tmp_path / "x", tables), store)
    assert quarantine(store) == {
        ("gp_event", row, "snomed_code", "invalid_code"),
        ("gp_event", row, "value", "out_of_range"),
        ("gp_event", row, "person_id", "unknown_person"),
    }
    gp = report.table("gp_event")
    assert gp.rows_quarantined == 1 and gp.rows_loaded == 4
    assert sum(gp.reasons.values()) == 3
    assert_balanced(report)


def test_events_of_a_quarantined_person_are_unknown(tmp_path: Path) -> None:
    tables = small_extract()
    tables["person"].loc[1, "sex"] = "U"  # P00002 fails, so do their events
    store = tmp_path / "s.duckdb"
    report = load_extract(write_extract(tmp_path / "x", tables), store)
    found = quarantine(store)
    assert ("person", 1, "sex", "invalid_code") in found
    assert ("gp_event", 2, "person_id", "unknown_person") in found
    assert ("ambulance_incident", 1, "person_id", "unknown_person") in found
    assert report.totals()["rows_quarantined"] == 3
    assert_balanced(report)


def test_text_in_a_numeric_parquet_column(tmp_path: Path) -> None:
    tables = small_extract()
    tables["gp_event"]["value"] = pd.Series(["n/a", "27.5", None, " 3 "], dtype=object)
    folder = write_extract(tmp_path / "x", tables)
    assert pd.read_parquet(folder / "gp_event.parquet")["value"].dtype != "float64"
    store = tmp_path / "s.duckdb"
    report = load_extract(folder, store)
    assert quarantine(store) == {("gp_event", 0, "value", "wrong_type")}
    with connect(store) as con:
        values = con.execute("SELECT event_id, value FROM gp_event ORDER BY 1").fetchall()
    assert values == [("G2", 27.5), ("G3", None), ("G4", 3.0)]
    assert_balanced(report)


# --- reloads --------------------------------------------------------------------------------


def test_reload_is_idempotent(tmp_path: Path) -> None:
    tables = small_extract()
    plant(tables, "gp_event", {"event_id": "G91", "value": "n/a"}, 1)
    folder = write_extract(tmp_path / "x", tables)
    store = tmp_path / "s.duckdb"
    first = load_extract(folder, store)
    second = load_extract(folder, store)
    assert_balanced(second)
    assert second.load_id == 2
    assert second.totals()["rows_loaded"] == 0
    assert second.totals()["rows_unchanged"] == first.totals()["rows_loaded"]
    assert second.totals()["rows_quarantined"] == 1
    with connect(store) as con:
        q = con.execute("SELECT load_id FROM quarantine").fetchall()
        logs = con.execute("SELECT count(DISTINCT load_id), count(*) FROM load_log").fetchone()
    assert q == [(2,)]  # replaced, not duplicated
    assert logs == (2, 18)
    assert row_counts(store) == {n: len(f) for n, f in small_extract().items()}


def test_a_store_from_before_row_identities_is_upgraded(tmp_path: Path) -> None:
    """Quarantine entries written before rows were known by content have no identity: the
    columns are added, and such entries are still replaced when their file is loaded again."""
    tables = small_extract()
    plant(tables, "gp_event", {"event_id": "G91", "value": "n/a"}, 1)
    folder = write_extract(tmp_path / "x", tables)
    store = tmp_path / "s.duckdb"
    load_extract(folder, store)
    with duckdb.connect(str(store)) as con:
        con.execute("ALTER TABLE quarantine DROP COLUMN row_key")
        con.execute("ALTER TABLE quarantine DROP COLUMN row_sha256")
    second = load_extract(folder, store)
    assert_balanced(second)
    with connect(store) as con:
        rows = con.execute("SELECT load_id, row_key, length(row_sha256) FROM quarantine").fetchall()
    assert rows == [(2, "G91", 64)]


def test_changed_rows_are_updated_and_new_rows_added(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    load_extract(write_extract(tmp_path / "a", small_extract()), store)
    tables = small_extract()
    tables["person"].loc[0, "imd_decile"] = 9
    plant(tables, "gp_event", {"event_id": "G50"})
    report = load_extract(write_extract(tmp_path / "b", tables), store)
    person, gp = report.table("person"), report.table("gp_event")
    assert (person.rows_loaded, person.rows_updated, person.rows_unchanged) == (0, 1, 4)
    assert (gp.rows_loaded, gp.rows_updated, gp.rows_unchanged) == (1, 0, 4)
    assert_balanced(report)
    with connect(store) as con:
        imd = con.execute("SELECT imd_decile FROM person WHERE person_id = 'P00001'").fetchone()
    assert imd == (9,)
    assert row_counts(store)["gp_event"] == 5


def test_store_people_count_as_known(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    load_extract(write_extract(tmp_path / "a", small_extract()), store)
    tables = small_extract()
    tables["person"] = tables["person"].iloc[:1]  # later increment: only P00001
    tables["death"] = tables["death"].iloc[:0]
    report = load_extract(write_extract(tmp_path / "b", tables, kind="increment"), store)
    assert report.totals()["rows_quarantined"] == 0  # the others are in the store
    assert_balanced(report)


# --- contract errors: nothing written -----------------------------------------------------


def _fails(folder: Path, store: Path, *names: str) -> None:
    with pytest.raises(ContractError) as err:
        load_extract(folder, store)
    for name in names:
        assert name in str(err.value)
    assert not store.exists()


def test_missing_table_file(tmp_path: Path, make_extract: Any) -> None:
    folder = make_extract()
    (folder / "social_care.parquet").unlink()
    _fails(folder, tmp_path / "s.duckdb", "social_care")


def test_missing_column(tmp_path: Path) -> None:
    tables = small_extract()
    tables["prescription"] = tables["prescription"].drop(columns=["bnf_code"])
    _fails(
        write_extract(tmp_path / "x", tables, "csv"),
        tmp_path / "s.duckdb",
        "prescription",
        "bnf_code",
    )


def test_extra_column(tmp_path: Path) -> None:
    tables = small_extract()
    tables["death"]["cause"] = "old age"
    _fails(write_extract(tmp_path / "x", tables), tmp_path / "s.duckdb", "death", "cause")


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_unreadable_file(tmp_path: Path, make_extract: Any, fmt: str) -> None:
    folder = make_extract(fmt=fmt)
    path = folder / f"hospital_episode.{fmt}"
    path.write_bytes(b"PAR1\x00garbage" if fmt == "parquet" else b"\xff\xfe\x00bad,\n\x00")
    _fails(folder, tmp_path / "s.duckdb", "hospital_episode")


def test_ragged_csv_row_is_quarantined_and_the_rest_loads(
    tmp_path: Path, make_extract: Any
) -> None:
    folder = make_extract(fmt="csv")
    with (folder / "ae_attendance.csv").open("a") as f:
        f.write("A9,P00001,2023-01-01,,,admitted,extra,fields\n")
        f.write("A10,P00001,2023-01-02,,,admitted\n")
    store = tmp_path / "s.duckdb"
    report = load_extract(folder, store)
    assert quarantine(store) == {("ae_attendance", 2, None, "malformed_row")}
    ae = report.table("ae_attendance")
    assert (ae.rows_read, ae.rows_loaded, ae.rows_quarantined) == (4, 3, 1)
    assert_balanced(report)
    with connect(store) as con:
        detail, raw = con.execute("SELECT detail, raw_row FROM quarantine").fetchone()  # type: ignore[misc]
        loaded = con.execute("SELECT attendance_id FROM ae_attendance ORDER BY 1").fetchall()
    assert detail == "line 4: 8 fields where the header has 6"
    assert json.loads(raw) == "A9,P00001,2023-01-01,,,admitted,extra,fields"
    assert loaded == [("A1",), ("A10",), ("A2",)]


def test_a_stray_quote_or_bytes_not_utf8_quarantine_one_row(
    tmp_path: Path, make_extract: Any
) -> None:
    folder = make_extract(fmt="csv")
    with (folder / "ae_attendance.csv").open("ab") as f:
        f.write(b'A9,"P00001"x,2023-01-01,,,admitted\n')
        f.write(b"A10,P\xff\xfe0001,2023-01-02,,,admitted\n")
        f.write(b"A11,P00001,2023-01-03,,,admitted\n")
    store = tmp_path / "s.duckdb"
    report = load_extract(folder, store)
    assert quarantine(store) == {
        ("ae_attendance", 2, None, "malformed_row"),
        ("ae_attendance", 3, None, "malformed_row"),
    }
    assert report.table("ae_attendance").rows_loaded == 3
    with connect(store) as con:
        details = con.execute("SELECT detail FROM quarantine ORDER BY row_number").fetchall()
    assert details[0] == ("line 4: a quote that does not enclose a whole value",)
    assert details[1] == ("line 5: not UTF-8 text",)


def test_unclosed_quote_stops_the_load_naming_the_line(tmp_path: Path, make_extract: Any) -> None:
    folder = make_extract(fmt="csv")
    with (folder / "ae_attendance.csv").open("a") as f:
        f.write('A9,"P00001,2023-01-01,,,admitted\nA10,P00001,2023-01-02,,,admitted\n')
    _fails(folder, tmp_path / "s.duckdb", "ae_attendance", "line 4")


def test_error_on_second_load_leaves_store_as_it_was(tmp_path: Path, make_extract: Any) -> None:
    store = tmp_path / "s.duckdb"
    load_extract(make_extract(), store)
    folder = make_extract(name="later")
    (folder / "person.parquet").unlink()
    with pytest.raises(ContractError, match="person"):
        load_extract(folder, store)
    with connect(store) as con:
        assert con.execute("SELECT count(*) FROM load_log").fetchone() == (9,)


# --- extract date, validate ---------------------------------------------------------------


def test_extract_date_argument_manifest_then_today(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x", small_extract(), manifest=False)
    assert resolve_extract_date(folder, None) == date.today()
    assert resolve_extract_date(folder, date(2020, 1, 1)) == date(2020, 1, 1)
    (folder / "manifest.json").write_text('{"extract_date": "2023-02-01"}')
    assert resolve_extract_date(folder, None) == date(2023, 2, 1)
    report = validate_extract(folder)  # early extract date: later events are in the future
    assert report.extract_date == date(2023, 2, 1)
    assert report.reasons()["future_date"] > 0


def test_validate_writes_nothing(tmp_path: Path) -> None:
    tables = small_extract()
    plant(tables, "gp_event", {"event_id": "G92", "snomed_code": "1912003"})
    folder = write_extract(tmp_path / "x", tables)
    before = sorted(p.name for p in folder.iterdir())
    report = validate_extract(folder)
    assert report.store_path is None and report.load_id == 1
    assert report.reasons() == {"invalid_code": 1}
    assert_balanced(report)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert not list(tmp_path.glob("*.duckdb"))


# --- property: any subset of planted bad rows ---------------------------------------------


@pytest.mark.slow  # many stores loaded, a property test
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chosen=st.sets(st.sampled_from(range(len(BAD_ROWS))), max_size=6))
def test_any_subset_of_bad_rows_is_quarantined_exactly(tmp_path: Path, chosen: set[int]) -> None:
    tables = small_extract()
    expected = set()
    for i in sorted(chosen):
        name, table, changes, base, column, reason = BAD_ROWS[i]
        if reason == "duplicate_row" or reason == "duplicate_key":
            changes = dict(changes)  # a copy of an untouched row
        row = plant(tables, table, changes, base)
        expected.add((table, row, column, reason))
    folder = write_extract(tmp_path / f"x{len(list(tmp_path.iterdir()))}", tables)
    store = folder.parent / f"{folder.name}.duckdb"
    report = load_extract(folder, store)
    assert quarantine(store) == expected
    assert_balanced(report)
    assert report.totals()["rows_loaded"] == sum(len(f) for f in small_extract().values())


# --- CLI ------------------------------------------------------------------------------------


def test_cli_load_and_validate_print_json(tmp_path: Path) -> None:
    tables = small_extract()
    plant(tables, "gp_event", {"event_id": "G91", "value": "n/a"}, 1)
    folder = write_extract(tmp_path / "x", tables, "csv")
    home = tmp_path / "home"
    runner = CliRunner()
    result = runner.invoke(app, ["--home", str(home), "load", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] is True and payload["reasons"] == {"wrong_type": 1}
    assert payload["totals"]["rows_loaded"] == 23
    assert Home(home).store_path.exists()
    result = runner.invoke(
        app,
        ["--home", str(home), "validate", str(folder), "--json", "--extract-date", "2023-01-01"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["extract_date"] == "2023-01-01"


def test_cli_table_and_contract_error(tmp_path: Path, make_extract: Any) -> None:
    folder = make_extract()
    runner = CliRunner()
    result = runner.invoke(app, ["--home", str(tmp_path / "h"), "load", str(folder)])
    assert result.exit_code == 0, result.output
    assert "gp_event" in result.stdout and "quarantined" in result.stdout
    (folder / "death.parquet").unlink()
    result = runner.invoke(app, ["--home", str(tmp_path / "h"), "validate", str(folder)])
    assert result.exit_code == 1
    assert "death" in result.output


def test_connect_read_only_needs_a_store(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        connect(tmp_path / "none.duckdb")
    con = connect(tmp_path / "new.duckdb", read_only=False)
    try:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    finally:
        con.close()
    histories = {f"{name}_history" for name in contract.TABLE_NAMES}
    assert tables == {*contract.TABLE_NAMES, *histories, "quarantine", "load_log"}
    with pytest.raises(duckdb.Error):
        connect(tmp_path / "new.duckdb").execute("DELETE FROM person")
