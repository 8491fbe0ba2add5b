"""The feature snapshot: everyone's features at the latest index date, kept in the store."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from features.engines import Engine, compute_features
from features.registry import feature_names

SNAPSHOT_TABLE = "feature_snapshot"


def write_snapshot(
    store_path: Path,
    index_date: date,
    engine: Engine = "duckdb",
    *,
    frame: pd.DataFrame | None = None,
    spark: Any | None = None,
) -> int:
    """Store the features of everyone at D as `feature_snapshot`, replacing any older one.

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


def read_snapshot(store_path: Path, person_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """The stored snapshot (all people, or those asked for), sorted by person_id."""
    con = duckdb.connect(str(store_path), read_only=True)
    try:
        if not _has_table(con, SNAPSHOT_TABLE):
            raise LookupError(
                f"the store {store_path} has no {SNAPSHOT_TABLE}; run `carerisk features`"
            )
        if person_ids is None:
            frame = con.execute(f'SELECT * FROM "{SNAPSHOT_TABLE}" ORDER BY person_id').df()
        else:
            wanted = pd.DataFrame({"person_id": sorted(set(person_ids))}, dtype="str")
            con.register("wanted", wanted)
            frame = con.execute(
                f'SELECT s.* FROM "{SNAPSHOT_TABLE}" s JOIN wanted USING (person_id) '
                "ORDER BY person_id"
            ).df()
    finally:
        con.close()
    return frame


def descriptors(store_path: Path, person_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """person_id, district and practice_code per person (for registers)."""
    con = duckdb.connect(str(store_path), read_only=True)
    try:
        frame = con.execute(
            "SELECT person_id, district, practice_code FROM person ORDER BY person_id"
        ).df()
    finally:
        con.close()
    if person_ids is not None:
        frame = frame[frame["person_id"].isin(set(person_ids))].reset_index(drop=True)
    return frame


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchall()
    return bool(rows and rows[0][0])
