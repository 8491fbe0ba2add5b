"""The data contract compiled to DuckDB SQL: the fast path of `features.store`.

Each builder returns SQL text for one contract table. The rules are those of
`features.schemas` (the pandera schemas and `parse_column`) and the contract's
`READING_RULES`; a test runs both paths on the same bad rows and requires the same problems.
"""

from __future__ import annotations

from datetime import date

from features import contract
from features.schemas import (
    AFTER_DEATH,
    BEFORE_BIRTH,
    DATE_ORDER,
    DATE_TEXT,
    DUPLICATE_KEY,
    DUPLICATE_ROW,
    FLOAT_TEXT,
    FUTURE_DATE,
    INT_TEXT,
    INVALID_CODE,
    MISSING_VALUE,
    NHS_NUMBER,
    NOT_FIRST_OF_MONTH,
    OUT_OF_RANGE,
    UNKNOWN_PERSON,
    WHITESPACE,
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


def trimmed(text: str) -> str:
    """SQL: `text` without WHITESPACE around it, NULL when nothing is left.

    trim() with a character set is slow in DuckDB, so it runs only where the first or last
    character could be whitespace; the staging step applies this once to every text column.
    """
    edge = f"ascii({text}) <= 32 OR ascii({text}[-1]) <= 32"
    return f"nullif(CASE WHEN {edge} THEN trim({text}, {literal(WHITESPACE)}) ELSE {text} END, '')"


def staged_select(spec: contract.Table, types: dict[str, str]) -> str:
    """The select list that stages a source: text columns trimmed, others as they are."""
    return ", ".join(
        f"{trimmed(quote(c))} AS {quote(c)}" if types[c].upper() == "VARCHAR" else quote(c)
        for c in spec.column_names
    )


class ColumnSql:
    """How one contract column is read from a staged source column of a given DuckDB type.

    A staged VARCHAR column is already trimmed (`staged_select`); other types read as text
    are trimmed here.
    """

    def __init__(self, col: contract.Column, source_type: str, ref: str) -> None:
        self.col = col
        self.source_type = source_type.upper()
        self.ref = ref
        self.parsed, self.missing, self.wrong = self._compile()

    def _compile(self) -> tuple[str, str, str | None]:
        kind, src, ref = self.col.kind, self.source_type, self.ref
        if src == "VARCHAR":
            return self._from_text(ref)
        if src.startswith("DECIMAL"):
            return self._from_text(trimmed(f"CAST({ref} AS VARCHAR)"))
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
        return self._from_text(trimmed(f"CAST({ref} AS VARCHAR)"))

    def _from_float(self, value: str) -> tuple[str, str, str | None]:
        missing = f"({value} IS NULL OR isnan({value}))"
        if self.col.kind == "float":
            return f"CASE WHEN NOT {missing} THEN {value} END", missing, None
        parsed = f"CASE WHEN {value} = round({value}) THEN TRY_CAST({value} AS BIGINT) END"
        return parsed, missing, f"(NOT {missing} AND {parsed} IS NULL)"

    def _from_text(self, t: str) -> tuple[str, str, str | None]:
        """Parse trimmed text `t` (NULL when empty) by kind."""
        missing = f"({t} IS NULL)"
        kind = self.col.kind
        if kind == "str":
            return t, missing, None
        if kind == "int":
            parsed = (
                f"CASE WHEN regexp_full_match({t}, {literal(INT_TEXT)}) "
                f"THEN TRY_CAST(TRY_CAST({t} AS DOUBLE) AS BIGINT) END"
            )
        elif kind == "float":
            parsed = (
                f"CASE WHEN regexp_full_match({t}, {literal(FLOAT_TEXT)}) "
                f"THEN TRY_CAST({t} AS DOUBLE) END"
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

    @property
    def text(self) -> str:
        """The value as text for the quarantine's row identity: parsed where it parses."""
        raw = self.ref if self.source_type == "VARCHAR" else f"CAST({self.ref} AS VARCHAR)"
        return f"coalesce(CAST({self.parsed} AS VARCHAR), {raw})"


def nhs_number(value: str) -> str:
    """SQL: the text `value` is an NHS number (`codes.nhs_number_valid`)."""
    digits = f"regexp_replace({value}, '[ -]', '', 'g')"
    weighted = " + ".join(f"{11 - i} * (ascii({digits}[{i}]) - 48)" for i in range(1, 10))
    check = f"(11 - ({weighted}) % 11) % 11 = ascii({digits}[10]) - 48"
    shaped = f"regexp_full_match({value}, {literal(contract.NHS_NUMBER_TEXT)})"
    return f"(CASE WHEN length({value}) BETWEEN 10 AND 12 AND {shaped} THEN {check} ELSE false END)"


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
KIND_WORDS: dict[str, str] = {
    "int": "not a whole number",
    "float": "not a number",
    "bool": "not true or false",
    "date": "not a date (YYYY-MM-DD)",
}


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
    if col.month_start:
        out.append((NOT_FIRST_OF_MONTH, f"day({p}) <> 1", "not the first day of a month"))
    if col.pseudonym:
        out.append((NHS_NUMBER, nhs_number(p), "an NHS number, not a pseudonym"))
    return out


def problem_list(
    spec: contract.Table,
    cols: dict[str, ColumnSql],
    extract_date: date,
    *,
    person_alias: str | None,
    bad_codes: dict[str, list[str]],
) -> list[tuple[str, str]]:
    """(struct, condition) per (column, reason) check on a row.

    `person_alias` names the joined known people (person_id, birth_month, date_of_death).
    """
    items: list[tuple[str, str]] = []
    for name, c in cols.items():
        p = c.parsed
        if not c.col.nullable:
            items.append(_problem(name, MISSING_VALUE, c.missing, "'required'"))
        if c.wrong is not None:
            items.append(_problem(name, WRONG_TYPE, c.wrong, literal(KIND_WORDS[c.col.kind])))
        for reason, cond, detail in _value_checks(c.col, p, bad_codes.get(name)):
            items.append(_problem(name, reason, f"({p} IS NOT NULL AND {cond})", literal(detail)))
    limit = f"DATE {literal(extract_date.isoformat())}"
    for name in future_checked(spec):
        detail = literal(f"after the extract date {extract_date.isoformat()}")
        items.append(_problem(name, FUTURE_DATE, f"{cols[name].parsed} > {limit}", detail))
    for earlier, later in spec.ordered_dates:
        cond = f"{cols[later].parsed} < {cols[earlier].parsed}"
        items.append(_problem(later, DATE_ORDER, cond, literal(f"before {earlier}")))
    if person_alias:
        items += _person_checks(spec, cols, person_alias)
    return items


def _person_checks(
    spec: contract.Table, cols: dict[str, ColumnSql], known: str
) -> list[tuple[str, str]]:
    """unknown_person, before_birth and after_death against the known people."""
    pid = cols["person_id"].parsed
    cond = f"({pid} IS NOT NULL AND {known}.person_id IS NULL)"
    items = [_problem("person_id", UNKNOWN_PERSON, cond, "'not in the person table'")]
    if not spec.event_date:
        return items
    when = cols[spec.event_date].parsed
    born = f"{known}.birth_month"
    detail = f"'born ' || strftime({born}, '%Y-%m')"
    items.append(_problem(spec.event_date, BEFORE_BIRTH, f"{when} < {born}", detail))
    if spec.name != "death":
        dod = f"{known}.date_of_death"
        detail = f"'died ' || CAST({dod} AS VARCHAR)"
        items.append(_problem(spec.event_date, AFTER_DEATH, f"{when} > {dod}", detail))
    return items


def problems_query(
    spec: contract.Table,
    types: dict[str, str],
    stage: str,
    extract_date: date,
    *,
    persons: str | None,
    bad_codes: dict[str, list[str]],
) -> str:
    """Rows (row_number, column_name, reason, detail) for every failed row-level check.

    `persons` is a table of the known people (person_id, birth_month, date_of_death), None
    for the person table itself.
    """
    cols = column_sql(spec, types, "s")
    joins = ""
    if persons:
        joins = f" LEFT JOIN {persons} pp ON pp.person_id = {cols['person_id'].parsed}"
    items = problem_list(
        spec, cols, extract_date, person_alias="pp" if persons else None, bad_codes=bad_codes
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


def duplicates_query(spec: contract.Table, types: dict[str, str], stage: str, problems: str) -> str:
    """Among rows without a problem in `problems`, later rows repeating an earlier row's
    values (duplicate_row) or only its key (duplicate_key)."""
    cols = column_sql(spec, types, "s")
    key_exprs = [cols[k].parsed for k in spec.key]
    keys = ", ".join(f"{e} AS k{i}" for i, e in enumerate(key_exprs))
    key_names = ", ".join(f"k{i}" for i in range(len(key_exprs)))
    raw = ", ".join(f"s.{quote(c)}" for c in spec.column_names)
    values = ", ".join(c.parsed for c in cols.values())
    first = spec.key[0]
    return f"""
WITH keyed AS (
  SELECT s.rowid AS row_number, {keys}, {raw} FROM {stage} s
  WHERE NOT EXISTS (SELECT 1 FROM {problems} p WHERE p.row_number = s.rowid)
),
dup AS (SELECT {key_names} FROM keyed GROUP BY ALL HAVING count(*) > 1),
ranked AS (
  SELECT row_number,
    min(row_number) OVER (PARTITION BY {key_names}) AS first_key,
    min(row_number) OVER (PARTITION BY {values}) AS first_same
  FROM keyed s SEMI JOIN dup USING ({key_names})
)
SELECT row_number, {literal(first)} AS column_name,
  CASE WHEN first_same < row_number THEN {literal(DUPLICATE_ROW)}
       ELSE {literal(DUPLICATE_KEY)} END AS reason,
  CASE WHEN first_same < row_number THEN 'same as row ' || first_same
       ELSE {literal(f"same {first} as row ")} || first_key END AS detail
FROM ranked WHERE first_key < row_number"""


def typed_select(spec: contract.Table, types: dict[str, str], stage: str, bad: str) -> str:
    """The valid rows of a staged table, typed as the contract says, in file order."""
    cols = column_sql(spec, types, "s")
    select = ", ".join(f"{c.parsed} AS {quote(n)}" for n, c in cols.items())
    return (
        f"SELECT {select} FROM {stage} s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {bad} b WHERE b.row_number = s.rowid)"
    )


def _withheld(cols: dict[str, ColumnSql], value: str) -> str:
    """`value`, or a marker when the row's person id is an NHS number."""
    nhs = nhs_number(cols["person_id"].parsed)
    return f"CASE WHEN {nhs} THEN {literal(contract.NHS_NUMBER_WITHHELD)} ELSE {value} END"


def value_case(spec: contract.Table, types: dict[str, str], alias: str) -> str:
    """The raw text of the column named in `column_name` (an NHS number withheld)."""
    cols = column_sql(spec, types, alias)
    whens = " ".join(
        f"WHEN {literal(c)} THEN CAST({alias}.{quote(c)} AS VARCHAR)" for c in spec.column_names
    )
    return _withheld(cols, f"CASE column_name {whens} END")


def raw_row(spec: contract.Table, types: dict[str, str], alias: str) -> str:
    """The staged row as JSON, as read (an NHS number withheld)."""
    cols = column_sql(spec, types, alias)
    values = {c: f"{alias}.{quote(c)}" for c in spec.column_names}
    values["person_id"] = _withheld(cols, f"CAST({values['person_id']} AS VARCHAR)")
    fields = ", ".join(f"{quote(c)} := {v}" for c, v in values.items())
    return f"CAST(to_json(struct_pack({fields})) AS VARCHAR)"


def row_identity(spec: contract.Table, types: dict[str, str], alias: str) -> tuple[str, str]:
    """(row_key, row_sha256) of a staged row: its key, and the SHA-256 of its content, as the
    contract reads them (a value that does not parse as its raw text, without whitespace
    around it); an NHS number is withheld from both."""
    cols = column_sql(spec, types, alias)
    texts = {name: c.text for name, c in cols.items()}
    texts["person_id"] = _withheld(cols, texts["person_id"])
    keys = [texts[k] for k in spec.key]
    key = keys[0] if len(keys) == 1 else f"CAST(to_json([{', '.join(keys)}]) AS VARCHAR)"
    fields = ", ".join(f"{quote(c)} := {t}" for c, t in texts.items())
    return key, f"sha256(CAST(to_json(struct_pack({fields})) AS VARCHAR))"
