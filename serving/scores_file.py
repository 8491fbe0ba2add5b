"""A worker's read-only handle on one outcome's scores export (features.scores_export).

The file is opened read-only with a small memory limit: what a worker holds does not grow with
the population (DuckDB reads the pages a query needs and may keep some, up to the limit). Each
thread reads through its own cursor, so requests in different threads do not wait for each other.
Lookups by person id do not query DuckDB (about 1 ms a query, most of a request's time): they
binary-search the export's people file (features.scores_export.people_path), memory-mapped, so
its pages are the operating system's page cache, shared by the workers, not a worker's own copy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from features.home import Home
from features.scores_export import FORMAT, REGISTERS, ExportKey, people_path
from features.snapshot import snapshot_fingerprint
from models.score_all import Champion, export_key, score_and_export

log = logging.getLogger("carerisk.serving")

BLOCK = 64  # ids read per search after the fence (see ScoresFile._search)
TAKE_FROM = 32  # people found at once from which their rows are taken column by column
MEMORY_LIMIT = "64MB"  # per export and worker: DuckDB's buffer pool for its pages
# what a read returns per person, in this order (Row)
ROW_COLUMNS: tuple[str, ...] = (
    "person_id",
    "district",
    "practice_code",
    "probability",
    "band",
    "reasons_clinical",
    "reasons_non_clinical",
)
Row = tuple[Any, ...]
PERSON, DISTRICT, PRACTICE, PROBABILITY, BAND, CLINICAL, NON_CLINICAL = range(len(ROW_COLUMNS))
_SELECT = ", ".join(f'"{c}"' for c in ROW_COLUMNS)


class ScoresFileError(LookupError):
    """An export that cannot be served (not the one asked for, or unreadable)."""


class ScoresFile:
    """One outcome's export, read-only."""

    def __init__(self, path: Path, key: ExportKey) -> None:
        self.path, self.key = path, key
        try:
            self._con = duckdb.connect(
                str(path), read_only=True, config={"memory_limit": MEMORY_LIMIT, "threads": 1}
            )
        except duckdb.Error as error:
            raise ScoresFileError(f"cannot open the scores export {path}: {error}") from None
        self._local = threading.local()
        self.index_date = self._check()
        self._people = _mapped_people(people_path(path))
        self._ids = _array(self._people, "person_id")
        # every BLOCK-th id, in memory: 1/BLOCK of the ids (about 1.5 MiB a million people)
        self._fence = self._ids.take(pa.array(range(0, len(self._ids), BLOCK))).to_pylist()
        self._columns = [_array(self._people, c) for c in ("in_cohort", *ROW_COLUMNS)]

    def _check(self) -> dt.date:
        row = (
            self._cursor()
            .execute(
                "SELECT outcome, model_version, run_id, fingerprint, snapshot_date, format "
                "FROM meta"
            )
            .fetchone()
        )
        want = (self.key.outcome, self.key.model_version, self.key.run_id, self.key.fingerprint)
        if row is None or tuple(row[:4]) != want or row[5] != FORMAT:
            raise ScoresFileError(
                f"the scores export {self.path} is not {self.key.outcome} v"
                f"{self.key.model_version} at snapshot {self.key.snapshot_date}; "
                "run `carerisk score-all`"
            )
        day = row[4]
        assert isinstance(day, dt.date)
        return day

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._con.cursor()
        return cursor

    def people(self, person_ids: Sequence[str]) -> dict[str, tuple[bool, Row]]:
        """person_id -> (in the cohort, Row) of those of these people in the snapshot (the
        score columns are None for people without a stored score)."""
        found = self._search(set(person_ids))
        if len(found) < TAKE_FROM:
            rows = [[column[at].as_py() for column in self._columns] for at in found]
        else:
            taken = pa.array(found, pa.int64())
            columns = [column.take(taken).to_pylist() for column in self._columns]
            rows = [list(row) for row in zip(*columns, strict=True)]
        return {str(row[1]): (bool(row[0]), tuple(row[1:])) for row in rows}

    def _search(self, wanted: set[str]) -> list[int]:
        """Positions of these people: a binary search of the fence ids, then of the one block
        of the file's ids that can hold the person (a pass over every id, or a copy of them,
        would grow with the population)."""
        found = []
        for person in wanted:
            block = bisect_right(self._fence, person) - 1
            if block < 0:
                continue
            ids = self._ids.slice(block * BLOCK, BLOCK).to_pylist()
            at = bisect_left(ids, person)
            if at < len(ids) and ids[at] == person:
                found.append(block * BLOCK + at)
        return found

    def ranked(
        self, *, district: str | None = None, practice: str | None = None, limit: int | None = None
    ) -> list[Row]:
        """The scored members, highest risk first (the stored rank order), within a practice
        or district when given: a range read of the table sorted by that place and rank."""
        table = "by_practice" if practice else "by_district" if district else "by_county"
        place, rank = REGISTERS[table]
        where, params = [], []
        if practice:
            where.append("practice_code = ?")
            params.append(practice)
        if district:
            where.append("district = ?")
            params.append(district)
        sql = f"SELECT {_SELECT} FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {', '.join(c for c in (place, rank) if c)}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [tuple(r) for r in self._cursor().execute(sql, params).fetchall()]


def _array(table: pa.Table, name: str) -> pa.Array:
    """One column as one array (in place: the file holds one record batch)."""
    column = table.column(name)
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _mapped_people(path: Path) -> pa.Table:
    try:
        return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    except (OSError, pa.ArrowInvalid) as error:
        message = f"cannot read the scores export's people file {path}: {error}"
        raise ScoresFileError(message) from None


def open_exports(
    layout: Home, models: Mapping[str, Any], objections: Iterable[str]
) -> dict[str, ScoresFile]:
    """Each served champion's scores export at the stored snapshot, opened read-only. Where one
    is missing (a new champion, a new snapshot, a home where `carerisk score-all` has not run),
    the snapshot is scored now as `score-all` does and only the export written (one worker at a
    time: the others wait, then open what it wrote). `models`: outcome -> ServedModel."""
    fingerprint = snapshot_fingerprint(layout.store_path)
    champions = {name: champion_of(m) for name, m in models.items()}
    keys = {name: export_key(c, fingerprint) for name, c in champions.items()}
    folder = layout.scores_dir
    if any(not k.path(folder).exists() for k in keys.values()):
        with _export_lock(folder):
            missing = [champions[n] for n, k in keys.items() if not k.path(folder).exists()]
            if missing:
                names = ", ".join(f"{c.model_name} v{c.version}" for c in missing)
                log.info("no stored scores of %s at this snapshot: scoring it now", names)
                began = time.perf_counter()
                written = score_and_export(layout.store_path, folder, missing, objections)
                if {p.name for p in written} != {export_key(c, fingerprint).path(folder).name
                                                  for c in missing}:  # fmt: skip
                    raise ScoresFileError("the snapshot changed while it was scored; reload")
                log.info("scored and exported in %.1f s", time.perf_counter() - began)
    return {name: ScoresFile(key.path(folder), key) for name, key in keys.items()}


def champion_of(served: Any) -> Champion:
    """A served champion (serving.scoring.ServedModel) as models.score_all scores with it."""
    return Champion(
        served.outcome, served.bundle, str(served.name), str(served.version), str(served.run_id)
    )


@contextlib.contextmanager
def _export_lock(folder: Path) -> Iterator[None]:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(folder / ".export.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
