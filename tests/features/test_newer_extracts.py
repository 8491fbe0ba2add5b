"""A newer extract of the same sources, full or an increment.

A month later the sources hand over a new extract: some rows are gone (coded in error, or fallen
out of the window), some corrected, some new. A full extract retires what it lacks, into the
table's history with the load that retired it; changed rows are replaced, their old version
kept in the history too; and nothing that was loaded is ever lost.
"""

from __future__ import annotations

import json
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
from features.scores_history import create_sql
from features.store import ContractError, LoadReport, connect, load_extract, resolve_kind
from tests.features.conftest import small_extract, write_extract
from tests.features.test_store import plant

Tables = dict[str, pd.DataFrame]


def month_later() -> Tables:
    """The small extract a month on: rows retired, corrected and added in several tables."""
    t = small_extract()
    t["gp_event"] = t["gp_event"][t["gp_event"]["event_id"] != "G3"]  # coded in error
    t["prescription"] = t["prescription"][t["prescription"]["prescription_id"] != "R1"]
    t["person"].loc[t["person"]["person_id"] == "P00002", "imd_decile"] = 2  # corrected
    t["hospital_episode"].loc[1, "discharge_date"] = pd.Timestamp("2024-06-25")  # discharged
    plant(t, "person", {"person_id": "P00006", "sex": "M"})  # newly registered
    plant(t, "gp_event", {"event_id": "G5", "person_id": "P00006"})
    plant(t, "gp_event", {"event_id": "G6", "event_date": pd.Timestamp("2024-06-01")})
    return t


def rows(store: Path, table: str) -> pd.DataFrame:
    spec = contract.table(table)
    with connect(store) as con:
        frame = con.execute(f'SELECT * FROM "{table}" ORDER BY {spec.key[0]}').df()
    return frame.reset_index(drop=True)


def history(store: Path, table: str) -> pd.DataFrame:
    with connect(store) as con:
        return con.execute(f'SELECT * FROM "{table}_history" ORDER BY 4').df()


def keys(frame: pd.DataFrame, table: str) -> set[str]:
    return set(frame[contract.table(table).key[0]].astype(str))


def counts(report: LoadReport, table: str) -> tuple[int, ...]:
    t = report.table(table)
    return (
        t.rows_read,
        t.rows_loaded,
        t.rows_updated,
        t.rows_unchanged,
        t.rows_quarantined,
        t.rows_retired,
    )


def loaded_twice(tmp_path: Path, later: Tables, kind: str = "full") -> tuple[Path, LoadReport]:
    store = tmp_path / "s.duckdb"
    load_extract(write_extract(tmp_path / "a", small_extract()), store)
    return store, load_extract(write_extract(tmp_path / "b", later, kind=kind), store)


def test_a_month_later_retires_updates_and_adds(tmp_path: Path) -> None:
    store, report = loaded_twice(tmp_path, month_later())
    assert report.ok and report.kind == "full" and report.load_id == 2
    # read, loaded (new), updated, unchanged, quarantined, retired
    assert counts(report, "person") == (6, 1, 1, 4, 0, 0)
    assert counts(report, "gp_event") == (5, 2, 0, 3, 0, 1)
    assert counts(report, "prescription") == (2, 0, 0, 2, 0, 1)
    assert counts(report, "hospital_episode") == (2, 0, 1, 1, 0, 0)
    assert counts(report, "death") == (1, 0, 0, 1, 0, 0)
    assert report.totals()["rows_retired"] == 2
    assert keys(rows(store, "gp_event"), "gp_event") == {"G1", "G2", "G4", "G5", "G6"}
    gp, rx = history(store, "gp_event"), history(store, "prescription")
    assert gp[["load_id", "change", "reason", "event_id"]].values.tolist() == [
        [2, "retired", "absent from a full extract", "G3"]
    ]
    assert rx["prescription_id"].tolist() == ["R1"] and rx["medicine"][0] == "amitriptyline"
    person = history(store, "person")
    assert person[["change", "person_id", "imd_decile"]].values.tolist() == [
        ["replaced", "P00002", 5]
    ]
    assert rows(store, "person").set_index("person_id").loc["P00002", "imd_decile"] == 2
    spell = history(store, "hospital_episode")
    assert spell["episode_id"].tolist() == ["H2"] and pd.isna(spell["discharge_date"][0])
    with connect(store) as con:
        logged = con.execute(
            "SELECT kind, sum(rows_updated), sum(rows_retired) FROM load_log "
            "WHERE load_id = 2 GROUP BY 1"
        ).fetchall()
    assert logged == [("full", 2, 2)]


def test_nothing_is_lost(tmp_path: Path) -> None:
    """Every row ever loaded is in its table, or in its history with the load that moved it."""
    first, later = small_extract(), month_later()
    store, _ = loaded_twice(tmp_path, later)
    for name in contract.TABLE_NAMES:
        stored, moved = rows(store, name), history(store, name)
        ever = keys(first[name], name) | keys(later[name], name)
        assert keys(stored, name) | keys(moved, name) == ever, name
        assert keys(stored, name) == keys(later[name], name), name
        retired = moved[moved["change"] == "retired"]
        assert keys(retired, name) == keys(first[name], name) - keys(later[name], name), name


def test_reloading_the_same_extract_changes_nothing(tmp_path: Path) -> None:
    later = write_extract(tmp_path / "b", month_later())
    store = tmp_path / "s.duckdb"
    load_extract(write_extract(tmp_path / "a", small_extract()), store)
    load_extract(later, store)
    before = {n: (rows(store, n), history(store, n)) for n in contract.TABLE_NAMES}
    again = load_extract(later, store)
    assert again.ok and again.load_id == 3
    totals = again.totals()
    assert totals["rows_loaded"] == totals["rows_updated"] == totals["rows_retired"] == 0
    assert totals["rows_unchanged"] == totals["rows_read"]
    for name, (stored, moved) in before.items():
        pd.testing.assert_frame_equal(rows(store, name), stored)
        pd.testing.assert_frame_equal(history(store, name), moved)


def test_an_increment_retires_nothing(tmp_path: Path) -> None:
    later = month_later()
    later["gp_event"] = later["gp_event"][later["gp_event"]["event_id"].isin(["G5", "G6"])]
    later["prescription"] = later["prescription"].iloc[:0]
    store, report = loaded_twice(tmp_path, later, kind="increment")
    assert report.kind == "increment" and report.totals()["rows_retired"] == 0
    assert counts(report, "gp_event") == (2, 2, 0, 0, 0, 0)
    assert keys(rows(store, "gp_event"), "gp_event") == {"G1", "G2", "G3", "G4", "G5", "G6"}
    assert keys(rows(store, "prescription"), "prescription") == {"R1", "R2", "R3"}
    assert history(store, "person")["change"].tolist() == ["replaced"]


def test_a_person_left_out_takes_their_records(tmp_path: Path) -> None:
    """P00002 is gone from the person table; the extract still has their GP event G3, which
    is quarantined as an unknown person, and the stored G3 is retired with them."""
    later = small_extract()
    later["person"] = later["person"][later["person"]["person_id"] != "P00002"]
    later["ambulance_incident"] = later["ambulance_incident"].iloc[:1]  # I2 was P00002's
    store, report = loaded_twice(tmp_path, later)
    assert counts(report, "person") == (4, 0, 0, 4, 0, 1)
    assert counts(report, "gp_event") == (4, 0, 0, 3, 1, 1)
    assert report.table("gp_event").reasons == {"unknown_person": 1}
    gp = history(store, "gp_event")
    assert gp[["event_id", "reason"]].values.tolist() == [["G3", "their person was retired"]]
    incident = history(store, "ambulance_incident")
    assert incident[["incident_id", "reason"]].values.tolist() == [
        ["I2", "absent from a full extract"]
    ]
    with connect(store) as con:
        orphans = con.execute(
            "SELECT count(*) FROM gp_event WHERE person_id NOT IN (SELECT person_id FROM person)"
        ).fetchone()
    assert orphans == (0,)


def test_a_key_carried_by_a_quarantined_row_keeps_the_stored_row(tmp_path: Path) -> None:
    later = small_extract()
    later["person"].loc[2, "sex"] = "U"  # P00003's new row fails; their old one stays
    store, report = loaded_twice(tmp_path, later)
    assert counts(report, "person") == (5, 0, 0, 4, 1, 0)
    assert report.totals()["rows_retired"] == 0
    assert report.totals()["rows_quarantined"] == 1  # their events still know them
    assert "P00003" in keys(rows(store, "person"), "person")


def test_a_malformed_line_that_shows_its_key_keeps_the_stored_row(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    load_extract(write_extract(tmp_path / "a", small_extract(), "csv"), store)
    folder = write_extract(tmp_path / "b", small_extract(), "csv")
    path = folder / "ae_attendance.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2] + ",an extra field"  # A2's line no longer splits into six fields
    path.write_text("\n".join(lines) + "\n")
    report = load_extract(folder, store)
    assert report.table("ae_attendance").reasons == {"malformed_row": 1}
    assert report.totals()["rows_retired"] == 0
    assert keys(rows(store, "ae_attendance"), "ae_attendance") == {"A1", "A2"}


# --- the kind of an extract is stated, never guessed ------------------------------------------


def test_a_later_extract_that_does_not_say_its_kind_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    first = load_extract(write_extract(tmp_path / "a", small_extract(), kind=None), store)
    assert first.ok and first.kind is None  # a first load needs no kind
    folder = write_extract(tmp_path / "b", month_later(), kind=None)
    with pytest.raises(ContractError, match=r'"kind": "full".*"kind": "increment"'):
        load_extract(folder, store)
    with connect(store) as con:
        assert con.execute("SELECT count(DISTINCT load_id) FROM load_log").fetchone() == (1,)
    report = load_extract(folder, store, kind="full")
    assert report.kind == "full" and report.totals()["rows_retired"] == 2


def test_kind_from_the_manifest_or_the_caller(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x", small_extract(), kind="increment")
    assert resolve_kind(folder, None) == "increment"
    assert resolve_kind(folder, "increment") == "increment"
    with pytest.raises(ContractError, match="says the extract is 'increment'"):
        resolve_kind(folder, "full")
    (folder / "manifest.json").write_text(json.dumps({"kind": "partial"}))
    with pytest.raises(ContractError, match="kind 'partial' is not one of full, increment"):
        resolve_kind(folder, None)
    (folder / "manifest.json").unlink()
    assert resolve_kind(folder, None) is None


def test_cli_full_and_increment_flags(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runner = CliRunner()
    first = write_extract(tmp_path / "a", small_extract(), kind=None)
    later = write_extract(tmp_path / "b", month_later(), kind=None)
    assert runner.invoke(app, ["--home", str(home), "load", str(first)]).exit_code == 0
    refused = runner.invoke(app, ["--home", str(home), "load", str(later)])
    assert refused.exit_code == 1 and "--full or --increment" in refused.output
    both = runner.invoke(app, ["--home", str(home), "load", str(later), "--full", "--increment"])
    assert both.exit_code == 1 and "contradict" in both.output
    done = runner.invoke(app, ["--home", str(home), "load", str(later), "--full", "--json"])
    assert done.exit_code == 0, done.output
    payload = json.loads(done.stdout)
    assert payload["kind"] == "full" and payload["totals"]["rows_retired"] == 2
    table = runner.invoke(app, ["--home", str(home), "load", str(later), "--increment"])
    assert table.exit_code == 0 and "retired" in table.stdout and "updated" in table.stdout


def test_a_store_from_before_extract_kinds_is_upgraded(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    load_extract(write_extract(tmp_path / "a", small_extract()), store)
    with duckdb.connect(str(store)) as con:
        for column in ("kind", "rows_updated", "rows_retired"):
            con.execute(f"ALTER TABLE load_log DROP COLUMN {column}")
        for name in contract.TABLE_NAMES:
            con.execute(f'DROP TABLE "{name}_history"')
    report = load_extract(write_extract(tmp_path / "b", month_later()), store)
    assert report.ok and report.totals()["rows_retired"] == 2
    assert history(store, "gp_event")["event_id"].tolist() == ["G3"]


# --- objections ----------------------------------------------------------------------------


def test_a_load_withdraws_the_kept_scores_of_people_who_have_objected(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    load_extract(write_extract(tmp_path / "a", small_extract()), store)
    with duckdb.connect(str(store)) as con:
        con.execute(create_sql())
        for pid in ("P00001", "P00002"):
            con.execute(
                "INSERT INTO scores_history (snapshot_date, outcome, person_id, probability) "
                "VALUES (DATE '2024-07-01', 'falls', ?, 0.1)",
                [pid],
            )
    report = load_extract(
        write_extract(tmp_path / "b", month_later()),
        store,
        objections=frozenset({"P00002", "P99999"}),
    )
    assert (report.objectors, report.scores_withdrawn) == (1, 1)
    assert report.to_dict()["objections"] == {"objectors": 1, "scores_withdrawn": 1}
    with connect(store) as con:
        left = con.execute("SELECT person_id FROM scores_history").fetchall()
    assert left == [("P00001",)]


# --- property: any later full extract ------------------------------------------------------


def _later(first: Tables, drop: dict[str, set[int]], change: dict[str, set[int]]) -> Tables:
    """The first extract less some rows, with some others changed in a non-key column."""
    later: Tables = {}
    for name, frame in first.items():
        frame = frame.copy()
        column = {"person": "lsoa_code", "death": "date_of_death"}.get(name)
        for i in change.get(name, set()):
            if column == "lsoa_code":
                frame.loc[i, column] = "E01009999"
            elif column == "date_of_death":
                frame.loc[i, column] = frame.loc[i, column] + pd.Timedelta(days=1)
            elif "person_id" in frame and name != "person":
                frame.loc[i, "person_id"] = "P00001"
        later[name] = frame.drop(index=sorted(drop.get(name, set()))).reset_index(drop=True)
    return later


EVENTS = [n for n in contract.TABLE_NAMES if n not in ("person", "death")]


@pytest.mark.slow  # many stores loaded, a property test
@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    drop=st.dictionaries(st.sampled_from(EVENTS), st.sets(st.integers(0, 1), max_size=2)),
    change=st.dictionaries(st.sampled_from(EVENTS), st.sets(st.integers(0, 1), max_size=2)),
)
def test_any_later_full_extract_makes_the_store_that_extract(
    tmp_path: Path, drop: dict[str, set[int]], change: dict[str, set[int]]
) -> None:
    first = small_extract()
    later = _later(first, drop, change)
    root = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    store = root / "s.duckdb"
    load_extract(write_extract(root / "a", first), store)
    report = load_extract(write_extract(root / "b", later), store)
    assert report.ok and report.clean
    for name in contract.TABLE_NAMES:
        t: Any = report.table(name)
        assert t.rows_retired == len(keys(first[name], name) - keys(later[name], name)), name
        assert keys(rows(store, name), name) == keys(later[name], name), name
        moved = history(store, name)
        assert len(moved) == t.rows_retired + t.rows_updated, name
        assert keys(moved, name) | keys(later[name], name) == keys(first[name], name), name
