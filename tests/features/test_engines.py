"""The same Ibis definitions give equal features on DuckDB and on Spark."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from features.engines import compute_features, spark_session
from tests.features._records import make_store, random_county

pytestmark = [pytest.mark.spark, pytest.mark.slow]
D = date(2023, 7, 1)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = spark_session("carerisk-test")
    yield session
    session.stop()


def test_duckdb_and_spark_agree_on_a_small_county(tmp_path: Path, spark: Any) -> None:
    records = random_county(random.Random(7), 120, date(2021, 1, 1), date(2024, 6, 30))
    store = make_store(tmp_path / "county.duckdb", records)
    on_duckdb = compute_features(store, D)
    on_spark = compute_features(store, D, "spark", spark=spark)
    assert len(on_duckdb) > 90
    assert on_duckdb["falls_730d"].sum() > 0 and on_duckdb["bmi"].notna().any()
    pd.testing.assert_frame_equal(on_duckdb, on_spark)


def test_unknown_engine_is_rejected(tmp_path: Path) -> None:
    store = make_store(tmp_path / "empty.duckdb", [])
    with pytest.raises(ValueError, match="unknown engine"):
        compute_features(store, D, "polars")  # type: ignore[arg-type]
