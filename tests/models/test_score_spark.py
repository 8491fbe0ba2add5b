"""`carerisk score-all` on Spark (local[2]) gives what DuckDB gives, row for row.

Both engines score the session's trained home (tests/conftest.py) with its champions; the
probabilities, bands, ranks and reasons must be identical (the same per-partition function,
band cut, rank SQL and reasons), here with several partitions and an objector left out. The
Spark path writes Parquet partitions that DuckDB reads into the scores history and the
exports: those must hold what the DuckDB path stores, byte for byte in the exports' tables.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.engines import spark_session
from features.home import Home
from features.outcomes import PRODUCT
from features.scores_history import read_scores, write_scores, write_scores_parquet
from features.snapshot import read_snapshot_people
from models.score_all import score_snapshot
from models.score_spark import rebuilt, score_snapshot_spark, ship_text
from training.champions import registry_champions


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = spark_session("carerisk-test-score")
    yield session
    session.stop()


@pytest.mark.spark
@pytest.mark.slow
def test_duckdb_and_spark_give_identical_scores_ranks_and_reasons(
    trained_home: Path, spark: Any
) -> None:
    home = Home(trained_home)
    champions = registry_champions(home.default_tracking_uri, list(PRODUCT))
    snapshot = read_snapshot_people(home.store_path)
    objector = str(snapshot.loc[snapshot["cohort_falls"].astype(bool), "person_id"].iloc[3])
    on_duckdb = score_snapshot(snapshot, champions, {objector})
    on_spark = score_snapshot_spark(
        home.store_path, champions, spark, {objector}, partition_rows=900
    )
    assert objector not in set(on_duckdb["person_id"])
    assert set(on_duckdb["outcome"]) == {o.name for o in PRODUCT} and len(on_duckdb) > 1000
    # exact: the same function on the same float64 values
    np.testing.assert_array_equal(on_spark["probability"], on_duckdb["probability"])
    pd.testing.assert_frame_equal(on_spark, on_duckdb)


@pytest.mark.spark
@pytest.mark.slow
def test_the_shipped_models_are_plain_text_rebuilt_once(trained_home: Path) -> None:
    home = Home(trained_home)
    champions = registry_champions(home.default_tracking_uri, list(PRODUCT))
    models = [c.scoring() for c in champions]
    text = ship_text(models, {"P1"}, 5)
    first = rebuilt(text)
    assert rebuilt(text) is first  # a worker rebuilds the models once per shipped text
    again, blocked, top_k = first
    assert blocked == {"P1"} and top_k == 5
    for model, copy in zip(models, again, strict=True):
        assert copy.bundle.model_text == model.bundle.model_text
        assert copy.bundle.calibrator == model.bundle.calibrator
        assert copy.bundle.features == model.bundle.features
        assert (copy.outcome, copy.version, copy.run_id) == (model.outcome, model.version,
                                                             model.run_id)  # fmt: skip


def stored_scores(store: Path) -> pd.DataFrame:
    parts = [read_scores(store, o.name) for o in PRODUCT]
    return pd.concat(parts, ignore_index=True).drop(columns="scored_at")


def export_tables(folder: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table of every export in `folder`, as rows, by file name and table."""
    import duckdb

    found = {}
    for path in sorted(folder.glob("scores-*.duckdb")):
        with duckdb.connect(str(path), read_only=True) as con:
            for table in ("people", "by_practice", "by_district", "by_county", "meta"):
                found[f"{path.name}:{table}"] = con.execute(f"SELECT * FROM {table}").fetchall()
    return found


@pytest.mark.spark
@pytest.mark.slow
def test_cli_score_all_on_spark_stores_and_exports_what_duckdb_does(
    trained_home: Path, tmp_path: Path
) -> None:
    from tests.live import carerisk

    env = {"MLFLOW_TRACKING_URI": Home(trained_home).default_tracking_uri}
    homes = {}
    for engine in ("duckdb", "spark"):
        root = tmp_path / engine
        root.mkdir()
        shutil.copy(Home(trained_home).store_path, Home(root).store_path)
        result = carerisk(root, "score-all", "--engine", engine, "--json", env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        homes[engine] = root
    stored = read_scores(Home(homes["spark"]).store_path, "falls")
    assert len(stored) > 500 and stored["reasons_clinical"].notna().all()
    assert sorted(stored["rank_county"]) == list(range(1, len(stored) + 1))
    on_duckdb, on_spark = (stored_scores(Home(homes[e]).store_path) for e in ("duckdb", "spark"))
    pd.testing.assert_frame_equal(on_spark, on_duckdb)
    exports = {e: export_tables(Home(homes[e]).scores_dir) for e in ("duckdb", "spark")}
    assert len(exports["spark"]) == 5 * len(PRODUCT) and exports["spark"] == exports["duckdb"]
    assert not list(homes["spark"].glob(".score-all-*"))  # the Parquet files are cleared away
    refused = carerisk(homes["spark"], "score-all", "--engine", "flink", env=env)
    assert refused.returncode != 0 and "--engine must be one of" in refused.stdout + refused.stderr


def scores_parquet(frame: pd.DataFrame, folder: Path, parts: int) -> Path:
    """`frame` as `parts` Parquet files in `folder` (as Spark's executors write them)."""
    folder.mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[chunk].to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    return folder


def test_scores_from_parquet_are_stored_as_the_frame_is(tmp_path: Path) -> None:
    from tests.models.test_score_all import TIES, ranked

    frame = ranked(TIES).reset_index()
    from_frame, from_parquet = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    write_scores(from_frame, frame)
    first = write_scores_parquet(from_parquet, scores_parquet(frame, tmp_path / "p", 3))
    assert [w.rows for w in first] == [len(frame)] and not first[0].unchanged
    pd.testing.assert_frame_equal(stored_scores(from_parquet), stored_scores(from_frame))
    again = write_scores_parquet(from_parquet, tmp_path / "p", objections={"P3"})
    assert again[0].withdrawn == 1 and not again[0].unchanged  # withdrawn, then written again
    assert write_scores(from_frame, frame, objections={"P3"})[0].withdrawn == 1
    pd.testing.assert_frame_equal(stored_scores(from_parquet), stored_scores(from_frame))
    assert write_scores_parquet(from_parquet, tmp_path / "p")[0].unchanged


def test_parquet_scores_that_list_a_person_twice_are_refused(tmp_path: Path) -> None:
    from tests.models.test_score_all import TIES, ranked

    frame = ranked(TIES).reset_index()
    twice = scores_parquet(pd.concat([frame, frame.iloc[[2]]]), tmp_path / "p", 2)
    with pytest.raises(ValueError, match="list person P2 twice"):
        write_scores_parquet(tmp_path / "s.duckdb", twice)
    with pytest.raises(ValueError, match="no Parquet files"):
        write_scores_parquet(tmp_path / "s.duckdb", tmp_path / "none")
