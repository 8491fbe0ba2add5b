"""The data contract compiled to DuckDB SQL: the fast path of `features.store`.

Each builder returns SQL text for one contract table. The rules are those of
`features.schemas` (the pandera schemas and `parse_column`); a test runs both paths on
the same bad rows and requires the same problems.
"""

from __future__ import annotations

from datetime import date

from features import contract
from features.schemas import (
    AFTER_DEATH,
    DATE_ORDER,
    DATE_TEXT,
    FUTURE_DATE,
    INT_TEXT,
    INVALID_CODE,
    MISSING_VALUE,
    OUT_OF_RANGE,
    UNKNOWN_PERSON,
    WRONG_TYPE,
    future_checked,
)

INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT"}
    | {"UINTEGER", "UBIGINT"}
)
FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE"})
DATE_TYPES = frozenset({"DATE", "TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"})


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


class ColumnSql:
    """How one contract column is read from a staged source column of a given DuckDB type."""

    def __init__(self, col: contract.Column, source_type: str, ref: str) -> None:
        self.col = col
        self.source_type = source_type.upper()
        self.ref = ref
        self.parsed, self.missing, self.wrong = self._compile()

    def _compile(self) -> tuple[str, str, str | None]:
        kind, src, ref = self.col.kind, self.source_type, self.ref
        if src == "VARCHAR" or src.startswith("DECIMAL"):
            text = ref if src == "VARCHAR" else f"CAST({ref} AS VARCHAR)"
            return self._from_text(text)
        if kind == "int" and src in INTEGER_TYPES:
            return f"CAST({ref} AS BIGINT)", f"({ref} IS NULL)", None
        if kind in ("int", "float") and src in FLOAT_TYPES:
            return self._from_float(f"CAST({ref} AS DOUBLE)")
        if kind == "float" and src in INTEGER_TYPES:
            return f"CAST({ref} AS DOUBLE)", f"({ref} IS NULL)", None
        if kind == "bool" and src == "BOOLEAN":
            return ref, f"({ref} IS NULL)", None
        if kind == "date" and src in DATE_TYPES:
            return f"CAST({ref} AS DATE)", f"({ref} IS NULL)", None
        return self._from_text(f"CAST({ref} AS VARCHAR)")

    def _from_float(self, value: str) -> tuple[str, str, str | None]:
        missing = f"({value} IS NULL OR isnan({value}))"
        if self.col.kind == "float":
            return f"CASE WHEN NOT {missing} THEN {value} END", missing, None
        parsed = f"CASE WHEN {value} = round({value}) THEN TRY_CAST({value} AS BIGINT) END"
        return parsed, missing, f"(NOT {missing} AND {parsed} IS NULL)"

    def _from_text(self, text: str) -> tuple[str, str, str | None]:
        missing = (
            f"({text} IS NULL OR {text} = '' OR (starts_with({text}, ' ') AND trim({text}) = ''))"
        )
        t = f"trim({text})"
        kind = self.col.kind
        if kind == "str":
            return f"CASE WHEN NOT {missing} THEN {text} END", missing, None
        if kind == "int":
            parsed = (
                f"CASE WHEN regexp_full_match({t}, {literal(INT_TEXT)}) "
                f"THEN TRY_CAST(TRY_CAST({t} AS DOUBLE) AS BIGINT) END"
            )
        elif kind == "float":
            parsed = (
                f"CASE WHEN NOT isnan(TRY_CAST({t} AS DOUBLE)) THEN TRY_CAST({t} AS DOUBLE) END"
            )
        elif kind == "bool":
            parsed = (
                f"CASE lower({t}) WHEN 'true' THEN true WHEN '1' THEN true "
                f"WHEN 'false' THEN false WHEN '0' THEN false END"
            )
        else:
            parsed = (
                f"CASE WHEN regexp_full_match({t}, {literal(DATE_TEXT)}) "
                f"THEN TRY_CAST({t} AS DATE) END"
            )
        return parsed, missing, f"(NOT {missing} AND {parsed} IS NULL)"


def column_sql(spec: contract.Table, types: dict[str, str], alias: str) -> dict[str, ColumnSql]:
    return {c.name: ColumnSql(c, types[c.name], f"{alias}.{quote(c.name)}") for c in spec.columns}


def _problem(column: str, reason: str, condition: str, detail: str) -> tuple[str, str]:
    """(struct naming a failed check, its condition) for one check."""
    cond = f"coalesce({condition}, false)"
    struct = (
        f"struct_pack(c := {literal(column)}, r := {literal(reason)}, f := {cond}, d := {detail})"
    )
    return struct, cond


MAX_INLINE_CODES = 500


def checked_by_value(spec: contract.Table) -> list[str]:
    """Code columns checked once per distinct value in Python (`schemas.code_valid`).

    Keys and person ids have as many values as rows, so their patterns run in SQL.
    """
    return [
        c.name
        for c in spec.columns
        if c.kind == "str"
        and (c.pattern or c.snomed or c.allowed is not None)
        and c.name not in spec.key
        and c.name != "person_id"
    ]


def _code_detail(col: contract.Column) -> str:
    details = []
    if col.pattern:
        details.append(f"pattern {col.pattern}")
    if col.snomed:
        details.append("SNOMED CT check digit")
    if col.allowed is not None:
        details.append(f"one of {', '.join(sorted(col.allowed))}")
    return "; ".join(details)


def _code_condition(col: contract.Column, p: str, bad_values: list[str] | None) -> str | None:
    if bad_values is None:  # checked in SQL
        return f"NOT regexp_full_match({p}, {literal(col.pattern)})" if col.pattern else None
    if not bad_values:
        return None
    if len(bad_values) <= MAX_INLINE_CODES:
        return f"{p} IN ({', '.join(literal(v) for v in sorted(bad_values))})"
    return f"{p} IN (SELECT value FROM {BAD_CODES} WHERE column_name = {literal(col.name)})"


BAD_CODES = "memory.main.bad_codes"


def _value_checks(
    col: contract.Column, p: str, bad_values: list[str] | None
) -> list[tuple[str, str, str]]:
    """(reason, condition on parsed value p, detail) for invalid_code and out_of_range."""
    out: list[tuple[str, str, str]] = []
    code = _code_condition(col, p, bad_values)
    if code:
        out.append((INVALID_CODE, code, _code_detail(col)))
    bounds = []
    if col.minimum is not None:
        bounds.append(f"{p} < {col.minimum}")
    if col.maximum is not None:
        bounds.append(f"{p} > {col.maximum}")
    if bounds:
        detail = f"range {col.minimum} to {col.maximum}"
        out.append((OUT_OF_RANGE, f"({' OR '.join(bounds)})", detail))
    return out


def problem_list(
    spec: contract.Table,
    cols: dict[str, ColumnSql],
    extract_date: date,
    *,
    person_alias: str | None,
    death_alias: str | None,
    bad_codes: dict[str, list[str]],
) -> list[tuple[str, str]]:
    """(struct, condition) per (column, reason) check on a row."""
    items: list[tuple[str, str]] = []
    for name, c in cols.items():
        p = c.parsed
        if not c.col.nullable:
            items.append(_problem(name, MISSING_VALUE, c.missing, "'required'"))
        if c.wrong is not None:
            items.append(_problem(name, WRONG_TYPE, c.wrong, literal(f"not a {c.col.kind}")))
        for reason, cond, detail in _value_checks(c.col, p, bad_codes.get(name)):
            items.append(_problem(name, reason, f"({p} IS NOT NULL AND {cond})", literal(detail)))
    limit = f"DATE {literal(extract_date.isoformat())}"
    for name in future_checked(spec):
        detail = literal(f"after the extract date {extract_date.isoformat()}")
        items.append(_problem(name, FUTURE_DATE, f"{cols[name].parsed} > {limit}", detail))
    for earlier, later in spec.ordered_dates:
        cond = f"{cols[later].parsed} < {cols[earlier].parsed}"
        items.append(_problem(later, DATE_ORDER, cond, literal(f"before {earlier}")))
    pid = cols["person_id"].parsed
    if person_alias:
        cond = f"({pid} IS NOT NULL AND {person_alias}.person_id IS NULL)"
        items.append(_problem("person_id", UNKNOWN_PERSON, cond, "'not in the person table'"))
    if death_alias and spec.event_date:
        dod = f"{death_alias}.date_of_death"
        cond = f"{cols[spec.event_date].parsed} > {dod}"
        detail = f"'died ' || CAST({dod} AS VARCHAR)"
        items.append(_problem(spec.event_date, AFTER_DEATH, cond, detail))
    return items


def problems_query(
    spec: contract.Table,
    types: dict[str, str],
    stage: str,
    extract_date: date,
    *,
    persons: str | None,
    deaths: str | None,
    bad_codes: dict[str, list[str]],
) -> str:
    """Rows (row_number, column_name, reason, detail) for every failed row-level check."""
    cols = column_sql(spec, types, "s")
    joins = ""
    pid = cols["person_id"].parsed
    if persons:
        joins += f" LEFT JOIN {persons} pp ON pp.person_id = {pid}"
    if deaths:
        joins += f" LEFT JOIN {deaths} dd ON dd.person_id = {pid}"
    items = problem_list(
        spec,
        cols,
        extract_date,
        person_alias="pp" if persons else None,
        death_alias="dd" if deaths else None,
        bad_codes=bad_codes,
    )
    checks = ",\n  ".join(item for item, _ in items)
    any_failed = "\n  OR ".join(cond for _, cond in items)
    return f"""
SELECT row_number, e.c AS column_name, e.r AS reason, e.d AS detail FROM (
  SELECT s.rowid AS row_number, unnest(list_filter([
  {checks}
  ], lambda x: x.f)) AS e
  FROM {stage} s{joins}
  WHERE {any_failed}
)"""


def duplicates_query(spec: contract.Table, types: dict[str, str], stage: str) -> str:
    """Later rows repeating an earlier row exactly (duplicate_row) or its key (duplicate_key)."""
    cols = column_sql(spec, types, "s")
    key_exprs = [cols[k].parsed for k in spec.key]
    keys = ", ".join(f"{e} AS k{i}" for i, e in enumerate(key_exprs))
    key_names = ", ".join(f"k{i}" for i in range(len(key_exprs)))
    not_null = " AND ".join(f"{e} IS NOT NULL" for e in key_exprs)
    raw = ", ".join(f"s.{quote(c)}" for c in spec.column_names)
    first = quote(spec.key[0])
    return f"""
WITH keyed AS (SELECT s.rowid AS row_number, {keys}, {raw} FROM {stage} s WHERE {not_null}),
dup AS (SELECT {key_names} FROM keyed GROUP BY ALL HAVING count(*) > 1),
ranked AS (
  SELECT row_number,
    min(row_number) OVER (PARTITION BY {key_names}) AS first_key,
    min(row_number) OVER (PARTITION BY {raw.replace("s.", "")}) AS first_same
  FROM keyed SEMI JOIN dup USING ({key_names})
)
SELECT row_number, {literal(spec.key[0])} AS column_name,
  CASE WHEN first_same < row_number THEN 'duplicate_row' ELSE 'duplicate_key' END AS reason,
  CASE WHEN first_same < row_number THEN 'same as row ' || first_same
       ELSE 'same {first.strip(chr(34))} as row ' || first_key END AS detail
FROM ranked WHERE first_key < row_number"""


def typed_select(spec: contract.Table, types: dict[str, str], stage: str, bad: str) -> str:
    """The valid rows of a staged table, typed as the contract says, in file order."""
    cols = column_sql(spec, types, "s")
    select = ", ".join(f"{c.parsed} AS {quote(n)}" for n, c in cols.items())
    return (
        f"SELECT {select} FROM {stage} s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {bad} b WHERE b.row_number = s.rowid)"
    )


def value_case(spec: contract.Table, alias: str) -> str:
    """The raw text of the column named in `column_name`."""
    whens = " ".join(
        f"WHEN {literal(c)} THEN CAST({alias}.{quote(c)} AS VARCHAR)" for c in spec.column_names
    )
    return f"CASE column_name {whens} END"
