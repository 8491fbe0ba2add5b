"""Malformed extracts through `carerisk load`: every bad row of each kind is quarantined with
its kind as the reason, and every row of the clean extract reaches the store.

The synthetic generator's mess adds changed copies of real rows and lists each in
truth/mess.parquet (table, row_number, column, kind); the same seed without mess gives the clean
extract, so "nothing valid lost" is: the messy store holds exactly the clean store's rows.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from features.contract import TABLE_NAMES
from features.home import Home
from synthetic import CountyConfig, generate
from synthetic.mess import KINDS
from tests.live import carerisk

pytestmark = pytest.mark.slow

PEOPLE, SEED, MESS = 1_200, 23, 0.02


def load(home: Path, extract: Path) -> None:
    result = carerisk(home, "load", str(extract), "--json")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.fixture(scope="module", params=["parquet", "csv"])
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Clean and messy extracts of one county in one format, each loaded into a fresh home."""
    fmt = request.param
    root = tmp_path_factory.mktemp(f"extracts-{fmt}")
    for name, rate in (("clean", 0.0), ("messy", MESS)):
        config = CountyConfig(people=PEOPLE, seed=SEED, mess_rate=rate, chunk_people=1_000)
        generate(config, root / name, fmt=fmt)
        load(root / f"{name}-home", root / name)
    return root


def test_every_bad_row_is_quarantined_with_its_kind(loaded: Path) -> None:
    """Rows of each kind are quarantined where the manifest lists them, with the kind as the
    reason. A duplicate may sit before its original, and the loader keeps the first of two
    identical rows, so duplicates are matched by content rather than position."""
    mess = pq.read_table(loaded / "messy" / "truth" / "mess.parquet").to_pylist()
    assert {m["kind"] for m in mess} == set(KINDS)
    reasons = quarantined(loaded / "messy-home")
    placed = [m for m in mess if m["kind"] != "duplicate_row"]
    missed = [m for m in placed if m["kind"] not in reasons.get((m["table"], m["row_number"]), ())]
    assert not missed, f"{len(missed)} bad rows not quarantined as listed: {missed[:5]}"
    listed = {(m["table"], m["row_number"]) for m in placed}
    dup_rows = {k for k, why in reasons.items() if why == {"duplicate_row"}}
    extra = sorted(set(reasons) - listed - dup_rows)
    assert not extra, f"rows quarantined that are not listed as bad: {extra[:5]}"
    for table in TABLE_NAMES:
        wanted = [
            m["row_number"] for m in mess if m["table"] == table and m["kind"] == "duplicate_row"
        ]
        got = [row for t, row in dup_rows if t == table]
        source = extract_rows(loaded / "messy", table)
        assert Counter(source[r] for r in got) == Counter(source[r] for r in wanted), table


def quarantined(home: Path) -> dict[tuple[str, int], set[str]]:
    """(table, row_number) -> the reasons it was quarantined for."""
    with duckdb.connect(str(Home(home).store_path), read_only=True) as con:
        rows = con.execute("SELECT table_name, row_number, reason FROM quarantine").fetchall()
    reasons: dict[tuple[str, int], set[str]] = {}
    for table, row, reason in rows:
        reasons.setdefault((table, row), set()).add(reason)
    return reasons


def extract_rows(extract: Path, table: str) -> list[tuple[object, ...]]:
    """Every row of one extract file, in file order, as text."""
    [path] = extract.glob(f"{table}.*")
    reader = (
        f"read_parquet('{path}')"
        if path.suffix == ".parquet"
        else f"read_csv('{path}', all_varchar = true, header = true)"
    )
    with duckdb.connect() as con:
        con.execute("SET preserve_insertion_order = true")
        frame = con.execute(f"SELECT * FROM {reader}").fetchall()
    return [tuple(str(v) for v in row) for row in frame]


def test_nothing_valid_is_lost(loaded: Path) -> None:
    clean = str(Home(loaded / "clean-home").store_path)
    messy = str(Home(loaded / "messy-home").store_path)
    with duckdb.connect(clean, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
        con.execute(f"ATTACH '{messy}' AS messy (READ_ONLY)")
        for table in TABLE_NAMES:
            lost = con.execute(
                f"SELECT count(*) FROM (SELECT * FROM main.{table} EXCEPT ALL "
                f"SELECT * FROM messy.main.{table})"
            ).fetchone()
            let_in = con.execute(
                f"SELECT count(*) FROM (SELECT * FROM messy.main.{table} EXCEPT ALL "
                f"SELECT * FROM main.{table})"
            ).fetchone()
            total = con.execute(f"SELECT count(*) FROM main.{table}").fetchone()
            assert total is not None and total[0] > 0, table
            assert lost == (0,), f"{table}: {lost} clean rows missing after the messy load"
            assert let_in == (0,), f"{table}: {let_in} rows loaded that the clean extract lacks"
