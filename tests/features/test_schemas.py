"""The pandera schemas are built from the contract, and agree with the store's SQL checks."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import pytest

from features import contract
from features.schemas import (
    REASONS,
    code_valid,
    parse_column,
    parse_frame,
    reference_problems,
    schema_for,
)
from features.store import connect, load_extract
from tests.features.conftest import EXTRACT_DATE, small_extract, write_extract
from tests.features.test_store import BAD_ROWS, plant_all, quarantine


@pytest.mark.parametrize("spec", contract.TABLES, ids=contract.TABLE_NAMES)
def test_schema_mirrors_the_contract(spec: contract.Table) -> None:
    schema = schema_for(spec, EXTRACT_DATE)
    assert list(schema.columns) == spec.column_names
    assert schema.unique == list(spec.key)
    for col in spec.columns:
        column = schema.columns[col.name]
        assert column.nullable == col.nullable
        names = " ".join(str(c) for c in column.checks)
        assert ("str_matches" in names) == bool(col.pattern)
        assert ("isin" in names) == (col.allowed is not None)
        assert ("snomed_check_digit" in names) == col.snomed
    assert len(schema.checks) == len(spec.ordered_dates)


@pytest.mark.parametrize("name", contract.TABLE_NAMES)
def test_clean_tables_pass_their_schema(name: str) -> None:
    spec = contract.table(name)
    parsed = parse_frame(spec, small_extract()[name])
    assert not parsed.wrong_type.to_numpy().any()
    schema_for(spec, EXTRACT_DATE).validate(parsed.frame, lazy=True)


def test_schema_rejects_bad_values() -> None:
    spec = contract.PERSON
    frame = small_extract()["person"]
    frame.loc[0, "sex"] = "X"
    frame.loc[1, "imd_decile"] = 0
    with pytest.raises(pa.errors.SchemaErrors) as err:
        schema_for(spec).validate(parse_frame(spec, frame).frame, lazy=True)
    cases = err.value.failure_cases
    assert set(zip(cases["column"], cases["index"], strict=True)) == {("sex", 0), ("imd_decile", 1)}


def test_parse_rules_by_kind() -> None:
    values = pd.Series(["5", " 7 ", "5.0", "5.5", "x", "", None], dtype=object)
    parsed, wrong = parse_column(values, "int")
    assert wrong.tolist() == [False, False, False, True, True, False, False]
    assert parsed.tolist()[:3] == [5, 7, 5]
    parsed, wrong = parse_column(pd.Series(["1.5", "nan", "n/a", " ", "1e3"]), "float")
    assert wrong.tolist() == [False, True, True, False, False]
    _, wrong = parse_column(pd.Series(["true", "FALSE", "1", "yes", None]), "bool")
    assert wrong.tolist() == [False, False, False, True, False]
    _, wrong = parse_column(pd.Series(["2024-02-29", "2023-02-29", "2024-1-5", "20240105"]), "date")
    assert wrong.tolist() == [False, True, True, True]


def test_code_valid() -> None:
    gp = contract.GP_EVENT.column("snomed_code")
    assert code_valid(gp, "1912002") and not code_valid(gp, "1912003")
    assert not code_valid(contract.PERSON.column("sex"), "U")
    assert not code_valid(contract.HOSPITAL_EPISODE.column("diag_01"), "S72.0")


def _read_raw(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False).astype(object)
    return raw.where(raw != "", None)


def _reference(folder: Path, when: date) -> set[tuple[str, int, str, str]]:
    """Run the pandera path table by table in load order, like the store does."""
    found: set[tuple[str, int, str, str]] = set()
    persons: set[str] | None = None
    deaths: dict[str, date] | None = None
    births: dict[str, date] | None = None
    for name in ("person", "death", *contract.TABLE_NAMES[1:-1]):
        spec = contract.table(name)
        path = next(folder.glob(f"{name}.*"))
        raw = _read_raw(path)
        problems = reference_problems(
            spec, raw, extract_date=when, persons=persons, deaths=deaths, births=births
        )
        found |= {(name, int(r), c, why) for r, c, why in problems.itertuples(index=False)}
        parsed = parse_frame(spec, raw).frame
        good = parsed[~parsed.index.isin(problems["row_number"])]
        if name == "person":
            persons = set(good["person_id"])
            births = dict(zip(good["person_id"], good["birth_month"], strict=True))
        if name == "death":
            deaths = dict(zip(good["person_id"], good["date_of_death"], strict=True))
    return found


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_sql_and_pandera_paths_agree(tmp_path: Path, fmt: str) -> None:
    tables = small_extract()
    expected = plant_all(tables)
    # a row with several problems at once
    tables["gp_event"].loc[0, "event_date"] = pd.Timestamp("2030-01-01")
    expected.add(("gp_event", 0, "event_date", "future_date"))
    folder = write_extract(tmp_path / "x", tables, fmt)
    store = tmp_path / "s.duckdb"
    load_extract(folder, store)
    sql = quarantine(store)
    assert sql == expected
    assert _reference(folder, EXTRACT_DATE) == sql
    assert {r for *_, r in sql} == set(REASONS)  # every reason exercised
    assert len(BAD_ROWS) + 1 == len(sql)
    with connect(store) as con:
        assert con.execute("SELECT count(DISTINCT reason) FROM quarantine").fetchone() == (13,)
