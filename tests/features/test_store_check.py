"""`carerisk store check` on stores loaded for real, then broken on purpose with plain SQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from carerisk.cli import app
from features import contract
from features.scores_history import create_sql
from features.store import load_extract
from features.store_check import FIRST, PERSON_TABLES, check_store
from tests.features.conftest import small_extract, write_extract


def loaded(tmp_path: Path) -> Path:
    """A home whose store holds the small extract and then a month later without G3 and with
    P00002 corrected (so the history holds a replaced and a retired row)."""
    store = tmp_path / "home" / "store.duckdb"
    tables = small_extract()
    load_extract(write_extract(tmp_path / "a", tables), store)
    later = small_extract()
    later["gp_event"] = later["gp_event"][later["gp_event"]["event_id"] != "G3"]
    later["person"].loc[later["person"]["person_id"] == "P00002", "imd_decile"] = 2
    load_extract(write_extract(tmp_path / "b", later), store)
    return store


def run_sql(store: Path, *statements: str) -> None:
    with duckdb.connect(str(store)) as con:
        for sql in statements:
            con.execute(sql)


def check_cli(store: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["--home", str(store.parent), "store", "check", "--json"])
    return result.exit_code, json.loads(result.stdout)


def failed(payload: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["check"], c["table"]): c for c in payload["checks"] if not c["ok"]}


def test_a_loaded_store_passes_every_check(tmp_path: Path) -> None:
    store = loaded(tmp_path)
    code, payload = check_cli(store)
    assert code == 0 and payload["ok"]
    checks = {(c["check"], c["table"]): c for c in payload["checks"]}
    assert {t for c, t in checks if c == "unique key"} == set(contract.TABLE_NAMES)
    assert {t for c, t in checks if c == "person known"} == {t.name for t in PERSON_TABLES}
    assert checks[("unique key", "gp_event")]["rows"] == 3
    history = checks[("history equals the load log", "gp_event_history")]
    assert history["rows"] == 1 and history["offending"] == 0
    assert checks[("history equals the load log", "person_history")]["rows"] == 1


def test_repeated_and_empty_keys_are_reported_with_the_first_keys(tmp_path: Path) -> None:
    store = loaded(tmp_path)
    run_sql(
        store,
        "INSERT INTO gp_event SELECT * FROM gp_event WHERE event_id IN ('G1', 'G2')",
        "INSERT INTO gp_event SELECT * FROM gp_event WHERE event_id = 'G1'",  # G1 twice more
        "INSERT INTO prescription SELECT * REPLACE (NULL AS prescription_id) FROM prescription "
        "WHERE prescription_id = 'R1'",
    )
    code, payload = check_cli(store)
    assert code == 1 and not payload["ok"]
    bad = failed(payload)
    assert set(bad) == {("unique key", "gp_event"), ("unique key", "prescription")}
    gp = bad[("unique key", "gp_event")]
    assert gp["offending"] == 2 and gp["rows"] == 7
    assert gp["first"] == [["G1", 4], ["G2", 2]]  # key, rows holding it
    assert bad[("unique key", "prescription")]["first"] == [[None, 1]]


def test_the_first_offending_keys_are_capped(tmp_path: Path) -> None:
    store = loaded(tmp_path)
    run_sql(
        store, "INSERT INTO person SELECT * FROM person", "INSERT INTO person SELECT * FROM person"
    )
    result = check_store(store)
    (person,) = [c for c in result.checks if not c.ok]
    assert person.offending == 5 and len(person.first) == FIRST
    assert person.first[0] == ["P00001", 4]


def test_records_of_an_unknown_person_are_reported(tmp_path: Path) -> None:
    store = loaded(tmp_path)
    run_sql(
        store,
        "INSERT INTO ae_attendance SELECT * REPLACE ('P09999' AS person_id, 'A9' AS "
        "attendance_id) FROM ae_attendance WHERE attendance_id = 'A1'",
        "DELETE FROM person WHERE person_id = 'P00004'",
    )
    code, payload = check_cli(store)
    assert code == 1
    bad = failed(payload)
    assert set(bad) == {("person known", "ae_attendance"), ("person known", "fire_home_visit")}
    assert bad[("person known", "ae_attendance")]["first"] == [["P00004", "A2"], ["P09999", "A9"]]
    assert bad[("person known", "fire_home_visit")]["first"] == [["P00004", "F2"]]


def test_history_out_of_step_with_the_load_log_is_reported(tmp_path: Path) -> None:
    store = loaded(tmp_path)
    run_sql(
        store,
        "DELETE FROM person_history",  # the log says load 2 replaced one person
        "INSERT INTO gp_event_history SELECT 7 AS load_id, change, reason, * EXCLUDE "
        "(load_id, change, reason) FROM gp_event_history",  # a load never logged
        "INSERT INTO prescription_history SELECT 2, 'lost', 'no reason', * FROM prescription "
        "WHERE prescription_id = 'R2'",
        "INSERT INTO prescription_history SELECT 2, 'retired', 'absent', * FROM prescription "
        "WHERE prescription_id = 'R3'",
        "INSERT INTO prescription_history SELECT 2, 'retired', 'absent', * FROM prescription "
        "WHERE prescription_id = 'R3'",
    )
    code, payload = check_cli(store)
    assert code == 1
    bad = failed(payload)
    assert set(bad) == {
        ("history equals the load log", "person_history"),
        ("history from a logged load", "gp_event_history"),
        ("history equals the load log", "gp_event_history"),
        ("history from a logged load", "prescription_history"),
        ("history key once per load", "prescription_history"),
        ("history equals the load log", "prescription_history"),
    }
    assert bad[("history equals the load log", "person_history")]["first"] == [[2, 1, 0, 0, 0]]
    assert bad[("history from a logged load", "gp_event_history")]["first"] == [
        [7, "retired", "G3"]
    ]
    assert bad[("history key once per load", "prescription_history")]["first"] == [[2, "R3", 2]]
    assert bad[("history equals the load log", "prescription_history")]["first"] == [
        [2, 0, 0, 0, 2]
    ]


def test_the_scores_history_key_is_checked_when_there_is_one(tmp_path: Path) -> None:
    store = loaded(tmp_path)
    row = (
        "('2024-04-01', 'falls', 'P00001', 0.1, 'low', 'm', '1', 'r', 'a', 'F', 'white', '1', "
        "'d', 'EMIS', 'c', 'M81001', 1, 1, 1, '[]', '[]', now()::TIMESTAMP)"
    )
    run_sql(store, create_sql(), f"INSERT INTO scores_history VALUES {row}, {row}")
    code, payload = check_cli(store)
    assert code == 1
    assert failed(payload)[("unique key", "scores_history")]["first"] == [
        ["2024-04-01", "falls", "P00001", 2]
    ]


def test_the_table_names_the_failure_and_a_missing_store_is_an_error(tmp_path: Path) -> None:
    store = loaded(tmp_path)
    run_sql(store, "INSERT INTO death SELECT * FROM death")
    result = CliRunner().invoke(app, ["--home", str(store.parent), "store", "check"])
    assert result.exit_code == 1
    assert "unique key of death" in result.output and "P00005" in result.output
    empty = CliRunner().invoke(app, ["--home", str(tmp_path / "none"), "store", "check"])
    assert empty.exit_code == 1 and "no store at" in empty.output


def test_a_store_without_the_contract_tables_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "home" / "store.duckdb"
    store.parent.mkdir()
    run_sql(store, "CREATE TABLE person (person_id VARCHAR)")
    with pytest.raises(ValueError, match="lacks table"):
        check_store(store)
