"""Reading what an importer wrote, for the tests: tables as sorted tuples, the extract loaded
by the real `carerisk load` (its rows reconciled with what the importer wrote), and features
computed from the loaded store."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from typer.testing import CliRunner

from carerisk.cli import app
from features import contract
from features.coverage import from_block, read_store_coverage
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


def carerisk(home: Path, *args: str) -> tuple[int, str]:
    """Run the real command line on `home`: (exit code, output)."""
    result = CliRunner().invoke(app, ["--home", str(home), *args])
    return result.exit_code, result.output


def load(extract: Path, home: Path) -> dict[str, Any]:
    """`carerisk load EXTRACT --json` into `home`'s store; the load report."""
    code, out = carerisk(home, "load", str(extract), "--json")
    assert code == 0, out
    report: dict[str, Any] = json.loads(out)
    return report


def reconcile(extract: Path, report: dict[str, Any]) -> None:
    """The load took every row the importer wrote, table by table, quarantined none, and
    kept the importer's coverage: absent tables loaded no rows, the same columns not supplied;
    and every source table's rows read were written or dropped (with a reason, listed)."""
    cover = from_block(manifest(extract)["coverage"], "manifest.json")
    written = manifest(extract)["rows"]
    assert report["ok"] and report["clean"], report["reasons"]
    assert report["coverage"] == cover.summary()
    for table in report["tables"]:
        name = table["table"]
        assert table["state"] == cover.state(name), name
        assert table["rows_read"] == table["rows_loaded"] == written.get(name, 0), name
        assert table["not_supplied"] == list(cover.not_supplied.get(name, ())), name
        if cover.is_absent(name):
            assert table["rows_read"] == 0 and not (extract / f"{name}.parquet").exists(), name
    for source, counts in manifest(extract)["coverage"]["sources"].items():
        lost = sum(counts["dropped"].values())
        assert counts["read"] == counts["written"] + lost, source
        assert lost == dropped_count(extract, source), source


def loaded(extract: Path, home: Path) -> Path:
    """The store of `home` after the real load of `extract`, reconciled, holding row for row
    what the importer wrote."""
    reconcile(extract, load(extract, home))
    store = home / "store.duckdb"
    for spec in contract.TABLES:
        if (extract / f"{spec.name}.parquet").exists():
            assert stored_rows(store, spec.name) == rows(extract, spec.name), spec.name
    return store


def stored_rows(store: Path, table: str) -> list[tuple[Any, ...]]:
    """The rows of one contract table of a store, sorted, as tuples of its contract columns."""
    cols = ", ".join(f'"{c}"' for c in contract.table(table).column_names)
    with duckdb.connect(str(store), read_only=True) as con:
        return con.execute(f'SELECT {cols} FROM "{table}" ORDER BY ALL').fetchall()


def features_of(store: Path, day: date) -> pd.DataFrame:
    """Every feature at `day`, computed from a loaded store as `carerisk features` does."""
    return compute_features(store, day)


def missing_features(store: Path) -> list[str]:
    """The registry features the store's source cannot give (features.coverage)."""
    from features.feature_list import FEATURES

    return read_store_coverage(store).missing_features(FEATURES)


def assert_missing_for_everyone(frame: pd.DataFrame, store: Path) -> list[str]:
    """Every feature the store's source cannot give is missing (NULL) in every row, never
    zero; the names of those features."""
    missing = missing_features(store)
    for name in missing:
        assert frame[name].isna().all(), name
    return missing
