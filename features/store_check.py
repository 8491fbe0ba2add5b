"""`carerisk store check`: prove what the loader promises, on any store, out of core.

The store declares no key constraints (an in-memory index would not fit a national store); the
loader keeps each key unique itself. This module checks a store as it is, read-only, with
DuckDB's memory limit and a spill folder, so it runs at any size:

- keys: no two rows of a contract table (or of the scores history) share a key, and no key
  column is empty;
- persons: every row of a table of people's records names a person in the person table;
- history: each `<table>_history` row comes from a load in the load log, says why it moved
  (replaced or retired), moved at most once in that load, and the numbers moved per load and
  table equal the load log's rows_updated and rows_retired.

Each check reports the rows it looked at, how many offend, and the first offending keys.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from features import contract, scores_history
from features.store import REPLACED, RETIRED, history_table
from features.store_sql import quote

FIRST = 5  # offending keys shown per check
PERSON_TABLES: tuple[contract.Table, ...] = tuple(
    t for t in contract.TABLES if t.name != contract.PERSON.name
)


@dataclass
class Check:
    """One check of one table: rows looked at, offending rows or keys, the first of them."""

    check: str
    table: str
    rows: int
    offending: int
    first: list[list[Any]] = field(default_factory=list)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.offending == 0


@dataclass
class StoreCheck:
    store_path: str
    checks: list[Check]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "store_path": self.store_path,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "checks": [{**asdict(c), "ok": c.ok} for c in self.checks],
        }


def check_store(store_path: Path, memory_limit: str = "4GB") -> StoreCheck:
    """Run every check on the store at `store_path` (read-only)."""
    import time

    path = Path(store_path)
    if not path.exists():
        raise FileNotFoundError(f"no store at {path}; run `carerisk load` first")
    began = time.perf_counter()
    spill = Path(tempfile.mkdtemp(prefix="carerisk-check-"))
    try:
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": memory_limit,
            "temp_directory": str(spill),
        }
        with duckdb.connect(str(path), read_only=True, config=config) as con:
            checks = run_checks(con)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return StoreCheck(str(path), checks, time.perf_counter() - began)


def run_checks(con: duckdb.DuckDBPyConnection) -> list[Check]:
    tables = _tables(con)
    missing = [t.name for t in contract.TABLES if t.name not in tables]
    if missing:
        raise ValueError(f"the store lacks table(s) {', '.join(missing)}: not a carerisk store")
    checks = [key_check(con, spec.name, spec.key) for spec in contract.TABLES]
    if scores_history.SCORES_TABLE in tables:
        checks.append(key_check(con, scores_history.SCORES_TABLE, scores_history.KEY))
    checks += [person_check(con, spec) for spec in PERSON_TABLES]
    for spec in contract.TABLES:
        if history_table(spec.name) in tables:
            checks += history_checks(con, spec)
    return checks


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main'"
    ).fetchall()
    return {str(r[0]) for r in rows}


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _first(con: duckdb.DuckDBPyConnection, sql: str) -> list[list[Any]]:
    return [[_plain(v) for v in row] for row in con.execute(f"{sql} LIMIT {FIRST}").fetchall()]


def _plain(value: Any) -> Any:
    """A value as JSON holds it (dates as ISO text)."""
    return value.isoformat() if hasattr(value, "isoformat") else value


def key_check(con: duckdb.DuckDBPyConnection, table: str, key: tuple[str, ...]) -> Check:
    """Keys held by more than one row, and rows with an empty key column."""
    name, keys = quote(table), ", ".join(quote(k) for k in key)
    empty = " OR ".join(f"{quote(k)} IS NULL" for k in key)
    rows = _count(con, f"SELECT count(*) FROM {name}")
    groups = f"SELECT {keys}, count(*) AS n FROM {name} GROUP BY ALL HAVING count(*) > 1"
    repeated = _count(con, f"SELECT count(*) FROM ({groups})")
    first = _first(con, f"{groups} ORDER BY {keys}") if repeated else []
    nulls = _count(con, f"SELECT count(*) FROM {name} WHERE {empty}")
    if nulls:
        first += _first(con, f"SELECT {keys}, 1 FROM {name} WHERE {empty}")
    detail = f"{repeated:,} key(s) held by more than one row; {nulls:,} row(s) with an empty key"
    return Check("unique key", table, rows, repeated + nulls, first[:FIRST], detail)


def person_check(con: duckdb.DuckDBPyConnection, spec: contract.Table) -> Check:
    """Rows whose person_id is not in the person table."""
    name, keys = quote(spec.name), ", ".join(f"t.{quote(k)}" for k in spec.key)
    orphans = (
        f"FROM {name} t WHERE NOT EXISTS (SELECT 1 FROM person p WHERE p.person_id = t.person_id)"
    )
    rows = _count(con, f"SELECT count(*) FROM {name}")
    offending = _count(con, f"SELECT count(*) {orphans}")
    first = (
        _first(con, f"SELECT t.person_id, {keys} {orphans} ORDER BY {keys}") if offending else []
    )
    detail = f"{offending:,} row(s) name a person not in the person table"
    return Check("person known", spec.name, rows, offending, first, detail)


def history_checks(con: duckdb.DuckDBPyConnection, spec: contract.Table) -> list[Check]:
    """The history of one table against the load log: loads known, why stated, each key moved
    at most once per load, and the numbers moved equal the log's."""
    history = quote(history_table(spec.name))
    keys = ", ".join(quote(k) for k in spec.key)
    rows = _count(con, f"SELECT count(*) FROM {history}")
    return [
        _unlogged(con, spec, history, keys, rows),
        _moved_twice(con, spec, history, keys, rows),
        _counts_match(con, spec, history, rows),
    ]


def _unlogged(
    con: duckdb.DuckDBPyConnection, spec: contract.Table, history: str, keys: str, rows: int
) -> Check:
    changes = f"'{REPLACED}', '{RETIRED}'"
    bad = (
        f"FROM {history} h WHERE h.change IS NULL OR h.change NOT IN ({changes}) "
        "OR h.reason IS NULL OR NOT EXISTS (SELECT 1 FROM load_log l WHERE "
        f"l.load_id = h.load_id AND l.table_name = '{spec.name}')"
    )
    offending = _count(con, f"SELECT count(*) {bad}")
    first = (
        _first(con, f"SELECT h.load_id, h.change, {keys} {bad} ORDER BY h.load_id, {keys}")
        if offending
        else []
    )
    detail = f"{offending:,} row(s) from no logged load, or without a change and its reason"
    return Check("history from a logged load", history_table(spec.name), rows, offending, first,
                 detail)  # fmt: skip


def _moved_twice(
    con: duckdb.DuckDBPyConnection, spec: contract.Table, history: str, keys: str, rows: int
) -> Check:
    groups = f"SELECT load_id, {keys}, count(*) AS n FROM {history} GROUP BY ALL HAVING n > 1"
    offending = _count(con, f"SELECT count(*) FROM ({groups})")
    first = _first(con, f"{groups} ORDER BY load_id, {keys}") if offending else []
    detail = f"{offending:,} key(s) moved to the history more than once in one load"
    return Check("history key once per load", history_table(spec.name), rows, offending, first,
                 detail)  # fmt: skip


def _counts_match(
    con: duckdb.DuckDBPyConnection, spec: contract.Table, history: str, rows: int
) -> Check:
    """Per load: replaced rows = the log's rows_updated, retired rows = its rows_retired
    (loads logged before the log kept those counts are not compared)."""
    compared = f"""
        WITH moved AS (
          SELECT load_id, count_if(change = '{REPLACED}') AS replaced,
                 count_if(change = '{RETIRED}') AS retired
          FROM {history} GROUP BY load_id),
        logged AS (
          SELECT load_id, sum(rows_updated) AS updated, sum(rows_retired) AS retired
          FROM load_log WHERE table_name = '{spec.name}' GROUP BY load_id)
        SELECT load_id, l.updated, coalesce(m.replaced, 0) AS replaced,
               l.retired, coalesce(m.retired, 0) AS moved_retired
        FROM logged l FULL JOIN moved m USING (load_id)
        WHERE (l.updated IS NOT NULL AND l.updated <> coalesce(m.replaced, 0))
           OR (l.retired IS NOT NULL AND l.retired <> coalesce(m.retired, 0))
           OR l.load_id IS NULL"""
    offending = _count(con, f"SELECT count(*) FROM ({compared})")
    first = _first(con, f"{compared} ORDER BY load_id") if offending else []
    detail = (
        f"{offending:,} load(s) whose history rows differ from the log's counts "
        "(load_id, log updated, history replaced, log retired, history retired)"
    )
    return Check("history equals the load log", history_table(spec.name), rows, offending,
                 first, detail)  # fmt: skip
