"""`carerisk score-all --engine spark`: the snapshot scored and explained on Spark.

The snapshot's people (features.snapshot.copy_snapshot_people, as Parquet) are a Spark
DataFrame. Each partition runs models.score_all.score_people, the DuckDB path's function,
inside `mapInPandas`; the ranked rows are written as Parquet partitions by the executors, and
DuckDB reads those files into the scores history and the exports
(models.score_all.store_and_export), so the driver never holds the scored rows. The champions
travel once, as one broadcast JSON text (LightGBM model text, calibrator and features as plain
data; no pickled objects), and each Python worker rebuilds them once (a module-level cache
keyed by the text's sha256). The ranks are Spark window functions from the same SQL text
DuckDB runs (features.scores_history.ranked_sql).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from features.scores_history import COLUMNS, RANKED, ranked_sql
from features.snapshot import copy_snapshot_people
from models.score_all import TOP_K, Champion, ScoringModel, finish, score_people

PARTITION_ROWS = 50_000  # people per Spark partition (at least one partition per core)
SPARK_TYPES = {"DATE": "date", "VARCHAR": "string", "DOUBLE": "double", "INTEGER": "int"}

Shipped = tuple[list[ScoringModel], frozenset[str], int]
_REBUILT: dict[str, Shipped] = {}  # per Python worker: sha256 of the shipped text -> models


def spark_schema(columns: Iterable[str]) -> str:
    """A Spark DDL schema of these scores-history columns."""
    return ", ".join(f"{c} {SPARK_TYPES[COLUMNS[c]]}" for c in columns)


def ship_text(models: Sequence[ScoringModel], objections: Iterable[str], top_k: int) -> str:
    """What every executor needs, as one JSON text."""
    return json.dumps(
        {
            "models": [m.to_json() for m in models],
            "objections": sorted(set(objections)),
            "top_k": top_k,
        }
    )


def rebuilt(text: str) -> Shipped:
    """The models of a shipped text, built once per Python worker."""
    key = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if key not in _REBUILT:
        data = json.loads(text)
        _REBUILT.clear()  # only the latest run's models are kept
        _REBUILT[key] = (
            [ScoringModel.from_json(m) for m in data["models"]],
            frozenset(data["objections"]),
            int(data["top_k"]),
        )
    return _REBUILT[key]


def _score_batches(shipped: Any, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """mapInPandas's function: each Arrow batch of people through score_people."""
    models, blocked, top_k = rebuilt(shipped.value)
    for batch in batches:
        yield _object_strings(score_people(batch, models, blocked, top_k))


def _object_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """pandas 3's Arrow-backed text columns as plain objects: PySpark 4.0's Arrow writer takes
    arrays, not the chunked arrays those convert to."""
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c].dtype)]
    return frame.astype(dict.fromkeys(text, object))


def score_snapshot_spark(
    store_path: Path,
    champions: Sequence[Champion],
    spark: Any,
    objections: Iterable[str] = (),
    top_k: int = TOP_K,
    partition_rows: int = PARTITION_ROWS,
) -> pd.DataFrame:
    """score_snapshot's rows (COLUMNS, same order and types), computed on `spark` and read
    back whole (for tests and small counties; `carerisk score-all` reads the Parquet files
    of `write_scores_spark` with DuckDB instead)."""
    with tempfile.TemporaryDirectory(prefix="carerisk-score-") as folder:
        target = Path(folder) / "scores.parquet"
        write_scores_spark(store_path, champions, spark, target, objections, top_k, partition_rows)
        return finish(_read_parquet(target))


def write_scores_spark(
    store_path: Path,
    champions: Sequence[Champion],
    spark: Any,
    target: Path,
    objections: Iterable[str] = (),
    top_k: int = TOP_K,
    partition_rows: int = PARTITION_ROWS,
) -> Path:
    """Score and rank the snapshot on `spark` and write the ranked rows (COLUMNS) as Parquet
    partitions into the folder `target`, by the executors: the driver collects no rows."""
    models = [c.scoring() for c in champions]
    with tempfile.TemporaryDirectory(prefix="carerisk-score-") as folder:
        source = Path(folder) / "people.parquet"
        rows = copy_snapshot_people(store_path, source)
        parts = max(spark.sparkContext.defaultParallelism, math.ceil(rows / partition_rows))
        people = spark.read.parquet(str(source)).repartition(parts)
        _check_one_date(people)
        shipped = spark.sparkContext.broadcast(ship_text(models, objections, top_k))
        try:
            scored = people.mapInPandas(partial(_score_batches, shipped), spark_schema(RANKED))
            view = f"carerisk_scores_{Path(folder).name.replace('-', '_')}"
            scored.createOrReplaceTempView(view)
            spark.sql(ranked_sql(view)).write.parquet(str(target))
            spark.catalog.dropTempView(view)
        finally:
            shipped.destroy()
    return target


def _check_one_date(people: Any) -> None:
    days = people.select("index_date").distinct().limit(2).count()
    if days > 1:
        raise ValueError("the snapshot holds more than one index date; it must hold one")


def _read_parquet(folder: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(str(folder)).to_pandas()
