"""Pandera schemas for the data contract, built from `features.contract`.

The schemas are the definition of a valid row. `features.store` compiles the same
contract to DuckDB SQL for speed; `reference_problems` runs these schemas (plus the
cross-table checks pandera cannot see) on a small frame, and the tests show both paths
report the same problems.

Text rules shared by both paths (CSV is all text; Parquet may carry text where the mess
injected it):
- empty text or only spaces is a missing value; a float NaN is a missing value;
- int: an optional sign and digits, optionally ".0"; a float value must be whole;
- float: any number DuckDB and pandas both read (not "nan");
- bool: true/false/1/0, any case;
- date: `YYYY-MM-DD` and a real calendar date.
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
from features.codes import snomed_valid

# Reason codes, in the order they are reported.
MISSING_VALUE = "missing_value"
WRONG_TYPE = "wrong_type"
INVALID_CODE = "invalid_code"
OUT_OF_RANGE = "out_of_range"
DUPLICATE_ROW = "duplicate_row"
DUPLICATE_KEY = "duplicate_key"
UNKNOWN_PERSON = "unknown_person"
AFTER_DEATH = "after_death"
FUTURE_DATE = "future_date"
DATE_ORDER = "date_order"
REASONS: tuple[str, ...] = (
    MISSING_VALUE,
    WRONG_TYPE,
    INVALID_CODE,
    OUT_OF_RANGE,
    DUPLICATE_ROW,
    DUPLICATE_KEY,
    UNKNOWN_PERSON,
    AFTER_DEATH,
    FUTURE_DATE,
    DATE_ORDER,
)

PANDAS_DTYPES: dict[str, str] = {
    "str": "string",
    "int": "Int64",
    "float": "Float64",
    "bool": "boolean",
    "date": "datetime64[us]",
}
INT_TEXT = r"^[+-]?[0-9]+(\.0*)?$"
DATE_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
BOOL_TEXT: dict[str, bool] = {"true": True, "false": False, "1": True, "0": False}


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
    return checks


def code_valid(col: contract.Column, value: str) -> bool:
    """One code against its column's pattern, SNOMED CT check digit and allowed set."""
    if col.pattern and not re.match(col.pattern, value):
        return False
    if col.snomed and not snomed_valid(value):
        return False
    return col.allowed is None or value in col.allowed


def _snomed_ok(values: pd.Series) -> pd.Series:
    unique = {v: snomed_valid(v) for v in values.dropna().unique()}
    return values.map(unique).fillna(True).astype(bool)


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


def _blank(values: pd.Series) -> pd.Series:
    as_text = values.astype("string")
    return (values.isna() | (as_text.str.strip(" ") == "")).fillna(True).astype(bool)


def _is_text(values: pd.Series) -> pd.Series:
    return values.map(lambda v: isinstance(v, str)).astype(bool)


def parse_column(values: pd.Series, kind: contract.Kind) -> tuple[pd.Series, pd.Series]:
    """Parse one column by kind; returns (parsed values, wrong-type mask)."""
    values = values.astype(object).where(values.notna(), None)
    missing = _blank(values)
    if kind == "str":
        parsed = values.astype("string").mask(missing)
        return parsed, pd.Series(False, index=values.index)
    text = _is_text(values) & ~missing
    stripped = values.where(text, None).astype("string").str.strip()
    if kind in ("int", "float"):
        numbers = pd.to_numeric(values.where(~text & ~missing, None), errors="coerce")
        parsed_text = pd.to_numeric(stripped, errors="coerce")
        numbers = numbers.where(~text, parsed_text).astype("float64")
        wrong = ~missing & numbers.isna()
        if kind == "int":
            pattern_ok = stripped.str.match(INT_TEXT).fillna(False).astype(bool)
            whole = (numbers == np.floor(numbers)).fillna(False).astype(bool)
            wrong = wrong | (text & ~pattern_ok) | (~missing & ~whole)
            return numbers.where(~wrong & ~missing).round().astype("Int64"), wrong
        return numbers.where(~wrong & ~missing).astype("Float64"), wrong
    if kind == "bool":
        lowered = values.map(_bool_value)
        wrong = ~missing & lowered.isna()
        return lowered.where(~missing & ~wrong, pd.NA).astype("boolean"), wrong
    return _parse_dates(values, text, stripped, missing)


def _bool_value(value: object) -> object:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str):
        return BOOL_TEXT.get(value.strip().lower(), pd.NA)
    if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
        return bool(value)
    return pd.NA


def _parse_dates(
    values: pd.Series, text: pd.Series, stripped: pd.Series, missing: pd.Series
) -> tuple[pd.Series, pd.Series]:
    shaped = stripped.str.match(DATE_TEXT).fillna(False).astype(bool)
    from_text = pd.to_datetime(stripped.where(shaped), format="%Y-%m-%d", errors="coerce")
    typed = values.where(~text & ~missing, None)
    from_typed = pd.to_datetime(typed, errors="coerce")
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
) -> pd.DataFrame:
    """Every problem in `raw` (row i = row number i) as (row_number, column_name, reason).

    `persons` is the set of known person ids (None skips the check); `deaths` maps a person
    to their date of death. The store's SQL path must report exactly these problems.
    """
    raw = raw.reset_index(drop=True)
    parsed = parse_frame(table, raw)
    found: list[tuple[int, str, str]] = []
    for name in table.column_names:
        rows = np.flatnonzero(parsed.wrong_type[name].to_numpy())
        found += [(int(r), name, WRONG_TYPE) for r in rows]
    found += _pandera_problems(table, raw, parsed, extract_date)
    found += _cross_table(table, parsed.frame, persons, deaths)
    out = pd.DataFrame(found, columns=PROBLEM_COLUMNS).drop_duplicates()
    return out.sort_values(PROBLEM_COLUMNS).reset_index(drop=True)


def _pandera_problems(
    table: contract.Table, raw: pd.DataFrame, parsed: Parsed, extract_date: date
) -> list[tuple[int, str, str]]:
    try:
        schema_for(table, extract_date).validate(parsed.frame, lazy=True)
        return []
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    found: list[tuple[int, str, str]] = []
    exact_dups = raw.astype("string").duplicated(keep="first")
    for case in cases.itertuples(index=False):
        reason = _reason_of(str(case.check))
        if reason is None or pd.isna(case.index):
            continue
        row, column = int(case.index), str(case.column)
        if reason == MISSING_VALUE and parsed.wrong_type.at[row, column]:
            continue  # reported as wrong_type
        if reason == DUPLICATE_KEY:
            if parsed.frame.loc[row, list(table.key)].isna().any():
                continue  # a missing key is reported as missing_value
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
) -> list[tuple[int, str, str]]:
    found: list[tuple[int, str, str]] = []
    pid = frame["person_id"]
    if persons is not None and table.name != "person":
        unknown = pid.notna() & ~pid.isin(set(persons))
        found += [(int(r), "person_id", UNKNOWN_PERSON) for r in np.flatnonzero(unknown)]
    if deaths and table.event_date and table.name != "death":
        died = pd.to_datetime(pid.map(deaths), errors="coerce")
        after = (frame[table.event_date] > died).fillna(False).astype(bool)
        found += [(int(r), table.event_date, AFTER_DEATH) for r in np.flatnonzero(after)]
    return found
