"""The loader on a hand-written messy extract (tests/features/extracts/
messy, described in its README), and the reading rules both checkers share."""

from __future__ import annotations

import csv
import json
import random
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from carerisk.cli import app
from features import contract, store_sql
from features.codes import nhs_number_valid
from features.home import Home
from features.schemas import (
    ALL_REASONS,
    MALFORMED_ROW,
    parse_column,
    parse_frame,
    reference_problems,
)
from features.store import ContractError, LoadReport, connect, load_extract
from tests.features.conftest import small_extract, write_extract

MESSY = Path(__file__).parent / "extracts" / "messy"
NHS_NUMBERS = ("9434765919", "401-023-2137", "4010232137")

# (table, row number, column, reason): every entry the messy extract must give, and no other.
EXPECTED: set[tuple[str, int, str | None, str]] = {
    ("person", 3, "person_id", "nhs_number"),
    ("person", 4, "birth_month", "not_first_of_month"),
    ("person", 5, "imd_decile", "wrong_type"),
    ("death", 1, "date_of_death", "before_birth"),
    ("gp_event", 2, "value", "wrong_type"),
    ("gp_event", 3, "event_date", "before_birth"),
    ("gp_event", 4, "event_date", "after_death"),
    ("gp_event", 5, "person_id", "nhs_number"),
    ("gp_event", 5, "person_id", "unknown_person"),
    ("gp_event", 8, "value", "wrong_type"),
    ("prescription", 2, None, "malformed_row"),
    ("prescription", 3, None, "malformed_row"),
    ("prescription", 5, "issue_date", "future_date"),
    ("prescription", 6, "issue_date", "missing_value"),
    ("hospital_episode", 2, "discharge_date", "date_order"),
    ("ae_attendance", 1, "person_id", "unknown_person"),
    ("ae_attendance", 2, "diagnosis_code", "invalid_code"),
    ("ambulance_incident", 2, "incident_id", "duplicate_row"),
    ("ambulance_incident", 3, "incident_id", "duplicate_key"),
    ("ambulance_incident", 4, "conveyed", "wrong_type"),
    ("social_care", 2, "hours_per_week", "out_of_range"),
    ("social_care", 3, "hours_per_week", "wrong_type"),
    ("fire_home_visit", 1, "person_id", "nhs_number"),
    ("fire_home_visit", 1, "person_id", "unknown_person"),
}
# table: (rows read, loaded, quarantined)
COUNTS = {
    "person": (11, 8, 3),
    "death": (2, 1, 1),
    "gp_event": (10, 5, 5),
    "prescription": (7, 3, 4),
    "hospital_episode": (4, 3, 1),
    "ae_attendance": (4, 2, 2),
    "ambulance_incident": (5, 2, 3),
    "social_care": (4, 2, 2),
    "fire_home_visit": (3, 2, 1),
}


def entries(store: Path) -> set[tuple[str, int, str | None, str]]:
    with connect(store) as con:
        rows = con.execute(
            "SELECT table_name, row_number, column_name, reason FROM quarantine"
        ).fetchall()
    return {(t, int(r), c, why) for t, r, c, why in rows}


def balanced(report: LoadReport) -> bool:
    return all(t.balanced for t in report.tables)


@pytest.fixture
def loaded(tmp_path: Path) -> tuple[Path, LoadReport]:
    store = Home(tmp_path).store_path
    return store, load_extract(MESSY, store)


def test_the_fixture_is_as_written() -> None:
    """The bytes the tests rely on: a byte-order mark, CRLF line ends, a tab, a ragged line."""
    assert (MESSY / "person.csv").read_bytes().startswith(b"\xef\xbb\xbfperson_id,")
    assert b"\r\n" in (MESSY / "social_care.csv").read_bytes()
    assert b",\t1939-04-01\t," in (MESSY / "person.csv").read_bytes()
    lines = (MESSY / "prescription.csv").read_text().splitlines()
    assert [len(next(csv.reader([line]))) for line in lines] == [5, 5, 5, 6, 4, 5, 5, 5]


def test_every_bad_row_is_quarantined_and_every_good_row_loads(
    loaded: tuple[Path, LoadReport],
) -> None:
    store, report = loaded
    assert entries(store) == EXPECTED
    assert balanced(report)
    got = {t.table: (t.rows_read, t.rows_loaded, t.rows_quarantined) for t in report.tables}
    assert got == COUNTS
    assert set(report.reasons()) == set(ALL_REASONS)  # every reason, once at least


def test_nhs_numbers_are_quarantined_and_withheld(loaded: tuple[Path, LoadReport]) -> None:
    """Item 10: an NHS number as a person id is quarantined with a reason of its own, in the
    person table and in the others, and the number is not kept anywhere in the store."""
    store, _ = loaded
    with connect(store) as con:
        rows = con.execute(
            "SELECT value, raw_row, row_key FROM quarantine WHERE reason = 'nhs_number'"
        ).fetchall()
        stored = con.execute(
            "SELECT string_agg(CAST(to_json(q) AS VARCHAR), '|') FROM quarantine q"
        ).fetchone()
        ids = {
            r[0]
            for name in contract.TABLE_NAMES
            for r in con.execute(f"SELECT person_id FROM {name}").fetchall()
        }
    assert len(rows) == 3
    for value, raw, _ in rows:
        assert value == contract.NHS_NUMBER_WITHHELD
        assert json.loads(raw)["person_id"] == contract.NHS_NUMBER_WITHHELD
    assert stored is not None
    for number in NHS_NUMBERS:
        assert number not in stored[0]
    assert not ids & set(NHS_NUMBERS)


def test_nhs_number_check_digit() -> None:
    assert nhs_number_valid("9434765919")  # the NHS's own example
    assert nhs_number_valid("943 476 5919") and nhs_number_valid("943-476-5919")
    assert not nhs_number_valid("9434765918")  # wrong check digit
    assert not nhs_number_valid("1000000010")  # check digit would be 10: never issued
    assert not nhs_number_valid("94347659190") and not nhs_number_valid("P434765919")
    assert not nhs_number_valid("943 4765 919")


def test_sql_and_python_agree_on_nhs_numbers() -> None:
    rng = random.Random(16)
    values = [str(rng.randrange(10**9, 10**10)) for _ in range(3000)]
    values += [f"{v[:3]} {v[3:6]} {v[6:]}" for v in values[:200]]
    values += [f"{v[:3]}-{v[3:6]}-{v[6:]}" for v in values[:200]]
    values += ["P0a1e0ba99b06", "", "12345", "9434765919x", "943--4765919"]
    expected = [nhs_number_valid(v) for v in values]
    assert 200 < sum(expected) < 500  # about 1 in 11 carries a valid check digit
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t (i INTEGER, v VARCHAR)")
        con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(values)))
        got = con.execute(f"SELECT {store_sql.nhs_number('v')} FROM t ORDER BY i").fetchall()
    assert [g[0] for g in got] == expected


def _with_nhs_numbers(ids: dict[str, str]) -> dict[str, pd.DataFrame]:
    tables = small_extract()
    for frame in tables.values():
        frame["person_id"] = frame["person_id"].replace(ids)
    return tables


@pytest.mark.parametrize(
    ("ids", "where"),
    [
        # three of the five people: the person table is mostly NHS numbers
        ({"P00001": "9434765919", "P00002": "4010232137", "P00003": "4857773457"}, "table person"),
        # two of five people, but 13 of the 23 person ids in all tables
        ({"P00001": "9434765919", "P00003": "4857773457"}, "the extract"),
    ],
)
def test_a_load_of_mostly_nhs_numbers_stops(
    tmp_path: Path, ids: dict[str, str], where: str
) -> None:
    folder = write_extract(tmp_path / "x", _with_nhs_numbers(ids), "csv")
    store = tmp_path / "s.duckdb"
    with pytest.raises(ContractError, match="NHS numbers") as err:
        load_extract(folder, store)
    assert str(err.value).startswith(where)
    assert not store.exists()


def test_a_few_nhs_numbers_do_not_stop_the_load(tmp_path: Path) -> None:
    tables = _with_nhs_numbers({"P00004": "9434765919"})
    report = load_extract(write_extract(tmp_path / "x", tables, "csv"), tmp_path / "s.duckdb")
    assert report.reasons()["nhs_number"] == 3  # the person, an A&E visit, a fire visit
    assert balanced(report)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """Item 11: Excel's "CSV UTF-8" starts every file with a byte-order mark."""
    folder = write_extract(tmp_path / "x", small_extract(), "csv")
    for path in folder.glob("*.csv"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    report = load_extract(folder, tmp_path / "s.duckdb")
    assert report.clean and balanced(report)
    assert report.table("person").rows_loaded == 5


def test_ragged_rows_are_quarantined_with_their_lines(loaded: tuple[Path, LoadReport]) -> None:
    """Item 12: a line with an extra field and one with a field missing are quarantined with
    their line numbers; the rows after them keep their row numbers and load."""
    store, _ = loaded
    with connect(store) as con:
        malformed = con.execute(
            "SELECT row_number, detail, raw_row FROM quarantine "
            f"WHERE reason = '{MALFORMED_ROW}' ORDER BY 1"
        ).fetchall()
        loaded_ids = con.execute("SELECT prescription_id FROM prescription ORDER BY 1").fetchall()
    assert [(r, d) for r, d, _ in malformed] == [
        (2, "line 4: 6 fields where the header has 5"),
        (3, "line 5: 4 fields where the header has 5"),
    ]
    assert json.loads(malformed[1][2]) == "R4,Pa1000002,2023-08-08,040301"
    assert loaded_ids == [("R1",), ("R2",), ("R5",)]


def test_a_valid_row_is_not_lost_to_an_invalid_first_row_with_its_key(
    loaded: tuple[Path, LoadReport],
) -> None:
    """Item 13: keys are judged among valid rows only."""
    store, _ = loaded
    with connect(store) as con:
        person = con.execute(
            "SELECT imd_decile FROM person WHERE person_id = 'Pa1000006'"
        ).fetchall()
        visit = con.execute(
            "SELECT person_id FROM ae_attendance WHERE attendance_id = 'A2'"
        ).fetchall()
    assert person == [(5,)]  # row 6 loads; row 5 (imd "x") is quarantined for that alone
    assert visit == [("Pa1000002",)]  # row 3 loads; row 1's person was quarantined


def test_dates_impossible_for_the_person(loaded: tuple[Path, LoadReport]) -> None:
    """Item 14: events and deaths before the birth month, a birth month not on the 1st."""
    store, _ = loaded
    with connect(store) as con:
        details = dict(
            con.execute(
                "SELECT table_name || ':' || reason, detail FROM quarantine "
                "WHERE reason IN ('before_birth', 'not_first_of_month')"
            ).fetchall()
        )
        deaths = con.execute("SELECT person_id FROM death").fetchall()
    assert details == {
        "death:before_birth": "born 1980-06",
        "gp_event:before_birth": "born 1980-06",
        "person:not_first_of_month": "not the first day of a month",
    }
    assert deaths == [("Pa1000010",)]


def test_padded_values_load_trimmed(loaded: tuple[Path, LoadReport]) -> None:
    """Item 15's policy: whitespace around a value is removed in every column."""
    store, _ = loaded
    with connect(store) as con:
        person = con.execute(
            "SELECT person_id, birth_month, sex, imd_decile FROM person "
            "WHERE person_id IN ('Pa1000003', 'Pa1000007', 'Pa1000008') ORDER BY 1"
        ).fetchall()
        gp = con.execute(
            "SELECT event_id, event_date, snomed_code, value FROM gp_event "
            "WHERE event_id IN ('G7', 'G8', 'G10') ORDER BY 1"
        ).fetchall()
        diag = con.execute(
            "SELECT diag_01 FROM hospital_episode WHERE episode_id = 'H4'"
        ).fetchall()
    assert person == [
        ("Pa1000003", date(1938, 11, 1), "F", 4),
        ("Pa1000007", date(1939, 4, 1), "F", 1),
        ("Pa1000008", date(1960, 1, 1), "M", 9),
    ]
    assert gp == [
        ("G10", date(2023, 7, 7), "1912002", None),
        ("G7", date(2023, 3, 3), "60621009", 31.0),
        ("G8", date(2023, 4, 4), "60621009", 1000.0),
    ]
    assert diag == [("S720",)]


# (kind, text, parsed value, or "wrong" / "missing"): the contract's READING_RULES
SPELLINGS: list[tuple[str, str, Any]] = [
    ("date", "\t2023-01-05", date(2023, 1, 5)),
    ("date", " 2023-01-05\r\n", date(2023, 1, 5)),
    ("date", "2023-1-5", "wrong"),
    ("date", "2023-02-29", "wrong"),
    ("date", "05/01/2023", "wrong"),
    ("date", " \t ", "missing"),
    ("float", "1_000", "wrong"),
    ("float", "1,000", "wrong"),
    ("float", " 27.5 ", 27.5),
    ("float", "\t.5", 0.5),
    ("float", "5.", 5.0),
    ("float", "+1e3", 1000.0),
    ("float", "nan", "wrong"),
    ("float", "inf", "wrong"),
    ("float", "Infinity", "wrong"),
    ("float", "0x10", "wrong"),
    ("int", "1_000", "wrong"),
    ("int", " 7\t", 7),
    ("int", "5.0", 5),
    ("int", "5.5", "wrong"),
    ("int", "-3", -3),
    ("int", "1e3", "wrong"),
    ("int", "99999999999999999999", "wrong"),
    ("bool", " TRUE ", True),
    ("bool", "0", False),
    ("bool", "yes", "wrong"),
    ("str", " S720", "S720"),
    ("str", "S720\t", "S720"),
    ("str", "S72 0", "S72 0"),
    ("str", "\t", "missing"),
    ("str", "", "missing"),
]


def _pandas_reads(kind: str, texts: list[str]) -> list[Any]:
    parsed, wrong = parse_column(pd.Series(texts, dtype=object), kind)  # type: ignore[arg-type]
    out: list[Any] = []
    for value, bad in zip(parsed.tolist(), wrong.tolist(), strict=True):
        if bad:
            out.append("wrong")
        elif value is None or pd.isna(value):
            out.append("missing")
        else:
            out.append(value.date() if isinstance(value, pd.Timestamp) else value)
    return out


def _duckdb_reads(kind: str, texts: list[str]) -> list[Any]:
    col = contract.Column("v", kind)  # type: ignore[arg-type]
    spec = contract.Table("t", ("v",), (col,))
    sql = store_sql.ColumnSql(col, "VARCHAR", "s.v")
    with duckdb.connect() as con:
        con.execute("CREATE TABLE raw (i INTEGER, v VARCHAR)")
        con.executemany("INSERT INTO raw VALUES (?, ?)", list(enumerate(texts)))
        staged = store_sql.staged_select(spec, {"v": "VARCHAR"})
        con.execute(f"CREATE TABLE stage AS SELECT i, {staged} FROM raw")
        rows = con.execute(
            f"SELECT {sql.parsed}, {sql.missing}, coalesce({sql.wrong or 'false'}, false) "
            "FROM stage s ORDER BY i"
        ).fetchall()
    return ["wrong" if bad else "missing" if gone else value for value, gone, bad in rows]


@pytest.mark.parametrize("kind", ["date", "float", "int", "bool", "str"])
def test_both_checkers_read_every_spelling_alike(kind: str) -> None:
    """Item 15: one policy (the contract's READING_RULES) in the SQL path and in pandas."""
    cases = [(text, want) for k, text, want in SPELLINGS if k == kind]
    texts = [text for text, _ in cases]
    wanted = [want for _, want in cases]
    assert _pandas_reads(kind, texts) == wanted
    assert _duckdb_reads(kind, texts) == wanted


def _read_csv(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """The reference reader: Python's csv module; ragged lines are left out (returned)."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        records = list(csv.reader(f))
    header = [h.strip() for h in records[0]]
    rows = [(i, r) for i, r in enumerate(records[1:]) if len(r) == len(header)]
    ragged = [i for i, r in enumerate(records[1:]) if len(r) != len(header)]
    frame = pd.DataFrame([r for _, r in rows], columns=header, index=[i for i, _ in rows])
    return frame.astype(object), ragged


def _reference(folder: Path, when: date) -> set[tuple[str, int, str | None, str]]:
    """The pandera path over the messy extract, table by table in load order."""
    found: set[tuple[str, int, str | None, str]] = set()
    persons: set[str] | None = None
    deaths: dict[str, date] | None = None
    births: dict[str, date] | None = None
    for name in ("person", "death", *contract.TABLE_NAMES[1:-1]):
        spec = contract.table(name)
        raw, ragged = _read_csv(folder / f"{name}.csv")
        found |= {(name, i, None, MALFORMED_ROW) for i in ragged}
        problems = reference_problems(
            spec, raw, extract_date=when, persons=persons, deaths=deaths, births=births
        )
        rows = list(raw.index)
        found |= {(name, rows[r], c, why) for r, c, why in problems.itertuples(index=False)}
        parsed = parse_frame(spec, raw.reset_index(drop=True)).frame
        good = parsed[~parsed.index.isin(problems["row_number"])]
        if name == "person":
            persons = set(good["person_id"])
            births = dict(zip(good["person_id"], good["birth_month"], strict=True))
        if name == "death":
            deaths = dict(zip(good["person_id"], good["date_of_death"], strict=True))
    return found


def test_sql_and_pandera_agree_on_the_messy_extract(loaded: tuple[Path, LoadReport]) -> None:
    store, report = loaded
    assert _reference(MESSY, report.extract_date) == entries(store) == EXPECTED


def _restyle(source: Path, target: Path) -> None:
    """The same rows saved differently: padded header names, LF and CRLF swapped."""
    shutil.copytree(source, target)
    for path in target.glob("*.csv"):
        text = path.read_bytes().decode("utf-8-sig")
        header, rest = text.split("\n", 1)
        header = ",".join(f"  {name.strip()} " for name in header.rstrip("\r").split(","))
        crlf = "\r\n" in text
        rest = rest.replace("\r\n", "\n") if crlf else rest.replace("\n", "\r\n")
        path.write_text(header + ("\n" if crlf else "\r\n") + rest, encoding="utf-8", newline="")


def test_reloading_restyled_files_adds_no_quarantine_entries(tmp_path: Path) -> None:
    """Item 16: a quarantined row is known by its table, key and content, not by its file."""
    store = tmp_path / "s.duckdb"
    load_extract(MESSY, store)
    restyled = tmp_path / "restyled"
    _restyle(MESSY, restyled)
    assert (restyled / "person.csv").read_bytes() != (MESSY / "person.csv").read_bytes()
    second = load_extract(restyled, store)
    assert balanced(second) and second.totals()["rows_loaded"] == 0
    with connect(store) as con:
        rows = con.execute(
            "SELECT load_id, count(*), count(DISTINCT source_sha256) FROM quarantine GROUP BY 1"
        ).fetchall()
    assert rows == [(2, len(EXPECTED), 9)]  # replaced, not repeated
    assert entries(store) == EXPECTED


def test_a_quarantined_row_moved_to_another_line_is_still_one_entry(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    load_extract(MESSY, store)
    moved = tmp_path / "moved"
    shutil.copytree(MESSY, moved)
    lines = (moved / "social_care.csv").read_bytes().split(b"\r\n")
    header, rows = lines[0], [line for line in lines[1:] if line]
    (moved / "social_care.csv").write_bytes(b"\r\n".join([header, *rows[::-1]]) + b"\r\n")
    load_extract(moved, store)
    with connect(store) as con:
        got = con.execute(
            "SELECT load_id, row_number, reason FROM quarantine "
            "WHERE table_name = 'social_care' ORDER BY 2"
        ).fetchall()
    assert got == [(2, 0, "wrong_type"), (2, 1, "out_of_range")]


def test_a_row_that_now_loads_leaves_the_quarantine(tmp_path: Path) -> None:
    """An event whose person arrives in a later extract loads, and its entry goes."""
    store = tmp_path / "s.duckdb"
    tables = small_extract()
    tables["person"] = tables["person"].iloc[1:]  # P00001 missing: their events are unknown
    first = load_extract(write_extract(tmp_path / "a", tables, "csv"), store)
    assert first.reasons()["unknown_person"] > 0
    second = load_extract(write_extract(tmp_path / "b", small_extract(), "csv"), store)
    assert second.clean and balanced(second)
    with connect(store) as con:
        assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)


def test_wrong_type_details_are_plain_words(loaded: tuple[Path, LoadReport]) -> None:
    """Item 17: no "not a int"."""
    store, _ = loaded
    with connect(store) as con:
        details = dict(
            con.execute(
                "SELECT column_name, detail FROM quarantine WHERE reason = 'wrong_type'"
            ).fetchall()
        )
    assert details == {
        "imd_decile": "not a whole number",
        "value": "not a number",
        "conveyed": "not true or false",
        "hours_per_week": "not a number",
    }


def test_cli_loads_the_messy_extract(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "h"), "load", str(MESSY)])
    assert result.exit_code == 0, result.output
    assert "malformed_row" in result.stdout and "nhs_number" in result.stdout
    result = CliRunner().invoke(
        app, ["--home", str(tmp_path / "h"), "validate", str(MESSY), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reasons"]["malformed_row"] == 2
