"""What a store's coding matches in the code lists, and the frequent codes no list holds.

For each list: the records it matches and the people they belong to. For each code column:
its coded rows, those no list matches, and the most frequent such codes with their counts and
a term where any list (the generator's included) knows one. SNOMED CT and treatment function
lists match exactly; ICD-10 and BNF lists match by prefix (ICD-10 without dots or case).
The generator's lists (`synthetic_*`) name codes the county writes, not concepts: they give
terms but match nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from codelists.lists import CodeLists

GENERATOR_PREFIX = "synthetic_"
# (table, column) of the store's contract tables -> the code system written there
CODE_COLUMNS: dict[tuple[str, str], str] = {
    ("gp_event", "snomed_code"): "snomed",
    ("prescription", "bnf_code"): "bnf",
    **{("hospital_episode", f"diag_{n:02d}"): "icd10" for n in range(1, 7)},
    ("ae_attendance", "diagnosis_code"): "icd10",
    ("ae_attendance", "injury_cause"): "icd10",
    ("hospital_episode", "main_specialty"): "treatment_function",
}
PREFIX_SYSTEMS = frozenset({"icd10", "bnf"})


@dataclass(frozen=True)
class CodeColumn:
    table: str
    column: str
    system: str

    @property
    def label(self) -> str:
        return f"{self.table}.{self.column}"


def code_report(store: Path, lists: CodeLists, top: int = 20) -> dict[str, Any]:
    """The report on `store` (a DuckDB file) against `lists`, as plain data."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        present = _columns(con)
        columns = [CodeColumn(t, c, s) for (t, c), s in CODE_COLUMNS.items() if (t, c) in present]
        con.register("list_codes", _list_codes(lists))
        con.execute(
            "CREATE TEMP TABLE coded AS " + " UNION ALL ".join(_coded_sql(c) for c in columns)
            if columns
            else "CREATE TEMP TABLE coded (tbl VARCHAR, col VARCHAR, system VARCHAR, "
            "rec VARCHAR, person_id VARCHAR, code VARCHAR)"
        )
        con.execute(_matches_sql())
        return {
            "store": str(store),
            "codelists": {"folder": str(lists.folder), "digest": lists.digest},
            "lists": _per_list(con, lists),
            "columns": {c.label: _per_column(con, c, lists, top) for c in columns},
            "absent_columns": [f"{t}.{c}" for (t, c) in CODE_COLUMNS if (t, c) not in present],
        }
    finally:
        con.close()


def _columns(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    rows = con.execute("SELECT table_name, column_name FROM information_schema.columns").fetchall()
    return {(str(t), str(c)) for t, c in rows}


def _list_codes(lists: CodeLists) -> pd.DataFrame:
    rows = [
        (item.name, item.system, code, item.name.startswith(GENERATOR_PREFIX))
        for item in lists.lists.values()
        for code in item.codes
    ]
    return pd.DataFrame(rows, columns=["list", "system", "code", "generator"])


def _coded_sql(c: CodeColumn) -> str:
    """One row per coded value: its table, column, system, record (rowid) and person."""
    value = f'"{c.column}"'
    if c.system == "icd10":
        value = f"upper(replace({value}, '.', ''))"
    return (
        f"SELECT '{c.table}' AS tbl, '{c.column}' AS col, '{c.system}' AS system, "
        f"'{c.table}:' || rowid AS rec, person_id, {value} AS code "
        f'FROM "{c.table}" WHERE "{c.column}" IS NOT NULL AND "{c.column}" <> \'\''
    )


def _matches_sql() -> str:
    """Each coded value with each concept list that matches it (exactly or by prefix)."""
    exact = ", ".join(f"'{s}'" for s in ("snomed", "treatment_function"))
    prefix = ", ".join(f"'{s}'" for s in sorted(PREFIX_SYSTEMS))
    return f"""
CREATE TEMP TABLE matched AS
SELECT c.*, l.list FROM coded c JOIN list_codes l
  ON l.system = c.system AND NOT l.generator AND c.system IN ({exact}) AND l.code = c.code
UNION ALL
SELECT c.*, l.list FROM coded c JOIN list_codes l
  ON l.system = c.system AND NOT l.generator AND c.system IN ({prefix})
 AND left(c.code, length(l.code)) = l.code
"""


def _per_list(con: duckdb.DuckDBPyConnection, lists: CodeLists) -> list[dict[str, Any]]:
    counts = {
        str(name): (int(records), int(people))
        for name, records, people in con.execute(
            "SELECT list, count(DISTINCT rec), count(DISTINCT person_id) FROM matched GROUP BY list"
        ).fetchall()
    }
    return [
        {
            "name": item.name,
            "system": item.system,
            "size": item.size,
            "records": counts.get(item.name, (0, 0))[0],
            "people": counts.get(item.name, (0, 0))[1],
        }
        for item in lists.lists.values()
        if not item.name.startswith(GENERATOR_PREFIX)
    ]


def _per_column(
    con: duckdb.DuckDBPyConnection, c: CodeColumn, lists: CodeLists, top: int
) -> dict[str, Any]:
    where = f"tbl = '{c.table}' AND col = '{c.column}'"
    total, distinct = con.execute(
        f"SELECT count(*), count(DISTINCT code) FROM coded WHERE {where}"
    ).fetchone() or (0, 0)
    unmatched_sql = f"""
        SELECT code, count(*) AS n FROM coded c
        WHERE {where} AND NOT EXISTS (
            SELECT 1 FROM matched m WHERE m.rec = c.rec AND m.col = c.col)
        GROUP BY code"""
    missed, missed_distinct = con.execute(
        f"SELECT coalesce(sum(n), 0), count(*) FROM ({unmatched_sql})"
    ).fetchone() or (0, 0)
    frequent = con.execute(f"{unmatched_sql} ORDER BY n DESC, code LIMIT {int(top)}").fetchall()
    return {
        "system": c.system,
        "rows": int(total),
        "codes": int(distinct),
        "unmatched_rows": int(missed),
        "unmatched_codes": int(missed_distinct),
        "most_frequent_unmatched": [
            {"code": str(code), "count": int(n), "term": lists.term(str(code))}
            for code, n in frequent
        ],
    }
