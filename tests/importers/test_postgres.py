"""The OMOP importer reading a PostgreSQL CDM (a throwaway cluster on loopback): the same
extract as from the same tables in a folder, and no password in the manifest."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from features import contract
from importers.omop import import_omop
from tests.importers.extracts import manifest, rows
from tests.importers.test_omop import CDM, write_folder
from tests.pg import PostgresCluster, PostgresUnavailable

# a throwaway PostgreSQL cluster on loopback for the module
pytestmark = pytest.mark.server

DATABASE = "cdm"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as error:
        pytest.skip(str(error))
    try:
        cluster.start()
        cluster.create_database(DATABASE)
        _fill(cluster)
        yield cluster
    finally:
        cluster.stop()


def _fill(cluster: PostgresCluster) -> None:
    """Every hand-built CDM table as a table of text columns, in schema omop."""
    con = cluster.connect(DATABASE)
    try:
        with con.cursor() as cur:
            cur.execute("CREATE SCHEMA omop")
            for table, (header, data) in CDM.items():
                cols = ", ".join(f"{c} text" for c in header)
                cur.execute(f"CREATE TABLE omop.{table} ({cols})")
                text = io.StringIO()
                csv.writer(text).writerows(data)
                text.seek(0)
                cur.copy_expert(f"COPY omop.{table} FROM STDIN WITH (FORMAT csv, NULL '')", text)
        con.commit()
    finally:
        con.close()


def test_postgres_gives_the_folder_extract(postgres: PostgresCluster, tmp_path: Path) -> None:
    url = f"postgresql://carerisk:not-a-secret@127.0.0.1:{postgres.port}/{DATABASE}"
    import_omop(url, tmp_path / "pg", schema="omop")
    import_omop(str(write_folder(tmp_path / "folder", CDM)), tmp_path / "csv")
    for spec in contract.TABLES:
        if (tmp_path / "csv" / f"{spec.name}.parquet").exists():
            assert rows(tmp_path / "pg", spec.name) == rows(tmp_path / "csv", spec.name)
    source = manifest(tmp_path / "pg")["coverage"]["source"]
    assert (source["kind"], source["form"]) == ("omop", "postgresql")
    assert "not-a-secret" not in source["location"]
    pg_sources = manifest(tmp_path / "pg")["coverage"]["sources"]
    assert pg_sources == manifest(tmp_path / "csv")["coverage"]["sources"]
