"""Pandera schemas for the data contract, built from `features.contract`.

The schemas are the definition of a valid row. `features.store` compiles the same
contract to DuckDB SQL for speed; `reference_problems` runs these schemas (plus the
cross-table checks pandera cannot see) on a small frame, and the tests show both paths
report the same problems.

How a value is read (whitespace, number and date spellings) is the contract's
`READING_RULES`; `parse_column` implements it for pandas, `features.store_sql` for DuckDB.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pandera.pandas as pa

from features import contract
from features.codes import nhs_number_valid, snomed_valid

# Reason codes, in the order they are reported (see contract.REASONS for their meaning).
MALFORMED_ROW = "malformed_row"  # found while splitting a CSV file, before any check
MISSING_VALUE = "missing_value"
WRONG_TYPE = "wrong_type"
INVALID_CODE = "invalid_code"
NHS_NUMBER = "nhs_number"
OUT_OF_RANGE = "out_of_range"
NOT_FIRST_OF_MONTH = "not_first_of_month"
DUPLICATE_ROW = "duplicate_row"
DUPLICATE_KEY = "duplicate_key"
UNKNOWN_PERSON = "unknown_person"
BEFORE_BIRTH = "before_birth"
AFTER_DEATH = "after_death"
FUTURE_DATE = "future_date"
DATE_ORDER = "date_order"
ALL_REASONS: tuple[str, ...] = tuple(name for name, _ in contract.REASONS)
# The reasons both checkers find on a table's rows (all but malformed_row).
REASONS: tuple[str, ...] = tuple(r for r in ALL_REASONS if r != MALFORMED_ROW)

PANDAS_DTYPES: dict[str, str] = {
    "str": "string",
    "int": "Int64",
    "float": "Float64",
    "bool": "boolean",
    "date": "datetime64[us]",
}
WHITESPACE = contract.WHITESPACE
INT_TEXT = contract.INT_TEXT
FLOAT_TEXT = contract.FLOAT_TEXT
DATE_TEXT = contract.DATE_TEXT
BOOL_TEXT = contract.BOOL_TEXT


def future_checked(spec: contract.Table) -> list[str]:
    """Date columns that must not be after the extract date: every required date column.

    Nullable end dates (discharge, end of service) are left out: a planned end may lie ahead.
    """
    return [c.name for c in spec.columns if c.kind == "date" and not c.nullable]


def _column_checks(col: contract.Column) -> list[pa.Check]:
    checks: list[pa.Check] = []
    if col.pattern:
        checks.append(pa.Check.str_matches(col.pattern))
    if col.snomed:
        checks.append(pa.Check(_snomed_ok, name="snomed_check_digit"))
    if col.allowed is not None:
        checks.append(pa.Check.isin(sorted(col.allowed)))
    if col.minimum is not None:
        checks.append(pa.Check.ge(col.minimum))
    if col.maximum is not None:
        checks.append(pa.Check.le(col.maximum))
    if col.month_start:
        checks.append(pa.Check(lambda s: s.dt.day == 1, name="month_start"))
    if col.pseudonym:
        checks.append(pa.Check(_not_nhs_number, name="nhs_number"))
    return checks


def code_valid(col: contract.Column, value: str) -> bool:
    """One code against its column's pattern, SNOMED CT check digit and allowed set."""
    if col.pattern and not re.fullmatch(col.pattern, value):
        return False
    if col.snomed and not snomed_valid(value):
        return False
    return col.allowed is None or value in col.allowed


def _snomed_ok(values: pd.Series) -> pd.Series:
    unique = {v: snomed_valid(v) for v in values.dropna().unique()}
    return values.map(unique).fillna(True).astype(bool)


def _not_nhs_number(values: pd.Series) -> pd.Series:
    return ~values.map(lambda v: isinstance(v, str) and nhs_number_valid(v)).astype(bool)


def _not_after(limit: pd.Timestamp, name: str) -> pa.Check:
    return pa.Check(lambda s: ~(s > limit).fillna(False).astype(bool), name=name)


def _date_order(earlier: str, later: str) -> pa.Check:
    def ok(df: pd.DataFrame) -> pd.Series:
        return ~(df[later] < df[earlier]).fillna(False).astype(bool)

    return pa.Check(ok, name=f"date_order:{earlier}:{later}")


def schema_for(table: contract.Table, extract_date: date | None = None) -> pa.DataFrameSchema:
    """The pandera schema of one contract table (parsed values, see `parse_frame`).

    With `extract_date`, the required date columns must not lie after it.
    """
    limit = pd.Timestamp(extract_date) if extract_date else None
    future = set(future_checked(table)) if limit is not None else set()
    columns = {}
    for col in table.columns:
        checks = _column_checks(col)
        if col.name in future and limit is not None:
            checks.append(_not_after(limit, "future_date"))
        columns[col.name] = pa.Column(
            PANDAS_DTYPES[col.kind], nullable=col.nullable, checks=checks, coerce=False
        )
    frame_checks = [_date_order(a, b) for a, b in table.ordered_dates]
    return pa.DataFrameSchema(
        columns,
        checks=frame_checks,
        unique=list(table.key),
        report_duplicates="exclude_first",
        strict=True,
        ordered=False,
        name=table.name,
    )


# --- parsing text and loosely typed values -------------------------------------------------


def _is_text(values: pd.Series) -> pd.Series:
    return values.map(lambda v: isinstance(v, str)).astype(bool)


def _is_a(values: pd.Series, types: tuple[type, ...]) -> pd.Series:
    return values.map(lambda v: isinstance(v, types)).astype(bool)


def parse_column(values: pd.Series, kind: contract.Kind) -> tuple[pd.Series, pd.Series]:
    """Parse one column by kind (the contract's READING_RULES); returns (parsed, wrong-type).

    Text is stripped of WHITESPACE first, whatever the kind; a value that is then empty is
    missing. Typed values (from Parquet) are taken as they are where the kind allows them.
    """
    values = values.astype(object).where(values.notna(), None)
    text = _is_text(values)
    as_text = values.astype("string").str.strip(WHITESPACE)
    missing = (values.isna() | (as_text == "")).fillna(True).astype(bool)
    if kind == "str":
        return as_text.mask(missing), pd.Series(False, index=values.index)
    text = text & ~missing
    stripped = as_text.where(text)
    typed = values.where(~text & ~missing, None)
    if kind in ("int", "float"):
        return _parse_numbers(kind, typed, text, stripped, missing)
    if kind == "bool":
        flags = values.where(~text, stripped.str.lower()).map(_bool_value)
        wrong = ~missing & flags.isna()
        return flags.where(~missing & ~wrong, pd.NA).astype("boolean"), wrong
    return _parse_dates(typed, text, stripped, missing)


def _parse_numbers(
    kind: contract.Kind, typed: pd.Series, text: pd.Series, stripped: pd.Series, missing: pd.Series
) -> tuple[pd.Series, pd.Series]:
    shaped = stripped.str.fullmatch(INT_TEXT if kind == "int" else FLOAT_TEXT)
    from_text = pd.to_numeric(stripped.where(shaped.fillna(False).astype(bool)), errors="coerce")
    numeric = ~_is_a(typed, (bool, np.bool_)) & _is_a(typed, (int, float, np.number))
    from_typed = pd.to_numeric(typed.where(numeric, None), errors="coerce")
    numbers = from_typed.where(~text, from_text).astype("float64")
    wrong = ~missing & numbers.isna()
    if kind == "float":
        return numbers.where(~wrong & ~missing).astype("Float64"), wrong
    whole = (numbers == np.floor(numbers)) & (numbers.abs() < 2.0**63)
    wrong = wrong | (~missing & ~whole.fillna(False).astype(bool))
    return numbers.where(~wrong & ~missing).round().astype("Int64"), wrong


def _bool_value(value: object) -> object:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str):
        return BOOL_TEXT.get(value, pd.NA)
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    return pd.NA


def _parse_dates(
    typed: pd.Series, text: pd.Series, stripped: pd.Series, missing: pd.Series
) -> tuple[pd.Series, pd.Series]:
    shaped = stripped.str.fullmatch(DATE_TEXT).fillna(False).astype(bool)
    from_text = pd.to_datetime(stripped.where(shaped), format="%Y-%m-%d", errors="coerce")
    dated = _is_a(typed, (date, np.datetime64))  # pd.Timestamp and datetime are dates too
    from_typed = pd.to_datetime(typed.where(dated, None), errors="coerce")
    parsed = from_text.where(text, from_typed).dt.normalize().astype("datetime64[us]")
    wrong = ~missing & parsed.isna()
    return parsed, wrong


@dataclass(frozen=True)
class Parsed:
    """A raw frame parsed by kind, with the cells that failed to parse."""

    frame: pd.DataFrame
    wrong_type: pd.DataFrame  # bool, same shape


def parse_frame(table: contract.Table, raw: pd.DataFrame) -> Parsed:
    parsed, wrong = {}, {}
    for col in table.columns:
        parsed[col.name], wrong[col.name] = parse_column(raw[col.name], col.kind)
    return Parsed(pd.DataFrame(parsed, index=raw.index), pd.DataFrame(wrong, index=raw.index))


# --- the reference validator: pandera plus the cross-table checks ---------------------------

PROBLEM_COLUMNS = ["row_number", "column_name", "reason"]


def _reason_of(check: str) -> str | None:
    if check == "not_nullable":
        return MISSING_VALUE
    if check.startswith(("str_matches", "isin", "snomed_check_digit")):
        return INVALID_CODE
    if check.startswith(("greater_than_or_equal_to", "less_than_or_equal_to", "in_range")):
        return OUT_OF_RANGE
    if check == "nhs_number":
        return NHS_NUMBER
    if check == "month_start":
        return NOT_FIRST_OF_MONTH
    if check == "future_date":
        return FUTURE_DATE
    if check.startswith("date_order"):
        return DATE_ORDER
    if check.endswith("uniqueness"):
        return DUPLICATE_KEY
    return None


def reference_problems(
    table: contract.Table,
    raw: pd.DataFrame,
    *,
    extract_date: date,
    persons: Iterable[str] | None = None,
    deaths: dict[str, date] | None = None,
    births: dict[str, date] | None = None,
) -> pd.DataFrame:
    """Every problem in `raw` (row i = row number i) as (row_number, column_name, reason).

    `persons` is the set of known person ids (None skips the check); `deaths` and `births`
    map a person to their date of death and month of birth. Rows are judged on their own
    first; keys are then judged among the rows without a problem. The store's SQL path must
    report exactly these problems.
    """
    raw = raw.reset_index(drop=True)
    parsed = parse_frame(table, raw)
    found: list[tuple[int, str, str]] = []
    for name in table.column_names:
        rows = np.flatnonzero(parsed.wrong_type[name].to_numpy())
        found += [(int(r), name, WRONG_TYPE) for r in rows]
    schema = schema_for(table, extract_date)
    found += _pandera_problems(schema, table, parsed, parsed.frame.index)
    found += _cross_table(table, parsed.frame, persons, deaths, births)
    valid = parsed.frame.index.difference(pd.Index([row for row, _, _ in found]))
    found += _pandera_problems(schema, table, parsed, valid, keys=True)
    out = pd.DataFrame(found, columns=PROBLEM_COLUMNS).drop_duplicates()
    return out.sort_values(PROBLEM_COLUMNS).reset_index(drop=True)


def _pandera_problems(
    schema: pa.DataFrameSchema,
    table: contract.Table,
    parsed: Parsed,
    rows: pd.Index,
    *,
    keys: bool = False,
) -> list[tuple[int, str, str]]:
    """The schema's failures on `rows`: row checks only, or (keys=True) key checks only."""
    frame = parsed.frame.loc[rows]
    try:
        schema.validate(frame, lazy=True)
        return []
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    found: list[tuple[int, str, str]] = []
    exact_dups = frame.duplicated(keep="first")
    for case in cases.itertuples(index=False):
        reason = _reason_of(str(case.check))
        if reason is None or pd.isna(case.index) or (reason == DUPLICATE_KEY) != keys:
            continue
        row, column = int(case.index), str(case.column)
        if reason == MISSING_VALUE and parsed.wrong_type.at[row, column]:
            continue  # reported as wrong_type
        if reason == DUPLICATE_KEY:
            reason, column = (DUPLICATE_ROW if exact_dups[row] else DUPLICATE_KEY), table.key[0]
        if reason == DATE_ORDER:
            column = str(case.check).split(":")[2]
        found.append((row, column, reason))
    return found


def _cross_table(
    table: contract.Table,
    frame: pd.DataFrame,
    persons: Iterable[str] | None,
    deaths: dict[str, date] | None,
    births: dict[str, date] | None,
) -> list[tuple[int, str, str]]:
    found: list[tuple[int, str, str]] = []
    pid = frame["person_id"]
    if persons is not None and table.name != "person":
        unknown = pid.notna() & ~pid.isin(set(persons))
        found += [(int(r), "person_id", UNKNOWN_PERSON) for r in np.flatnonzero(unknown)]
    if not table.event_date or table.name == "person":
        return found
    when = frame[table.event_date]
    if births:
        born = pd.to_datetime(pid.map(births), errors="coerce")
        before = (when < born).fillna(False).astype(bool)
        found += [(int(r), table.event_date, BEFORE_BIRTH) for r in np.flatnonzero(before)]
    if deaths and table.name != "death":
        died = pd.to_datetime(pid.map(deaths), errors="coerce")
        after = (when > died).fillna(False).astype(bool)
        found += [(int(r), table.event_date, AFTER_DEATH) for r in np.flatnonzero(after)]
    return found
