"""Run the Ibis feature definitions on DuckDB or on a local Spark session.

DuckDB reads the store directly (read-only). Spark reads Parquet copies of the store's
tables, written by DuckDB into a temporary folder, and runs the same Ibis expressions.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from features.contract import TABLES
from features.feature_list import FEATURES

if TYPE_CHECKING:
    import pyarrow as pa
    from ibis.backends import BaseBackend

    from features.codes import Codes
    from features.definitions import Sources

Engine = Literal["duckdb", "spark"]
ENGINES: tuple[Engine, ...] = ("duckdb", "spark")


# DuckDB optimizer passes left out on the feature queries (results unchanged):
# - build_side_probe_side: every join is person LEFT JOIN a one-row-per-person family, so hash
#   the family; the optimizer otherwise hashes the growing person side (0.6 s of 3.7 at 600k);
# - projection_placement: spent 4.7 s planning one sampled training date (joined to the kept
#   person-dates) whose execution took 0.1 s (bench/bench_sampled_query.py).
DUCKDB_DISABLED_OPTIMIZERS = ("build_side_probe_side", "projection_placement")


def spark_session(app_name: str = "carerisk-features") -> Any:
    """A local two-core Spark session with no UI and small shuffles; nothing leaves the host.
    Its Python workers (mapInPandas) run this interpreter, unless PYSPARK_PYTHON says another."""
    import os
    import sys

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    return (
        SparkSession.builder.master("local[2]")
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.ansi.enabled", "false")
        .getOrCreate()
    )


def _check_store(store_path: Path) -> None:
    if not Path(store_path).exists():
        raise FileNotFoundError(f"no store at {store_path}")


def _duckdb_sources(con: BaseBackend) -> Sources:
    out = {}
    for spec in TABLES:
        try:
            out[spec.name] = con.table(spec.name)
        except Exception as err:  # the backend's "table not found" differs by version
            raise ValueError(f"the store has no table {spec.name}") from err
    return out


@contextmanager
def open_sources(
    store_path: Path, engine: Engine = "duckdb", spark: Any | None = None
) -> Iterator[Sources]:
    """The store's contract tables as Ibis tables on the chosen engine."""
    import ibis

    _check_store(store_path)
    if engine == "duckdb":
        con = ibis.duckdb.connect(str(store_path), read_only=True)
        con.raw_sql("SET enable_progress_bar = false")  # the CLI draws its own progress
        con.raw_sql(f"SET disabled_optimizers = '{','.join(DUCKDB_DISABLED_OPTIMIZERS)}'")
        try:
            yield _duckdb_sources(con)
        finally:
            con.disconnect()
    elif engine == "spark":
        session = spark if spark is not None else spark_session()
        with tempfile.TemporaryDirectory(prefix="carerisk-spark-") as folder:
            yield _spark_sources(store_path, Path(folder), session)
    else:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


def _spark_sources(store_path: Path, folder: Path, session: Any) -> Sources:
    import duckdb
    import ibis

    con = duckdb.connect(str(store_path), read_only=True)
    try:
        for spec in TABLES:
            target = folder / f"{spec.name}.parquet"
            con.execute(f"COPY (SELECT * FROM \"{spec.name}\") TO '{target}' (FORMAT parquet)")
    finally:
        con.close()
    backend = ibis.pyspark.connect(session)
    tag = folder.name.replace("-", "_")
    return {
        spec.name: backend.read_parquet(
            str(folder / f"{spec.name}.parquet"), table_name=f"{spec.name}_{tag}"
        )
        for spec in TABLES
    }


def normalise(table: pa.Table) -> pd.DataFrame:
    """Registry order, sorted by person_id; numbers as float64, categories as strings.

    Cast in Arrow and converted without consolidating blocks: on 600k people this takes a
    fifth of a second where the same casts in pandas took two.
    """
    import pyarrow as pa

    columns = {"person_id": table.column("person_id").cast(pa.string())}
    for item in FEATURES:
        kind = pa.string() if item.kind == "categorical" else pa.float64()
        columns[item.name] = table.column(item.name).cast(kind)
    out = pa.table(columns).to_pandas(split_blocks=True)
    if out["person_id"].is_monotonic_increasing:  # the engines sort already
        return out
    return out.sort_values("person_id", kind="stable").reset_index(drop=True)


def features_from_sources(
    src: Sources,
    index_date: date,
    data_start: date | None,
    codes: Codes | None = None,
    missing: Collection[str] = (),
) -> pd.DataFrame:
    """`missing`: features the source cannot give, NULL for everyone (features.coverage)."""
    from features.definitions import feature_table

    start = data_start or (index_date - timedelta(days=730))
    table = feature_table(src, index_date, start, codes, missing).order_by("person_id")
    # Through Arrow: Ibis's to_pandas() cost a third of the whole job on 600k people.
    return normalise(table.to_pyarrow())


def compute_features(
    store_path: Path,
    index_date: date,
    engine: Engine = "duckdb",
    *,
    data_start: date | None = None,
    spark: Any | None = None,
    history_from: date | None = None,
    codes: Codes | None = None,
) -> pd.DataFrame:
    """Every registry feature at `index_date` for everyone alive and registered at it.

    `data_start` (the first day of the extract) sets `lookback_days`; by default it is the
    store's (features.extent.data_start). `spark` reuses an existing SparkSession.
    `history_from`: compute them as an extract starting on that day would (`windowed`); it
    is then the data start. `codes`: the code lists' codes (default: the packaged lists).
    """
    from features.coverage import read_store_coverage
    from features.extent import data_start as store_start

    store_path = Path(store_path)
    _check_store(store_path)
    start = history_from or data_start or store_start(store_path)
    missing = read_store_coverage(store_path).missing_features(FEATURES)
    with open_sources(store_path, engine, spark) as src:
        return features_from_sources(windowed(src, history_from) if history_from else src,
                                     index_date, start, codes, missing)  # fmt: skip


def windowed(src: Sources, start: date) -> Sources:
    """The sources as an extract beginning on `start` holds them: activity dated before it
    left out; a social care service kept while it runs on or after it (an extract lists the
    services active in its window, whenever they began); people and deaths kept whole."""
    from features.definitions import lit

    out = {}
    for spec in TABLES:
        table = src[spec.name]
        if spec.name == "social_care":
            table = table.filter(table.end_date.isnull() | (table.end_date >= lit(start)))
        elif spec.event_date and spec.name != "death":
            table = table.filter(table[spec.event_date] >= lit(start))
        out[spec.name] = table
    return out


__all__ = [
    "ENGINES",
    "Engine",
    "compute_features",
    "normalise",
    "open_sources",
    "spark_session",
    "windowed",
]
