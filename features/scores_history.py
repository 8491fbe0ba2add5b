"""The scores history: the scores served at each snapshot, kept in the store.

One row per (snapshot date, outcome, person): the calibrated probability, the band, the model
name, version and run that scored the person, and the person's fairness descriptors at that
snapshot (the evaluation's groups), so that once the outcome's horizon has passed the monitor
joins what actually happened to the scores actually served, group by group. It also carries
what a service would serve: the person's practice, rank within practice, district and county
(RANK_SQL, the one rank rule of both engines) and the top reasons of each audience (compact
JSON text, models.score_all).

`carerisk score-all` writes it (models.score_all computes the rows); a later load withdraws the
rows of people who have objected since (features.store).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from features.fairness import FAIRNESS_GROUPS

if TYPE_CHECKING:
    from features.outcomes import Outcome

SCORES_TABLE = "scores_history"
KEY: tuple[str, ...] = ("snapshot_date", "outcome", "person_id")
COLUMNS: dict[str, str] = {
    "snapshot_date": "DATE",
    "outcome": "VARCHAR",
    "person_id": "VARCHAR",
    "probability": "DOUBLE",
    "band": "VARCHAR",
    "model_name": "VARCHAR",
    "model_version": "VARCHAR",
    "run_id": "VARCHAR",
    **dict.fromkeys(FAIRNESS_GROUPS, "VARCHAR"),
    "practice_code": "VARCHAR",
    "rank_practice": "INTEGER",
    "rank_district": "INTEGER",
    "rank_county": "INTEGER",
    "reasons_clinical": "VARCHAR",
    "reasons_non_clinical": "VARCHAR",
}
SCORED_AT = "scored_at"
# audience -> its reasons column; an audience is a roles' view (serving/roles.py): the clinical
# roles see every reason, the fire service only non-clinical ones
REASON_COLUMNS: dict[str, str] = {
    "clinical": "reasons_clinical",
    "non_clinical": "reasons_non_clinical",
}
# rank column -> the place it ranks within (besides snapshot date and outcome); county: all
RANK_SCOPES: dict[str, tuple[str, ...]] = {
    "rank_practice": ("practice_code",),
    "rank_district": ("district",),
    "rank_county": (),
}
RANK_COLUMNS: tuple[str, ...] = tuple(RANK_SCOPES)
RANKED: tuple[str, ...] = tuple(c for c in COLUMNS if c not in RANK_SCOPES)  # before ranking


def rank_sql(scope: tuple[str, ...]) -> str:
    """One rank: 1 = highest probability, ties broken by person_id. Plain SQL that DuckDB and
    Spark SQL both run, so the two engines rank by the same text."""
    within = ", ".join(["snapshot_date", "outcome", *scope])
    return (
        f"CAST(row_number() OVER (PARTITION BY {within} "
        "ORDER BY probability DESC, person_id ASC) AS INTEGER)"
    )


def ranked_sql(source: str) -> str:
    """SELECT the scores of `source` (a table or view holding RANKED) with the ranks added,
    in COLUMNS order."""
    ranks = {c: f"{rank_sql(scope)} AS {c}" for c, scope in RANK_SCOPES.items()}
    return f"SELECT {', '.join(ranks.get(c, c) for c in COLUMNS)} FROM {source}"


def rank_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """The scores (RANKED columns) with their ranks, by DuckDB, in COLUMNS order."""
    missing = [c for c in RANKED if c not in scores.columns]
    if missing:
        raise ValueError(f"scores frame lacks column(s) {', '.join(missing)}")
    with duckdb.connect() as con:
        con.register("unranked", scores[list(RANKED)])
        return con.execute(ranked_sql("unranked")).df()


def create_sql(database: str | None = None) -> str:
    """The scores table, without a key constraint (an in-memory index at national size):
    `write_scores` replaces a (snapshot date, outcome) whole, so KEY stays unique."""
    table = _name(database)
    cols = ", ".join(f'"{c}" {t}' for c, t in COLUMNS.items())
    return f'CREATE TABLE IF NOT EXISTS {table} ({cols}, "{SCORED_AT}" TIMESTAMP)'


def add_missing_columns(con: duckdb.DuckDBPyConnection, database: str | None = None) -> None:
    """A table made before a column was kept gains it (NULL in its rows, which are kept)."""
    for column, kind in COLUMNS.items():
        con.execute(f'ALTER TABLE {_name(database)} ADD COLUMN IF NOT EXISTS "{column}" {kind}')


def _name(database: str | None) -> str:
    return f'{database}.main."{SCORES_TABLE}"' if database else f'"{SCORES_TABLE}"'


def _exists(con: duckdb.DuckDBPyConnection, database: str | None) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND database_name = "
        "coalesce(?, current_database())",
        [SCORES_TABLE, database],
    ).fetchall()
    return bool(rows and rows[0][0])


def withdraw(con: duckdb.DuckDBPyConnection, people: str, database: str | None = None) -> int:
    """Delete the rows of the people in table `people` (a person_id column) and rank the rest
    of their (snapshot date, outcome)s again, so ranks stay 1..n; returns how many."""
    if not _exists(con, database):
        return 0
    add_missing_columns(con, database)
    table, chosen = _name(database), f"person_id IN (SELECT person_id FROM {people})"
    touched = con.execute(
        f"SELECT DISTINCT snapshot_date, outcome FROM {table} WHERE {chosen}"
    ).fetchall()
    rows = con.execute(f"DELETE FROM {table} WHERE {chosen}").fetchall()
    for day, outcome in touched:
        _rerank(con, table, day, outcome)
    return int(rows[0][0]) if rows else 0


def _rerank(con: duckdb.DuckDBPyConnection, table: str, day: date, outcome: str) -> None:
    ranks = ", ".join(f"{rank_sql(scope)} AS {c}" for c, scope in RANK_SCOPES.items())
    sets = ", ".join(f'"{c}" = r.{c}' for c in RANK_SCOPES)
    con.execute(
        f"UPDATE {table} AS s SET {sets} FROM (SELECT person_id, {ranks} FROM {table} "
        "WHERE snapshot_date = ? AND outcome = ?) AS r "
        "WHERE s.snapshot_date = ? AND s.outcome = ? AND s.person_id = r.person_id",
        [day, outcome, day, outcome],
    )


@dataclass(frozen=True)
class Written:
    """What writing one (snapshot date, outcome) did."""

    snapshot_date: date
    outcome: str
    model_name: str
    model_version: str
    rows: int
    unchanged: bool  # the same scores were there already: nothing written
    replaced: dict[str, int]  # model version -> rows of earlier scores replaced
    withdrawn: int  # rows of people on the objections list removed

    def to_dict(self) -> dict[str, object]:
        return {
            "snapshot_date": self.snapshot_date.isoformat(),
            "outcome": self.outcome,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "rows": self.rows,
            "unchanged": self.unchanged,
            "replaced": self.replaced,
            "withdrawn": self.withdrawn,
        }


def write_scores(
    store_path: Path, scores: pd.DataFrame, objections: Iterable[str] = ()
) -> list[Written]:
    """Store the scores of each (snapshot date, outcome) in `scores`, in one transaction.

    Idempotent: a (snapshot date, outcome) whose stored rows are exactly these scores (people,
    probabilities, bands, ranks, reasons, model and run) is left as it is, scored_at included.
    A table from before the ranks and reasons gains their columns, its rows kept. Otherwise its
    rows are replaced whole (a new champion for the same snapshot). Rows of people on the
    objections list are removed from the whole history.
    """
    missing = [c for c in COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"scores frame lacks column(s) {', '.join(missing)}")
    frame = scores[list(COLUMNS)].copy()
    frame["snapshot_date"] = pd.to_datetime(frame["snapshot_date"]).dt.date
    with duckdb.connect(str(store_path)) as con:
        con.register("scores_frame", frame)
        try:
            return _write_source(con, "scores_frame", objections)
        finally:
            con.unregister("scores_frame")


def write_scores_parquet(
    store_path: Path, parquet: Path, objections: Iterable[str] = ()
) -> list[Written]:
    """`write_scores` from Parquet files (a folder of partitions, COLUMNS), read by DuckDB:
    the rows never pass through pandas, so memory does not grow with the population."""
    found = sorted(str(p) for p in Path(parquet).rglob("*.parquet"))
    if not found:
        raise ValueError(f"no Parquet files of scores in {parquet}")
    with duckdb.connect(str(store_path)) as con:
        files = ", ".join(_literal(p) for p in found)
        names = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in COLUMNS.items())
        con.execute(
            f"CREATE TEMP VIEW scores_parquet AS SELECT {names} FROM read_parquet([{files}])"
        )
        return _write_source(con, "scores_parquet", objections)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _write_source(
    con: duckdb.DuckDBPyConnection, source: str, objections: Iterable[str]
) -> list[Written]:
    """Write the scores of the view or table `source` (COLUMNS), in one transaction."""
    out: list[Written] = []
    con.execute(create_sql())
    add_missing_columns(con)
    groups = con.execute(
        f"SELECT DISTINCT snapshot_date, outcome FROM {source} ORDER BY 1, 2"
    ).fetchall()
    con.execute("BEGIN TRANSACTION")
    try:
        withdrawn = _withdraw_list(con, objections)
        for day, outcome in groups:
            when = day if isinstance(day, date) else pd.Timestamp(str(day)).date()
            out.append(_write_one(con, source, when, str(outcome), withdrawn))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return out


def _withdraw_list(con: duckdb.DuckDBPyConnection, objections: Iterable[str]) -> int:
    people = pd.DataFrame({"person_id": sorted(set(objections))}, dtype="str")
    if people.empty:
        return 0
    con.register("objectors_frame", people)
    try:
        return withdraw(con, "objectors_frame")
    finally:
        con.unregister("objectors_frame")


def _write_one(
    con: duckdb.DuckDBPyConnection, source: str, day: date, outcome: str, withdrawn: int
) -> Written:
    names = ", ".join(f'"{c}"' for c in COLUMNS)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW new_scores AS SELECT {names} FROM {source} "
        f"WHERE snapshot_date = {_literal(day.isoformat())}::DATE AND outcome = {_literal(outcome)}"
    )
    models = con.execute("SELECT DISTINCT model_name, model_version FROM new_scores").fetchall()
    if len(models) != 1:
        raise ValueError(f"scores of {outcome} at {day} come from more than one model")
    name, version = (str(v) for v in models[0])
    twice = con.execute(
        "SELECT person_id FROM new_scores GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 1"
    ).fetchone()
    if twice:
        raise ValueError(f"scores of {outcome} at {day} list person {twice[0]} twice")
    rows = int(con.execute("SELECT count(*) FROM new_scores").fetchone()[0])  # type: ignore[index]
    where = "snapshot_date = ? AND outcome = ?"
    stored = con.execute(
        f'SELECT model_version, count(*) FROM "{SCORES_TABLE}" WHERE {where} GROUP BY 1',
        [day, outcome],
    ).fetchall()
    if _same(con, rows, stored, day, outcome):
        return Written(day, outcome, name, version, rows, True, {}, withdrawn)
    con.execute(f'DELETE FROM "{SCORES_TABLE}" WHERE {where}', [day, outcome]).fetchall()
    con.execute(
        f'INSERT INTO "{SCORES_TABLE}" ({names}, "{SCORED_AT}") '
        f"SELECT {names}, now()::TIMESTAMP FROM new_scores"
    ).fetchall()
    replaced = {str(v): int(n) for v, n in stored}
    return Written(day, outcome, name, version, rows, False, replaced, withdrawn)


def _same(
    con: duckdb.DuckDBPyConnection,
    rows: int,
    stored: list[tuple[object, ...]],
    day: date,
    outcome: str,
) -> bool:
    """The stored rows of (day, outcome) are exactly the new ones."""
    if sum(int(n) for _, n in stored) != rows:  # type: ignore[call-overload]
        return False
    same = " AND ".join(f'n."{c}" IS NOT DISTINCT FROM s."{c}"' for c in COLUMNS)
    found = con.execute(
        f'SELECT count(*) FROM new_scores n JOIN "{SCORES_TABLE}" s '
        f"ON s.person_id = n.person_id AND s.snapshot_date = ? AND s.outcome = ? WHERE {same}",
        [day, outcome],
    ).fetchall()
    return bool(found) and int(found[0][0]) == rows


def read_scores(
    store_path: Path,
    outcome: str,
    snapshot_dates: Iterable[date] | None = None,
    *,
    reasons: bool = True,
) -> pd.DataFrame:
    """The stored scores of an outcome (at the dates asked for), by date and person; without
    the reasons columns when `reasons` is False (the monitor does not read them)."""
    wanted = [c for c in [*COLUMNS, SCORED_AT] if reasons or c not in REASON_COLUMNS.values()]
    with duckdb.connect(str(store_path), read_only=True) as con:
        if not _exists(con, None):
            return pd.DataFrame({c: pd.Series(dtype="object") for c in wanted})
        columns = _stored_columns(con, wanted)
        dates = None if snapshot_dates is None else sorted(set(snapshot_dates))
        sql = f'SELECT {columns} FROM "{SCORES_TABLE}" WHERE outcome = ?'
        params: list[object] = [outcome]
        if dates is not None:
            if not dates:
                sql += " AND false"
            else:
                sql += f" AND snapshot_date IN ({', '.join('?' for _ in dates)})"
                params += dates
        found = con.execute(sql + " ORDER BY snapshot_date, person_id", params).df()
    found["snapshot_date"] = [pd.Timestamp(d).date() for d in found["snapshot_date"]]
    return found


def _stored_columns(con: duckdb.DuckDBPyConnection, wanted: list[str]) -> str:
    """The SELECT list of these columns (of COLUMNS and scored_at); a column an older table
    lacks reads as NULL (a read-only reader cannot add it)."""
    present = {
        str(r[0])
        for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
            "AND database_name = current_database()",
            [SCORES_TABLE],
        ).fetchall()
    }
    kinds = {**COLUMNS, SCORED_AT: "TIMESTAMP"}
    return ", ".join(
        f'"{c}"' if c in present else f'CAST(NULL AS {kinds[c]}) AS "{c}"' for c in wanted
    )


def scored_snapshots(store_path: Path, outcome: str) -> pd.DataFrame:
    """snapshot_date, model_name, model_version, rows: what the history holds of an outcome."""
    with duckdb.connect(str(store_path), read_only=True) as con:
        if not _exists(con, None):
            return pd.DataFrame(columns=["snapshot_date", "model_name", "model_version", "rows"])
        found = con.execute(
            "SELECT snapshot_date, model_name, model_version, count(*) AS rows "
            f'FROM "{SCORES_TABLE}" WHERE outcome = ? GROUP BY ALL ORDER BY snapshot_date',
            [outcome],
        ).df()
    found["snapshot_date"] = [pd.Timestamp(d).date() for d in found["snapshot_date"]]
    return found


@dataclass(frozen=True)
class Matured:
    """The scores of an outcome whose horizon has passed, joined to what happened."""

    rows: pd.DataFrame  # the history's columns but the reasons, then label, died_before_event
    pending: pd.DataFrame  # snapshot_date, model_version, rows, matures: not matured yet
    unmatched: dict[str, int]  # snapshot date -> scores whose person the store no longer has


def matures_on(day: date, horizon_months: int) -> date:
    """The first day a score at `day` can be judged: its whole horizon lies in the data."""
    from features.labels import add_months

    return add_months(day, horizon_months)


def matured_outcomes(
    store_path: Path, outcome: Outcome, data_end: date, objections: Iterable[str] = ()
) -> Matured:
    """Every stored score of `outcome` whose horizon ends by `data_end` (the day after the
    horizon is within the data: the rule of the training's index dates), with its label at
    its own snapshot date from the store as it is now. Objectors are left out."""
    from features.engines import open_sources
    from features.labels import labels

    blocked = set(objections)
    history = scored_snapshots(store_path, outcome.name)
    history["matures"] = [matures_on(d, outcome.horizon_months) for d in history["snapshot_date"]]
    ripe = history["matures"] <= data_end + timedelta(days=1)
    pending = history.loc[~ripe].reset_index(drop=True)
    parts, unmatched = [], {}
    days = sorted({pd.Timestamp(d).date() for d in history.loc[ripe, "snapshot_date"]})
    if days:
        scores = read_scores(store_path, outcome.name, days, reasons=False)
        scores = scores[~scores["person_id"].isin(blocked)]
        with open_sources(store_path) as src:
            for day, part in scores.groupby("snapshot_date", sort=True):
                when = pd.Timestamp(str(day)).date()
                found = labels(src, outcome, when).to_pyarrow().to_pandas()
                joined = part.merge(
                    found[["person_id", "label", "died_before_event"]], on="person_id"
                )
                unmatched[when.isoformat()] = len(part) - len(joined)
                parts.append(joined)
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return Matured(rows, pending, unmatched)
