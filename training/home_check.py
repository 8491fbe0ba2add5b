"""A home that can be moved: find, and fix, the records that still name the home's old place.

MLflow records where each experiment, run and logged model keeps its artifacts, and where each
registered version's files are, as absolute paths and file URIs; the store's load log names
the extract folder it read. A home copied, restored or moved elsewhere keeps those records, so
they go on naming the old place: the copy reads the old home's files, or fails once they are
gone.

The home's location file (`Home.location_path`) says where the home last knew itself to be.
Homes made before it have none: for them the MLflow experiments' artifact locations, which lie
under the home's `mlflow-artifacts` folder, tell where the home was. When that place is not
where the home is now, `move_records` rewrites every recorded path under the old place to the
same path under the new one, in the tracking database and the store. The audit is never
rewritten: it is a chain of what happened where, and rewriting it would break the chain.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from features.home import Home

SQLITE_TEXT = ("TEXT", "VARCHAR", "CHAR", "CLOB")


class HomeCheckError(RuntimeError):
    """A home's records could not be read or rewritten; the message names the file."""


@dataclass(frozen=True)
class Recorded:
    """The rows of one column of one database whose value names a place under the old root."""

    database: Path
    table: str
    column: str
    rows: int

    def describe(self) -> str:
        return f"{self.database.name}: {self.table}.{self.column}, {self.rows} rows"


@dataclass(frozen=True)
class HomeCheck:
    """What `check_home` found: where the home is, where its records say it was (when that is
    elsewhere), the records still naming that place, and the registered files not on disk."""

    root: Path
    was_at: Path | None
    recorded: tuple[Recorded, ...]
    missing: tuple[str, ...]
    tracking_outside: str | None = None  # a tracking store outside the home: not checked

    @property
    def moved(self) -> bool:
        return self.was_at is not None

    @property
    def ok(self) -> bool:
        return not self.recorded and not self.missing

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": str(self.root),
            "was_at": str(self.was_at) if self.was_at else None,
            "recorded": [
                {"database": r.database.name, "table": r.table, "column": r.column, "rows": r.rows}
                for r in self.recorded
            ],
            "missing": list(self.missing),
            "tracking_outside": self.tracking_outside,
            "ok": self.ok,
        }


# --- where the home was --------------------------------------------------------------------


def recorded_root(home: Home) -> Path | None:
    """Where the home last knew itself to be: its location file, else (a home made before the
    file) the place its MLflow artifact locations lie under; None when neither says."""
    path = home.location_path
    if path.is_file():
        try:
            return Path(json.loads(path.read_text(encoding="utf-8"))["root"])
        except (ValueError, KeyError, TypeError) as error:
            raise HomeCheckError(f"{path}: not a home location file ({error})") from None
    return inferred_root(home)


def inferred_root(home: Home) -> Path | None:
    """The home the experiments' artifact locations lie in (`<home>/mlflow-artifacts/<name>`);
    where they name more than one, the current home if it is among them."""
    if not home.mlflow_db.is_file():
        return None
    found = set()
    for (location,) in _sqlite_rows(home.mlflow_db, "SELECT artifact_location FROM experiments"):
        folder = _as_path(str(location or ""))
        if folder is not None and folder.parent.name == home.artifacts_dir.name:
            found.add(folder.parent.parent)
    if home.root in found:
        return home.root
    return found.pop() if len(found) == 1 else None


def write_location(home: Home) -> None:
    """Record that the home is where it is now (an owner-only file, replaced in one step)."""
    path = home.location_path
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"root": str(home.root)}, out)
        out.write("\n")
    tmp.replace(path)


def _as_path(value: str) -> Path | None:
    """The local path a recorded value names (a path or a file URI), else None."""
    if value.startswith("file:"):
        return Path(unquote(urlparse(value).path))
    return Path(value) if value.startswith("/") else None


# --- finding and rewriting -------------------------------------------------------------------


def old_records(home: Home, old: Path) -> list[Recorded]:
    """Each column, in the home's tracking database and its store, whose values name a place
    under `old` (as a path or a file URI), with its count of rows."""
    return _walk(home, old, None)


def move_records(home: Home, old: Path) -> list[Recorded]:
    """Rewrite every recorded path under `old` to the same path under the home, then record
    the home's location. Returns what was rewritten."""
    moved = _walk(home, old, home.root)
    write_location(home)
    return moved


def _walk(home: Home, old: Path, new: Path | None) -> list[Recorded]:
    found: list[Recorded] = []
    if home.mlflow_db.is_file():
        found += _sqlite_paths(home.mlflow_db, old, new)
    if home.store_path.is_file():
        found += _duckdb_paths(home.store_path, old, new)
    return found


def _forms(old: Path, new: Path | None) -> list[tuple[str, str]]:
    """The spellings of a place in records, old -> new: the path and its file URI."""
    target = new or old
    pairs = [(str(old), str(target)), (old.as_uri(), target.as_uri())]
    if "file://" + str(old) != old.as_uri():  # URIs written without escaping
        pairs.append(("file://" + str(old), "file://" + str(target)))
    return pairs


# A value names a place under the old root when it is that root or starts with it and "/".
MATCH = "({c} = ? OR substr({c}, 1, length(?) + 1) = ? || '/')"
REWRITE = "CASE WHEN {c} = ? THEN ? ELSE ? || substr({c}, length(?) + 1) END"


def _sqlite_paths(db: Path, old: Path, new: Path | None) -> list[Recorded]:
    with _sqlite(db) as con:
        names = con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        columns = [
            (f'"{table}"', table, column[1])
            for (table,) in names
            for column in con.execute(f'PRAGMA table_info("{table}")').fetchall()
            if str(column[2]).upper().startswith(SQLITE_TEXT)
        ]
        found = _each_column(con, db, columns, old, new)
        con.commit()
    return found


def _duckdb_paths(store: Path, old: Path, new: Path | None) -> list[Recorded]:
    import duckdb

    try:
        con = duckdb.connect(str(store), read_only=new is None)
    except duckdb.Error as error:
        raise HomeCheckError(f"{store}: cannot be opened ({error})") from None
    with con:
        rows = con.execute(
            "SELECT c.table_schema, c.table_name, c.column_name "
            "FROM information_schema.columns c JOIN information_schema.tables t "
            "USING (table_catalog, table_schema, table_name) "
            "WHERE c.data_type = 'VARCHAR' AND t.table_type = 'BASE TABLE' "
            "AND c.table_catalog = current_database()"
        ).fetchall()
        columns = [(f'"{schema}"."{table}"', table, column) for schema, table, column in rows]
        con.begin()
        found = _each_column(con, store, columns, old, new)
        con.commit()
    return found


def _each_column(
    con: Any, db: Path, columns: list[tuple[str, str, str]], old: Path, new: Path | None
) -> list[Recorded]:
    """Count (and with `new`, rewrite) the values naming `old` in each (SQL name, table name,
    column) of one open database."""
    found = []
    for sql_name, table, column in columns:
        rows = sum(
            _one_form(con, sql_name, column, before, after if new else None)
            for before, after in _forms(old, new)
        )
        if rows:
            found.append(Recorded(db, table, column, rows))
    return found


def _one_form(con: Any, table: str, column: str, before: str, after: str | None) -> int:
    c = f'"{column}"'
    where = MATCH.format(c=c)
    count = con.execute(f"SELECT count(*) FROM {table} WHERE {where}", [before] * 3).fetchone()
    rows = int(count[0]) if count else 0
    if rows and after is not None:
        sql = f"UPDATE {table} SET {c} = {REWRITE.format(c=c)} WHERE {where}"
        con.execute(sql, [before, after, after, before, *[before] * 3])
    return rows


@contextlib.contextmanager
def _sqlite(db: Path) -> Iterator[sqlite3.Connection]:
    try:
        con = sqlite3.connect(db, timeout=30)
    except sqlite3.Error as error:
        raise HomeCheckError(f"{db}: cannot be opened ({error})") from None
    try:
        yield con
    except sqlite3.Error as error:
        raise HomeCheckError(f"{db}: {error}") from None
    finally:
        con.close()


def _sqlite_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with _sqlite(db) as con:
        try:
            return con.execute(sql).fetchall()
        except sqlite3.OperationalError:  # no such table: a database MLflow never set up
            return []


# --- the check -------------------------------------------------------------------------------


def check_home(home: Home, tracking_uri: str) -> HomeCheck:
    """Where the home's records say it was, the records still naming that place, and the files
    of registered versions that are not on disk (when the tracking store is the home's own).
    Writes nothing."""
    tracking = tracking_uri == home.default_tracking_uri
    was = recorded_root(home)
    was_at = was if was is not None and was != home.root else None
    recorded = old_records(home, was_at) if was_at else []
    missing = registered_files_missing(home) if tracking else []
    outside = None if tracking else tracking_uri
    return HomeCheck(home.root, was_at, tuple(recorded), tuple(missing), outside)


def registered_files_missing(home: Home) -> list[str]:
    """Each registered version whose files (its storage location or its run's artifacts) are
    named by a local path that is not there."""
    if not home.mlflow_db.is_file():
        return []
    sql = (
        "SELECT v.name, v.version, v.storage_location, r.artifact_uri FROM model_versions v "
        "LEFT JOIN runs r ON r.run_uuid = v.run_id ORDER BY v.name, v.version"
    )
    missing = []
    for name, version, storage, artifacts in _sqlite_rows(home.mlflow_db, sql):
        for what, value in (("files", storage), ("run's artifacts", artifacts)):
            path = _as_path(str(value or ""))
            if path is not None and not path.exists():
                missing.append(f"{name} version {version}: its {what} at {path} are missing")
    return missing


def settle(home: Home) -> tuple[Path, list[Recorded]] | None:
    """At a command's start: when the home's records say it was elsewhere, move them here and
    return the old place with what was rewritten (for a note); else record where the home is,
    if it exists and has no record yet."""
    if not home.root.is_dir():
        return None
    was = recorded_root(home)
    if was is not None and was != home.root:
        return was, move_records(home, was)
    if not home.location_path.exists():
        write_location(home)
    return None
