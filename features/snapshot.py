"""The feature snapshot: everything serving needs about everyone at the latest index date.

One row per person alive and registered at D: the registry's features, a `cohort_<outcome>`
flag per registered outcome (from features.cohorts, the code that builds training cohorts) and
the descriptors the service shows (district, practice_code). Serving applies no rule of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from features.engines import Engine, compute_features, open_sources
from features.feature_list import feature_names
from features.outcomes import Outcome

SNAPSHOT_TABLE = "feature_snapshot"
PLACE_COLUMNS: tuple[str, ...] = ("district", "practice_code")


def write_snapshot(
    store_path: Path,
    index_date: date,
    outcomes: Iterable[Outcome],
    engine: Engine = "duckdb",
    *,
    frame: pd.DataFrame | None = None,
    spark: Any | None = None,
) -> int:
    """Store everyone's features at D, each outcome's cohort flag and the people's places as
    `feature_snapshot`, replacing any older one.

    Pass `frame` (from compute_features) to avoid computing the features twice.
    Returns the number of rows written.
    """
    feats = (
        frame
        if frame is not None
        else compute_features(store_path, index_date, engine, spark=spark)
    )
    missing = [c for c in ["person_id", *feature_names()] if c not in feats.columns]
    if missing:
        raise ValueError(f"feature frame lacks column {', '.join(missing)}")
    snapshot = feats[["person_id", *feature_names()]].copy()
    snapshot.insert(1, "index_date", pd.Timestamp(index_date).date())
    extra = _cohorts_and_places(store_path, index_date, list(outcomes), engine, spark)
    unknown = snapshot["person_id"][~snapshot["person_id"].isin(extra.index)]
    if len(unknown):
        raise ValueError(f"feature frame row for {unknown.iloc[0]} has no person in {store_path}")
    for column in extra.columns:
        snapshot[column] = extra[column].reindex(snapshot["person_id"]).to_numpy()
    con = duckdb.connect(str(store_path))
    try:
        con.register("snapshot_frame", snapshot)
        con.execute("BEGIN TRANSACTION")
        con.execute(f'CREATE OR REPLACE TABLE "{SNAPSHOT_TABLE}" AS SELECT * FROM snapshot_frame')
        con.execute("COMMIT")
        con.unregister("snapshot_frame")
    finally:
        con.close()
    return len(snapshot)


@contextmanager
def _snapshot_store(store_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The store opened read-only, refused when it has no snapshot."""
    con = duckdb.connect(str(store_path), read_only=True)
    try:
        if not _has_table(con, SNAPSHOT_TABLE):
            raise LookupError(
                f"the store {store_path} has no {SNAPSHOT_TABLE}; run `carerisk features`"
            )
        yield con
    finally:
        con.close()


def read_snapshot(store_path: Path, person_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """The stored snapshot (all people, or those asked for), sorted by person_id."""
    with _snapshot_store(store_path) as con:
        if person_ids is None:
            frame = con.execute(f'SELECT * FROM "{SNAPSHOT_TABLE}" ORDER BY person_id').df()
        else:
            wanted = pd.DataFrame({"person_id": sorted(set(person_ids))}, dtype="str")
            con.register("wanted", wanted)
            frame = con.execute(
                f'SELECT s.* FROM "{SNAPSHOT_TABLE}" s JOIN wanted USING (person_id) '
                "ORDER BY person_id"
            ).df()
    return frame


def snapshot_fingerprint(store_path: Path) -> str:
    """The snapshot table's index date, row count and the XOR of its rows' hashes (a rewrite at
    the same date with other values changes it; 600,000 rows take some tens of milliseconds)."""
    with _snapshot_store(store_path) as con:
        row = con.execute(
            f'SELECT min(index_date), count(*), bit_xor(hash(s)) FROM "{SNAPSHOT_TABLE}" s'
        ).fetchone()
    return "/".join(str(v) for v in row or ())


def read_places_and_cohorts(store_path: Path, outcomes: Iterable[Outcome]) -> pd.DataFrame:
    """person_id, index_date, the places and these outcomes' cohort flags of everyone in the
    snapshot, sorted by person_id: what the service needs of a person besides the scores."""
    wanted = [*(o.cohort_column for o in outcomes), *PLACE_COLUMNS]
    with _snapshot_store(store_path) as con:
        present = {
            str(r[0])
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                [SNAPSHOT_TABLE],
            ).fetchall()
        }
        missing = [c for c in wanted if c not in present]
        if missing:
            raise LookupError(
                f"the feature snapshot has no {', '.join(missing)}: it was written before "
                "these were kept, or without these outcomes registered; re-run "
                "`carerisk features`"
            )
        names = ", ".join(f'"{c}"' for c in ["person_id", "index_date", *wanted])
        return con.execute(f'SELECT {names} FROM "{SNAPSHOT_TABLE}" ORDER BY person_id').df()


def _cohorts_and_places(
    store_path: Path, day: date, outcomes: list[Outcome], engine: Engine, spark: Any | None
) -> pd.DataFrame:
    """Each outcome's cohort flag and the places of everyone in `person`, by person_id."""
    from features.cohorts import cohort_flags

    with open_sources(store_path, engine, spark) as src:
        places = src["person"].select("person_id", *PLACE_COLUMNS)
        table = cohort_flags(src, outcomes, day).join(places, "person_id")
        extra = table.to_pyarrow().to_pandas()
    return extra.set_index(extra["person_id"].astype(str)).drop(columns="person_id")


def missing_columns(frame: pd.DataFrame, outcomes: Iterable[Outcome]) -> list[str]:
    """The cohort flags and places a snapshot must carry for these outcomes, where absent."""
    wanted = [*(o.cohort_column for o in outcomes), *PLACE_COLUMNS]
    return [c for c in wanted if c not in frame.columns]


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchall()
    return bool(rows and rows[0][0])


def read_snapshot_people(store_path: Path) -> pd.DataFrame:
    """The snapshot with each person's GP system from `person` (the fairness descriptors and
    the monitor's groups need it; the service does not), sorted by person_id."""
    frame = read_snapshot(store_path)
    con = duckdb.connect(str(store_path), read_only=True)
    try:
        systems = con.execute("SELECT person_id, gp_system FROM person").df()
    finally:
        con.close()
    found = systems.set_index("person_id")["gp_system"]
    frame["gp_system"] = found.reindex(frame["person_id"]).to_numpy()
    if frame["gp_system"].isna().any():
        lost = frame["person_id"][frame["gp_system"].isna()].iloc[0]
        raise ValueError(
            f"snapshot row for {lost} has no person in {store_path}; run `carerisk features`"
        )
    return frame


def copy_snapshot_people(store_path: Path, target: Path) -> int:
    """read_snapshot_people's rows, sorted by person_id, as a Parquet file at `target` (for an
    engine that reads files: Spark); returns the number of rows."""
    with _snapshot_store(store_path) as con:
        lost = con.execute(
            f'SELECT s.person_id FROM "{SNAPSHOT_TABLE}" s ANTI JOIN person p USING (person_id) '
            "ORDER BY 1 LIMIT 1"
        ).fetchall()
        if lost:
            raise ValueError(
                f"snapshot row for {lost[0][0]} has no person in {store_path}; "
                "run `carerisk features`"
            )
        target_text = str(target).replace("'", "''")
        con.execute(
            f'COPY (SELECT s.*, p.gp_system FROM "{SNAPSHOT_TABLE}" s JOIN person p '
            f"USING (person_id) ORDER BY s.person_id) TO '{target_text}' (FORMAT parquet)"
        )
        found = con.execute(f'SELECT count(*) FROM "{SNAPSHOT_TABLE}"').fetchall()
    return int(found[0][0])
