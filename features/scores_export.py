"""The scores a service reads: one read-only DuckDB file per outcome, champion and snapshot.

`carerisk score-all` writes the scores history into the store (features.scores_history) and,
from the same rows, one export per outcome into `<home>/serving/`. The service opens the
exports of its champions and snapshot read-only and never holds the store open (DuckDB allows
no writer while another process has the file open, and `refresh`, `score-all` and `load` write
the store while the service runs).

An export holds four tables, each sorted for one read the service does:

- `people`: everyone in the snapshot, by person_id (with an index), their places, whether they
  are in the outcome's cohort and, for cohort members scored, the score columns;
- `by_practice`, `by_district`, `by_county`: the scored members sorted by (place, rank), so a
  register is a range read (DuckDB skips row groups and segments by their min/max).

Its name carries the outcome, snapshot date, champion version and a digest of the champion's
model, version and run and of the snapshot's fingerprint (features.snapshot), so a new champion
or a rewritten snapshot names a file that does not exist yet. It is written to a temporary name
and renamed, so a reader never sees half a file; `score-all` then keeps the two newest exports of
each outcome (`prune`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

KEEP = 2  # exports kept per outcome: the newest, and the one a service may not have left yet
FORMAT = 2  # bumped when the tables change: older exports are then written again
PEOPLE_COLUMNS: tuple[str, ...] = ("person_id", "district", "practice_code", "in_cohort")
SCORE_COLUMNS: tuple[str, ...] = (
    "probability",
    "band",
    "rank_practice",
    "rank_district",
    "rank_county",
    "reasons_clinical",
    "reasons_non_clinical",
)
# register table -> its sort order (and the place column its range reads filter on)
REGISTERS: dict[str, tuple[str | None, str]] = {
    "by_practice": ("practice_code", "rank_practice"),
    "by_district": ("district", "rank_district"),
    "by_county": (None, "rank_county"),
}


@dataclass(frozen=True)
class ExportKey:
    """What one export holds: an outcome's scores by one champion at one snapshot."""

    outcome: str
    model_name: str
    model_version: str
    run_id: str
    fingerprint: str  # features.snapshot.snapshot_fingerprint: index date/rows/hash

    @property
    def snapshot_date(self) -> str:
        return self.fingerprint.split("/", 1)[0]

    def digest(self) -> str:
        text = json.dumps({**asdict(self), "format": FORMAT}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def path(self, folder: Path) -> Path:
        name = f"scores-{self.outcome}-{self.snapshot_date}-v{self.model_version}-{self.digest()}"
        return folder / f"{name}.duckdb"


def people_path(export: Path) -> Path:
    """The export's `people` table as an uncompressed Arrow IPC file beside it, sorted by
    person_id: a worker memory-maps it and finds a person by binary search, with no query."""
    return export.with_suffix(".people.arrow")


def write_export(
    folder: Path, key: ExportKey, people: pd.DataFrame, scores: pd.DataFrame | Path
) -> Path:
    """Write the export of `key` from `people` (PEOPLE_COLUMNS: everyone in the snapshot) and
    `scores` (the scores history's rows of this outcome and snapshot: a frame, or a folder of
    Parquet files of every outcome's scores, which DuckDB reads without pandas); returns its
    path."""
    _check_columns(key, "people", list(people.columns), PEOPLE_COLUMNS)
    if isinstance(scores, pd.DataFrame):
        _check_columns(key, "scores", list(scores.columns), SCORE_INPUT)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = key.path(folder)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    tmp_people = tmp.with_name(tmp.name + ".arrow")
    for stale in (tmp, tmp.with_name(tmp.name + ".wal"), tmp_people):
        stale.unlink(missing_ok=True)
    try:
        _write(tmp, key, people, scores)
        _write_people(tmp, tmp_people)
        for written in (tmp, tmp_people):
            os.chmod(written, 0o600)
        os.replace(tmp_people, people_path(final))  # first: the .duckdb file marks it complete
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_people.unlink(missing_ok=True)
    return final


def prune(folder: Path, outcome: str, keep: int = KEEP) -> list[Path]:
    """Remove all but the `keep` newest exports of `outcome`; returns those removed. A service
    that has one open reads on (the file goes when it closes it)."""
    found = sorted(
        folder.glob(f"scores-{outcome}-*.duckdb"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for old in found[keep:]:
        old.unlink(missing_ok=True)
        people_path(old).unlink(missing_ok=True)
    return found[keep:]


SCORE_INPUT: tuple[str, ...] = ("person_id", "outcome", "model_version", *SCORE_COLUMNS)


def _check_columns(key: ExportKey, name: str, found: list[str], wanted: tuple[str, ...]) -> None:
    missing = [c for c in wanted if c not in found]
    if missing:
        raise ValueError(f"the {name} frame of {key.outcome} lacks {', '.join(missing)}")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _scores_source(
    con: duckdb.DuckDBPyConnection, key: ExportKey, scores: pd.DataFrame | Path
) -> None:
    """The scores as the view `scores_frame`: the frame, or this outcome's Parquet rows."""
    if isinstance(scores, pd.DataFrame):
        con.register("scores_input", scores[list(SCORE_INPUT)])
        con.execute("CREATE TEMP VIEW scores_frame AS SELECT * FROM scores_input")
        return
    found = sorted(str(p) for p in Path(scores).rglob("*.parquet"))
    if not found:
        raise ValueError(f"no Parquet files of scores in {scores}")
    files = ", ".join(_literal(p) for p in found)
    picked = ", ".join(f'"{c}"' for c in SCORE_INPUT)
    con.execute(
        f"CREATE TEMP VIEW scores_frame AS SELECT {picked} FROM read_parquet([{files}]) "
        f"WHERE outcome = {_literal(key.outcome)}"
    )
    _check_columns(
        key,
        "scores",
        [str(r[0]) for r in con.execute("DESCRIBE scores_frame").fetchall()],
        SCORE_INPUT,
    )


def _check(con: duckdb.DuckDBPyConnection, key: ExportKey) -> None:
    """The scores are this outcome's and champion's, of people once each, all in its cohort."""
    other = con.execute(
        "SELECT person_id, outcome, model_version FROM scores_frame WHERE outcome <> ? "
        "OR CAST(model_version AS VARCHAR) <> ? LIMIT 1",
        [key.outcome, key.model_version],
    ).fetchone()
    if other:
        raise ValueError(
            f"scores row of {other[0]} is {other[1]} v{other[2]}, "
            f"not {key.outcome} v{key.model_version}"
        )
    twice = con.execute(
        "SELECT person_id FROM people_frame GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 1"
    ).fetchone()
    if twice:
        raise ValueError(f"the snapshot lists person {twice[0]} twice")
    stray = con.execute(
        "SELECT s.person_id FROM scores_frame s WHERE NOT EXISTS (SELECT 1 FROM people_frame p "
        "WHERE p.person_id = s.person_id AND coalesce(p.in_cohort, false)) LIMIT 1"
    ).fetchone()
    if stray:
        raise ValueError(
            f"scores of {key.outcome} hold {stray[0]}, who is not in its cohort at the "
            f"snapshot {key.snapshot_date}; run `carerisk score-all` after `carerisk features`"
        )


def _write(path: Path, key: ExportKey, people: pd.DataFrame, scores: pd.DataFrame | Path) -> None:
    picked = ", ".join(f's."{c}"' for c in SCORE_COLUMNS)
    with duckdb.connect(str(path)) as con:
        con.register("people_frame", people[list(PEOPLE_COLUMNS)])
        _scores_source(con, key, scores)
        _check(con, key)
        con.execute(
            "CREATE TABLE people AS SELECT p.person_id::VARCHAR AS person_id, "
            "p.district::VARCHAR AS district, p.practice_code::VARCHAR AS practice_code, "
            f"coalesce(p.in_cohort, false)::BOOLEAN AS in_cohort, {picked} "
            "FROM people_frame p LEFT JOIN scores_frame s USING (person_id) ORDER BY 1"
        )
        con.execute("CREATE UNIQUE INDEX people_person_id ON people (person_id)")
        for table, (place, rank) in REGISTERS.items():
            order = ", ".join(c for c in (place, rank) if c)
            con.execute(
                f"CREATE TABLE {table} AS SELECT * EXCLUDE (in_cohort) FROM people "
                f"WHERE probability IS NOT NULL ORDER BY {order}"
            )
        con.execute(
            "CREATE TABLE meta AS SELECT ? AS outcome, ? AS model_name, ? AS model_version, "
            "? AS run_id, ? AS fingerprint, ?::DATE AS snapshot_date, ? AS format",
            [key.outcome, key.model_name, key.model_version, key.run_id, key.fingerprint,
             key.snapshot_date, FORMAT],
        )  # fmt: skip
        con.execute("CHECKPOINT")


def _write_people(export: Path, out: Path) -> None:
    """The `people` table, in person_id order, as one uncompressed Arrow record batch (large
    strings: the reasons of millions of people pass 2 GiB)."""
    with duckdb.connect(str(export), read_only=True) as con:
        table = con.sql("SELECT * FROM people ORDER BY person_id").to_arrow_table()
    fields = [
        pa.field(f.name, pa.large_string()) if pa.types.is_string(f.type) else f
        for f in table.schema
    ]
    table = table.cast(pa.schema(fields)).combine_chunks()
    if table.num_rows > 1 and not _strictly_increasing(table.column("person_id")):
        raise ValueError(f"the people of {export.name} are not in person_id order")
    with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max(table.num_rows, 1))


def _strictly_increasing(ids: pa.ChunkedArray) -> bool:
    """Every id above the one before (binary order, as Python compares str)."""
    head, tail = ids.slice(0, len(ids) - 1), ids.slice(1)
    return bool(pc.all(pc.less(head, tail)).as_py())
