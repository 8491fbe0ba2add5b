"""CSV extract files for the store: the header, the rows, and the lines that are not rows.

DuckDB reads a CSV file as text with `ignore_errors` and `store_rejects`: a line with more
or fewer fields than the header, bytes that are not UTF-8 or a stray quote is left out of
the rows and recorded with its line number. Those lines become `malformed_row` quarantine
entries. The staged table is then rebuilt with an empty placeholder row in each malformed
row's place, so that a staged row's rowid is still its row number in the file (0-based,
data rows only). A quote that is never closed takes the rest of the file with it: that
stops the load, naming the line.

DuckDB counts lines as CSV records (a quoted value spanning lines is one), and counts
blank lines, which it skips; a malformed row's row number is its place among the rows
DuckDB read, and its detail gives DuckDB's line number.
"""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb

from features import contract
from features.store_sql import literal, quote


class ContractError(Exception):
    """The extract cannot be loaded at all: a missing or unreadable file, or wrong columns."""


# DuckDB's reject types that concern one line; any other stops the load.
ONE_LINE_ERRORS = frozenset(
    {"TOO MANY COLUMNS", "MISSING COLUMNS", "INVALID ENCODING", "UNQUOTED VALUE"}
)


def csv_header(path: Path) -> list[str]:
    """The header's column names, stripped; a UTF-8 byte-order mark before it is allowed."""
    with path.open("rb") as f:
        first = f.readline().decode("utf-8-sig")
    header = next(csv.reader([first]), None)
    if not header:
        raise ContractError(f"{path.name}: empty file, no header row")
    return [h.strip() for h in header]


def csv_keys(lines: list[str], header: list[str], key: tuple[str, ...]) -> list[list[str]]:
    """The key of each malformed line that still shows one: its fields at the key columns'
    places in the header, stripped, where the line has that many and none is empty."""
    places = [header.index(k) for k in key if k in header]
    if len(places) != len(key):
        return []
    found = []
    for line in lines:
        try:
            fields = next(csv.reader([line]), [])
        except csv.Error:
            continue
        values = [fields[i].strip() if i < len(fields) else "" for i in places]
        if all(values):
            found.append(values)
    return found


def rejects_table(spec: contract.Table) -> str:
    return f"rejects_{spec.name}"


def csv_source(path: Path, header: list[str], spec: contract.Table) -> str:
    """read_csv(...) of the file as text, with the header's names, keeping rejected lines."""
    cols = ", ".join(f"{literal(h)}: 'VARCHAR'" for h in header)
    rejects = rejects_table(spec)
    return (
        f"read_csv({literal(path)}, header = true, all_varchar = true, delim = ',', "
        f"quote = '\"', escape = '\"', auto_detect = false, columns = {{{cols}}}, "
        f"strict_mode = true, ignore_errors = true, store_rejects = true, "
        f"rejects_table = {literal(rejects)}, rejects_scan = {literal(rejects + '_scan')})"
    )


def malformed_lines(
    con: duckdb.DuckDBPyConnection, spec: contract.Table, path: Path
) -> list[tuple[int, str, str]]:
    """(line, detail, text) of each line DuckDB could not split into the header's fields."""
    rows = con.execute(
        f"SELECT line, first(error_type), first(error_message), first(csv_line) "
        f"FROM {quote(rejects_table(spec))} GROUP BY line ORDER BY line"
    ).fetchall()
    out: list[tuple[int, str, str]] = []
    for line, kind, message, text in rows:
        text = str(text or "")
        spans = "\n" in text.rstrip("\r\n")
        if str(kind) not in ONE_LINE_ERRORS or (kind == "UNQUOTED VALUE" and spans):
            raise ContractError(
                f"table {spec.name}: cannot read {path.name} from line {line}: {message}"
            )
        text = text.strip("\r\n")
        out.append((int(line), f"line {line}: {_what(str(kind), message, text, spec)}", text))
    return out


def _what(kind: str, message: str, text: str, spec: contract.Table) -> str:
    if kind in ("TOO MANY COLUMNS", "MISSING COLUMNS"):
        fields = len(next(csv.reader([text]), []))
        return f"{fields} fields where the header has {len(spec.columns)}"
    if kind == "INVALID ENCODING":
        return "not UTF-8 text"
    if kind == "UNQUOTED VALUE":
        return "a quote that does not enclose a whole value"
    return str(message)


def place_malformed(
    con: duckdb.DuckDBPyConnection,
    spec: contract.Table,
    stage: str,
    malformed: str,
    lines: list[tuple[int, str, str]],
) -> None:
    """Rebuild `stage` with a placeholder row where each malformed line was, and write
    `malformed` (row_number, detail, csv_line) with the placeholders' row numbers.

    The i-th malformed line (0-based, in line order) was data row j = line - 2; t = j - i
    rows were read before it, so it sits at min(t, rows read) + i and a read row r moves
    down by the number of malformed lines with t <= r.
    """
    row = con.execute(f"SELECT count(*) FROM {stage}").fetchone()
    read = int(row[0]) if row else 0
    con.execute(
        f"CREATE OR REPLACE TABLE {malformed} "
        f"(row_number BIGINT, detail VARCHAR, csv_line VARCHAR, t BIGINT)"
    )
    placed_rows: list[list[object]] = []
    for i, (line, detail, text) in enumerate(lines):
        t = max(line - 2 - i, 0)
        placed_rows.append([min(t, read) + i, detail, text, t])
    con.executemany(f"INSERT INTO {malformed} VALUES (?, ?, ?, ?)", placed_rows)
    names = ", ".join(quote(c) for c in spec.column_names)
    nulls = ", ".join(f"NULL AS {quote(c)}" for c in spec.column_names)
    columns = ", ".join(f"s.{quote(c)}" for c in spec.column_names)
    placed = f"memory.main.{quote('placed_' + spec.name)}"
    con.execute(
        f"""CREATE OR REPLACE TABLE {placed} AS
        WITH shift AS (SELECT t, count(*) OVER (ORDER BY t) AS n FROM {malformed}),
        steps AS (SELECT t, max(n) AS n FROM shift GROUP BY t)
        SELECT {names} FROM (
          SELECT s.rowid + coalesce(c.n, 0) AS k, {columns}
          FROM {stage} s ASOF LEFT JOIN steps c ON s.rowid >= c.t
          UNION ALL SELECT row_number AS k, {nulls} FROM {malformed}
        ) ORDER BY k"""
    )
    con.execute(f"DROP TABLE {stage}")
    con.execute(f"ALTER TABLE {placed} RENAME TO {quote('stage_' + spec.name)}")
