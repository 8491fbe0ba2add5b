"""The weighted sample of negative person-dates (features/training_sets.py
NegativeSampling): deterministic, every positive kept, weights that restore the event rate,
chosen in the engine's query, and the same rows and weights on DuckDB and Spark."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.engines import spark_session
from features.outcomes import COMPLEX_DEPENDENCY
from features.training_sets import (
    WEIGHT,
    NegativeSampling,
    build_training_set,
    feature_columns,
    sample_sizes,
)
from tests.features._records import make_store, random_county

DATES = [date(2022, 7, 1), date(2022, 10, 1), date(2023, 1, 1)]
START = date(2021, 1, 1)


def _people(n: int, positives: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "person_id": [f"P{seed}-{i:06d}" for i in range(n)],
            "label": (rng.random(n) < positives).astype("int64"),
        }
    )


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2_000, 20_000),
    positives=st.floats(0.005, 0.3),
    fraction=st.floats(0.02, 0.9),
    seed=st.integers(0, 2**31),
    day=st.dates(date(2015, 1, 1), date(2030, 12, 31)),
)
def test_weights_keep_every_positive_and_restore_the_event_rate(
    n: int, positives: float, fraction: float, seed: int, day: date
) -> None:
    people = _people(n, positives, seed % 1000)
    weight = NegativeSampling(fraction, seed).weights(people, day)
    label = people["label"].to_numpy()
    kept = weight.notna().to_numpy()
    assert kept[label == 1].all() and (weight[label == 1] == 1.0).all()
    assert np.allclose(weight[kept & (label == 0)], 1 / fraction)
    # the kept negatives' weights stand for every negative: Binomial(n0, f) / f, so within
    # five standard deviations of n0; the weighted event rate is then the full rate
    n0, events = int((label == 0).sum()), int(label.sum())
    represented = float(weight[kept & (label == 0)].sum())
    sd = math.sqrt(n0 * (1 - fraction) / fraction)
    assert abs(represented - n0) <= 5 * sd + 1 / fraction
    full_rate = events / n
    weighted_rate = events / (events + represented)
    assert weighted_rate == pytest.approx(full_rate, abs=5 * sd * full_rate / n + 1e-12)


def test_the_sample_is_deterministic_and_one_persons_draw_ignores_the_others() -> None:
    people = _people(5_000, 0.05, 1)
    sampling = NegativeSampling(0.1, 42)
    first = sampling.weights(people, date(2023, 1, 1))
    pd.testing.assert_series_equal(first, sampling.weights(people, date(2023, 1, 1)))
    some = people.sample(1_000, random_state=3)
    pd.testing.assert_series_equal(sampling.weights(some, date(2023, 1, 1)), first[some.index])
    # another date or seed draws other negatives, at the same rate
    other_day = sampling.weights(people, date(2023, 4, 1))
    other_seed = NegativeSampling(0.1, 43).weights(people, date(2023, 1, 1))
    for other in (other_day, other_seed):
        assert not other.notna().equals(first.notna())
        assert other.notna().sum() == pytest.approx(first.notna().sum(), rel=0.2)


def test_whole_people_keep_every_row_at_weight_one() -> None:
    people = _people(3_000, 0.05, 2)
    whole = people["person_id"].str.endswith(("1", "2"))
    weight = NegativeSampling(0.1, 5, whole=lambda ids: ids.str.endswith(("1", "2")).to_numpy())
    out = weight.weights(people, date(2023, 1, 1))
    assert (out[whole] == 1.0).all()
    assert out[~whole & (people["label"] == 0)].isna().mean() == pytest.approx(0.9, abs=0.03)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_a_fraction_outside_zero_to_one_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="negative sampling fraction"):
        NegativeSampling(fraction, 1)


def _county(tmp_path: Path) -> Path:
    records = random_county(random.Random(11), 400, START, date(2024, 6, 30))
    return make_store(tmp_path / "county.duckdb", records)


def test_the_engine_keeps_the_sampled_rows_of_the_full_set(tmp_path: Path) -> None:
    store = _county(tmp_path)
    full = build_training_set(store, COMPLEX_DEPENDENCY, DATES, data_start=START)
    sampling = NegativeSampling(0.3, 9)
    sampled = build_training_set(
        store, COMPLEX_DEPENDENCY, DATES, data_start=START, sampling=sampling
    )
    assert WEIGHT not in full and list(sampled.drop(columns=WEIGHT).columns) == list(full.columns)
    assert WEIGHT not in feature_columns(sampled)
    keys = ["person_id", "index_date"]
    merged = sampled.merge(full, on=keys, suffixes=("", "_full"), validate="one_to_one")
    assert len(merged) == len(sampled)  # every sampled row is a row of the full set, unchanged
    for column in feature_columns(full):
        pd.testing.assert_series_equal(merged[column], merged[f"{column}_full"], check_names=False)
    latest = full["index_date"] == full["index_date"].max()
    earlier = full[~latest]
    assert earlier["label"].sum() > 5 and (earlier["label"] == 0).sum() > 100
    # every positive and the whole validation date are kept, at weight 1
    positives = full[full["label"] == 1][keys].merge(sampled, on=keys, how="left")
    assert (positives[WEIGHT] == 1.0).all()
    on_latest = sampled[sampled["index_date"] == full["index_date"].max()]
    assert len(on_latest) == int(latest.sum()) and (on_latest[WEIGHT] == 1.0).all()
    negatives = sampled[
        (sampled["label"] == 0) & (sampled["index_date"] < on_latest["index_date"].max())
    ]
    assert np.allclose(negatives[WEIGHT], 1 / 0.3)
    assert len(negatives) == pytest.approx(0.3 * (earlier["label"] == 0).sum(), rel=0.25)
    # the rows are those the person-date draw chooses, and again on a second build
    again = build_training_set(
        store, COMPLEX_DEPENDENCY, DATES, data_start=START, sampling=sampling
    )
    pd.testing.assert_frame_equal(sampled, again)
    sizes = sample_sizes(sampled)
    assert sizes[str(DATES[-1])]["rows"] == len(on_latest)
    assert sum(s["rows"] for s in sizes.values()) == len(sampled)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = spark_session("carerisk-test-sampled")
    yield session
    session.stop()


@pytest.mark.spark
@pytest.mark.slow
def test_spark_keeps_the_same_rows_and_weights_as_duckdb(tmp_path: Path, spark: Any) -> None:
    store = _county(tmp_path)
    sampling = NegativeSampling(0.3, 9)
    on_duckdb = build_training_set(
        store, COMPLEX_DEPENDENCY, DATES, data_start=START, sampling=sampling
    )
    on_spark = build_training_set(
        store, COMPLEX_DEPENDENCY, DATES, "spark", data_start=START, sampling=sampling,
        spark=spark,
    )  # fmt: skip
    assert (on_duckdb[WEIGHT] > 1).any()
    pd.testing.assert_frame_equal(on_duckdb, on_spark)
