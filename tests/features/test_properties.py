"""Property tests: records on or after D never change features at D; a record before D
changes only its own person's features whose sources and window hold it."""

from __future__ import annotations

import random
import tempfile
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from features.engines import compute_features
from features.feature_list import FEATURES
from tests.features._records import Row, death, group, make_store, random_county, random_record

D = date(2023, 7, 1)
START = date(2021, 1, 1)
PEOPLE = 30


@cache
def _base() -> tuple[list[tuple[str, Row]], pd.DataFrame]:
    records = random_county(random.Random(11), PEOPLE, START, date(2024, 6, 30))
    with tempfile.TemporaryDirectory() as folder:
        store = make_store(Path(folder) / "base.duckdb", records)
        return records, compute_features(store, D, data_start=START).set_index("person_id")


def _with(record: tuple[str, Row]) -> pd.DataFrame:
    records, _ = _base()
    rows = group(records)
    if record[0] == "death":  # one death per person: replace any earlier one
        rows["death"] = [
            r for r in rows.get("death", []) if r["person_id"] != record[1]["person_id"]
        ]
    rows.setdefault(record[0], []).append(record[1])
    with tempfile.TemporaryDirectory() as folder:
        store = make_store(Path(folder) / "s.duckdb", rows)
        return compute_features(store, D, data_start=START).set_index("person_id")


def _died_before_d(pid: str) -> bool:
    records, _ = _base()
    return any(
        r["person_id"] == pid and r["date_of_death"] < D for r in group(records).get("death", [])
    )


def _may_change(table: str, days_before: int) -> set[str]:
    out = set()
    for item in FEATURES:
        if table not in item.sources:
            continue
        window = item.window_days
        # bed days count the stay inside each window, so a spell admitted up to 730 days
        # before D may reach into the shorter windows
        if item.name.startswith("emergency_bed_days_"):
            window = 730
        if window is None or days_before <= window:
            out.add(item.name)
    return out


people = st.integers(0, PEOPLE - 1).map(lambda i: f"R{i:06d}")
seeds = st.integers(0, 10_000)
pytestmark = pytest.mark.slow
quick = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@quick
@given(pid=people, seed=seeds, offset=st.integers(0, 500), dies=st.booleans())
def test_records_on_or_after_d_change_nothing(pid: str, seed: int, offset: int, dies: bool) -> None:
    # a person holds one death: a new one for someone dead before D would remove that record
    assume(not (dies and _died_before_d(pid)))
    day = D + timedelta(days=offset)
    record = death(pid, day) if dies else random_record(random.Random(seed), pid, day)
    _, base = _base()
    changed = _with(record)
    pd.testing.assert_frame_equal(changed, base)


@quick
@given(pid=people, seed=seeds, days_before=st.integers(1, 800))
def test_a_record_before_d_changes_only_what_its_window_holds(
    pid: str, seed: int, days_before: int
) -> None:
    record = random_record(random.Random(seed), pid, D - timedelta(days=days_before))
    _, base = _base()
    changed = _with(record)
    assert list(changed.index) == list(base.index)
    others = [p for p in base.index if p != pid]
    pd.testing.assert_frame_equal(changed.loc[others], base.loc[others])
    if pid in base.index:
        before, after = base.loc[pid], changed.loc[pid]
        differs = {c for c in base.columns if not _same(before[c], after[c])}
        assert differs <= _may_change(record[0], days_before), (record, differs)


def _same(a: Any, b: Any) -> bool:
    return bool((pd.isna(a) and pd.isna(b)) or a == b)
