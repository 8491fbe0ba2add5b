"""Reading what an importer wrote, for the tests: tables as sorted tuples, and features
computed on the extract (through a DuckDB file with the nine contract tables, absent ones
empty, as the feature engine reads a store)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from features import contract
from features.engines import compute_features
from features.store_sql import literal


def rows(extract: Path, table: str, columns: list[str] | None = None) -> list[tuple[Any, ...]]:
    """The rows of one written table, sorted, as tuples of the given columns (default all)."""
    cols = ", ".join(columns or contract.table(table).column_names)
    path = extract / f"{table}.parquet"
    with duckdb.connect() as con:
        return con.execute(
            f"SELECT {cols} FROM read_parquet({literal(path)}) ORDER BY ALL"
        ).fetchall()


def manifest(extract: Path) -> dict[str, Any]:
    return json.loads((extract / "manifest.json").read_text())


def dropped(extract: Path, source: str) -> dict[str, str]:
    """source row -> reason, from the extract's list of dropped rows."""
    path = extract / "import" / "dropped.parquet"
    with duckdb.connect() as con:
        found = con.execute(
            f"SELECT source_row, reason FROM read_parquet({literal(path)}) WHERE source = ?",
            [source],
        ).fetchall()
    return {str(r): str(why) for r, why in found}


def dropped_reasons(extract: Path, source: str) -> list[str]:
    """The reason of every dropped row of `source`."""
    path = extract / "import" / "dropped.parquet"
    with duckdb.connect() as con:
        found = con.execute(
            f"SELECT reason FROM read_parquet({literal(path)}) WHERE source = ?", [source]
        ).fetchall()
    return [str(r[0]) for r in found]


def dropped_count(extract: Path, source: str) -> int:
    """How many rows of `source` the extract's list of dropped rows holds."""
    path = extract / "import" / "dropped.parquet"
    with duckdb.connect() as con:
        row = con.execute(
            f"SELECT count(*) FROM read_parquet({literal(path)}) WHERE source = ?", [source]
        ).fetchone()
    return int(row[0]) if row else 0


def store_of(extract: Path, store: Path) -> Path:
    """A DuckDB file holding the nine contract tables from the extract's files (a table with
    no file is empty): what the feature engine reads."""
    with duckdb.connect(str(store)) as con:
        for spec in contract.TABLES:
            con.execute(contract.create_table_sql(spec))
            path = extract / f"{spec.name}.parquet"
            if path.exists():
                names = ", ".join(f'"{c}"' for c in spec.column_names)
                con.execute(
                    f'INSERT INTO "{spec.name}" SELECT {names} FROM read_parquet({literal(path)})'
                )
    return store


def features_of(extract: Path, store: Path, day: date) -> pd.DataFrame:
    start = date.fromisoformat(manifest(extract)["start"])
    return compute_features(store_of(extract, store), day, data_start=start)
