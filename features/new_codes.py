"""Codes a store holds that no record before a date used: a feed's new coding, found early.

The features count records by code lists (features/codes.py); a practice that moves to another
GP system, or a hospital that starts coding another way, can put codes in the feed that no list
knows and that no record before the model's reference date had. The monitor lists them for the
code columns of the contract (patterns and SNOMED CT; columns with a fixed set of values cannot
hold a new one), grouping a table's numbered columns (diag_01 ... diag_06) as one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from features import contract


@dataclass(frozen=True)
class NewCodes:
    """Codes of one source column (family) first recorded on or after a date."""

    table: str
    column: str  # the column, or "diag_01..diag_06" for a numbered family
    rows_since: int  # the table's rows with a code, dated on or after the date
    codes: dict[str, int]  # code -> rows, the most used first

    @property
    def rows(self) -> int:
        return int(sum(self.codes.values()))

    @property
    def share(self) -> float:
        return self.rows / self.rows_since if self.rows_since else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "column": self.column,
            "rows_since": self.rows_since,
            "codes": self.codes,
            "rows": self.rows,
            "share": self.share,
        }


def code_families(spec: contract.Table) -> dict[str, list[str]]:
    """Family name -> columns: the code columns of a table with an event date."""
    if not spec.event_date:
        return {}
    families: dict[str, list[str]] = {}
    for col in spec.columns:
        coded = col.kind == "str" and (col.pattern or col.snomed) and col.allowed is None
        if not coded or col.name in spec.key or col.name == "person_id":
            continue
        stem = re.sub(r"_\d+$", "", col.name)
        families.setdefault(stem, []).append(col.name)
    return {
        (cols[0] if len(cols) == 1 else f"{cols[0]}..{cols[-1]}"): cols
        for cols in families.values()
    }


def new_codes(
    store_path: Path, since: date, known: Callable[[str], bool] | None = None
) -> list[NewCodes]:
    """Per code family, the codes whose every record is dated on or after `since`, the most
    used first, leaving out those `known` says a code list holds (a list's rare code is
    recorded for the first time sooner or later: that is not a new coding); families with none
    are left out."""
    found = []
    with duckdb.connect(str(store_path), read_only=True) as con:
        for spec in contract.TABLES:
            for family, columns in code_families(spec).items():
                item = _family(con, spec, family, columns, since)
                if known is not None:
                    unknown = {c: n for c, n in item.codes.items() if not known(c)}
                    item = replace(item, codes=unknown)
                if item.codes:
                    found.append(item)
    return found


def _family(
    con: duckdb.DuckDBPyConnection,
    spec: contract.Table,
    family: str,
    columns: list[str],
    since: date,
) -> NewCodes:
    when = f'"{spec.event_date}"'
    parts = " UNION ALL ".join(
        f'SELECT "{c}" AS code, {when} AS d FROM "{spec.name}" WHERE "{c}" IS NOT NULL'
        for c in columns
    )
    row = con.execute(f"SELECT count(*) FROM ({parts}) WHERE d >= ?", [since]).fetchone()
    codes = con.execute(
        f"SELECT code, count(*) AS n FROM ({parts}) GROUP BY code HAVING min(d) >= ? "
        "ORDER BY n DESC, code",
        [since],
    ).fetchall()
    return NewCodes(
        spec.name, family, int(row[0]) if row else 0, {str(c): int(n) for c, n in codes}
    )
