"""What both importers share: candidate rows with a drop reason, the contract extract written
from them, and the manifest with its coverage block.

An importer builds, in one DuckDB connection, a candidate table per source (one row per source
row, in `cand_<source>`, with `src_row` naming the row and `reason` NULL when it is written),
and one query per contract table over the candidates. This module turns those into files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import duckdb

from features import contract
from features.store_sql import literal, quote

State = Literal["mapped", "proxy", "absent"]
DROPPED_FILE = "import/dropped.parquet"  # every dropped source row, with its reason


class SourceError(ValueError):
    """Input that cannot be imported; the message names the table, column and row (or the
    resource, field and line)."""


@dataclass
class Coverage:
    """How one contract table is filled: its state, the sources, the columns not supplied."""

    state: State
    sources: list[str] = field(default_factory=list)
    not_supplied: list[str] = field(default_factory=list)
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "sources": self.sources}
        if self.state == "absent":
            out["reason"] = self.reason
        else:
            out["not_supplied"] = self.not_supplied
        return out


@dataclass
class Plan:
    """An importer's result before it is written: a query per written contract table (the
    contract's columns, by name) and the coverage of all nine tables."""

    source: dict[str, str]
    maps: dict[str, str]
    tables: dict[str, Coverage]
    queries: dict[str, str]
    candidates: list[str]  # the source names with a cand_<source> table
    extract_date: date
    start: date


def cand(source: str) -> str:
    """The candidate table of a source (a table name or a FHIR resource type)."""
    return quote("cand_" + source.replace(".", "_"))


def typed_select(spec: contract.Table, query: str) -> str:
    """`query` with exactly the contract's columns, in order, cast to the store's types."""
    cols = ", ".join(
        f"CAST({quote(c.name)} AS {contract.DUCKDB_TYPES[c.kind]}) AS {quote(c.name)}"
        for c in spec.columns
    )
    return f"SELECT {cols} FROM ({query})"


def source_counts(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, Any]:
    """Rows read, written and dropped by reason for one source's candidates."""
    rows = con.execute(
        f"SELECT reason, count(*) FROM {cand(source)} GROUP BY reason ORDER BY reason"
    ).fetchall()
    dropped = {str(r): int(n) for r, n in rows if r is not None}
    written = sum(int(n) for r, n in rows if r is None)
    return {"read": written + sum(dropped.values()), "written": written, "dropped": dropped}


def write_extract(con: duckdb.DuckDBPyConnection, plan: Plan, out_dir: Path) -> dict[str, Any]:
    """Write one Parquet file per mapped contract table, the dropped rows and manifest.json;
    returns the manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in contract.TABLE_NAMES:
        for ext in ("parquet", "csv"):
            (out_dir / f"{name}.{ext}").unlink(missing_ok=True)
    rows: dict[str, int] = {}
    for name, query in plan.queries.items():
        spec = contract.table(name)
        path = out_dir / f"{name}.parquet"
        con.execute(f"COPY ({typed_select(spec, query)}) TO {literal(path)} (FORMAT parquet)")
        rows[name] = _count(con, f"SELECT count(*) FROM read_parquet({literal(path)})")
    _write_dropped(con, plan.candidates, out_dir)
    manifest = {
        "generator": "carerisk.importers",
        "kind": "full",
        "format": "parquet",
        "extract_date": plan.extract_date.isoformat(),
        "start": plan.start.isoformat(),
        "end": plan.extract_date.isoformat(),
        "rows": rows,
        "coverage": {
            "source": plan.source,
            "maps": plan.maps,
            "tables": {n: plan.tables[n].as_dict() for n in contract.TABLE_NAMES},
            "sources": {s: source_counts(con, s) for s in plan.candidates},
        },
    }
    text = json.dumps(manifest, indent=2) + "\n"
    (out_dir / "manifest.json").write_text(text, encoding="utf-8")
    return manifest


def _write_dropped(con: duckdb.DuckDBPyConnection, sources: list[str], out_dir: Path) -> None:
    (out_dir / "import").mkdir(exist_ok=True)
    parts = [
        f"SELECT {literal(s)} AS source, CAST(src_row AS VARCHAR) AS source_row, reason "
        f"FROM {cand(s)} WHERE reason IS NOT NULL"
        for s in sources
    ]
    query = " UNION ALL ".join(parts) if parts else (
        "SELECT NULL::VARCHAR AS source, NULL::VARCHAR AS source_row, NULL::VARCHAR AS reason "
        "WHERE false"
    )  # fmt: skip
    path = out_dir / DROPPED_FILE
    con.execute(f"COPY ({query}) TO {literal(path)} (FORMAT parquet)")


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def absent(reason: str) -> Coverage:
    return Coverage("absent", reason=reason)


def dates_of(con: duckdb.DuckDBPyConnection, queries: dict[str, str]) -> tuple[date, date] | None:
    """The first and last event date among the written tables, None when there are none."""
    parts = [
        f"SELECT {quote(spec.event_date)} AS d FROM ({queries[spec.name]})"
        for spec in contract.TABLES
        if spec.name in queries and spec.event_date
    ]
    if not parts:
        return None
    row = con.execute(f"SELECT min(d), max(d) FROM ({' UNION ALL '.join(parts)})").fetchone()
    if not row or row[0] is None:
        return None
    return row[0], row[1]
