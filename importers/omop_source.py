"""Opening an OMOP CDM source (a DuckDB file, a PostgreSQL URL or a folder of CSV or Parquet
tables) as views `src.<table>` with the columns the importer reads, under their CDM 5.4 names.

Values are cast to the CDM's types (a value that cannot be cast is NULL, and the importer
drops the row naming the column). A column the importer may do without is NULL when the
source lacks it; a table the source lacks, or an empty table stored as its header in
`column0, column1, ...` columns (as Eunomia does), is an empty view. A required column that
is missing stops the import, naming it.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import duckdb

from features.store_sql import literal, quote
from importers.extract import SourceError

# table -> (column, DuckDB type, required); the importer reads nothing else
COLUMNS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "person": (
        ("person_id", "BIGINT", True),
        ("gender_concept_id", "BIGINT", True),
        ("year_of_birth", "BIGINT", True),
        ("month_of_birth", "BIGINT", False),
        ("birth_datetime", "TIMESTAMP", False),
        ("person_source_value", "VARCHAR", False),
    ),
    "condition_occurrence": (
        ("condition_occurrence_id", "BIGINT", True),
        ("person_id", "BIGINT", True),
        ("condition_concept_id", "BIGINT", True),
        ("condition_start_date", "DATE", True),
        ("condition_source_value", "VARCHAR", False),
        ("condition_source_concept_id", "BIGINT", False),
        ("condition_status_concept_id", "BIGINT", False),
        ("visit_occurrence_id", "BIGINT", False),
    ),
    "observation": (
        ("observation_id", "BIGINT", True),
        ("person_id", "BIGINT", True),
        ("observation_concept_id", "BIGINT", True),
        ("observation_date", "DATE", True),
        ("value_as_number", "DOUBLE", False),
        ("observation_source_value", "VARCHAR", False),
    ),
    "measurement": (
        ("measurement_id", "BIGINT", True),
        ("person_id", "BIGINT", True),
        ("measurement_concept_id", "BIGINT", True),
        ("measurement_date", "DATE", True),
        ("value_as_number", "DOUBLE", False),
        ("measurement_source_value", "VARCHAR", False),
    ),
    "drug_exposure": (
        ("drug_exposure_id", "BIGINT", True),
        ("person_id", "BIGINT", True),
        ("drug_concept_id", "BIGINT", True),
        ("drug_exposure_start_date", "DATE", True),
        ("drug_source_value", "VARCHAR", False),
    ),
    "visit_occurrence": (
        ("visit_occurrence_id", "BIGINT", True),
        ("person_id", "BIGINT", True),
        ("visit_concept_id", "BIGINT", True),
        ("visit_start_date", "DATE", True),
        ("visit_end_date", "DATE", False),
        ("admitted_from_concept_id", "BIGINT", False),
        ("preceding_visit_occurrence_id", "BIGINT", False),
    ),
    "death": (("person_id", "BIGINT", True), ("death_date", "DATE", True)),
    "concept": (
        ("concept_id", "BIGINT", True),
        ("concept_name", "VARCHAR", False),
        ("vocabulary_id", "VARCHAR", True),
        ("concept_class_id", "VARCHAR", False),
        ("concept_code", "VARCHAR", True),
    ),
    "concept_ancestor": (
        ("ancestor_concept_id", "BIGINT", True),
        ("descendant_concept_id", "BIGINT", True),
    ),
    "observation_period": (
        ("person_id", "BIGINT", True),
        ("observation_period_start_date", "DATE", True),
        ("observation_period_end_date", "DATE", True),
    ),
    "cdm_source": (("cdm_version", "VARCHAR", False), ("source_release_date", "DATE", False)),
}
# CDM 5.3 names of columns CDM 5.4 renamed (of those read here)
RENAMED_IN_54: dict[tuple[str, str], str] = {
    ("visit_occurrence", "admitted_from_concept_id"): "admitting_source_concept_id",
}
HEADER_COLUMN = re.compile(r"column[0-9]+")


@dataclass
class OmopSource:
    """The views over one opened source and what was learnt opening it."""

    kind: str  # duckdb, postgresql or folder
    location: str  # the path, or the URL without its password
    version: str = ""
    present: set[str] = field(default_factory=set)  # CDM tables with at least a header
    empty_header_tables: list[str] = field(default_factory=list)
    names_53: list[str] = field(default_factory=list)  # CDM 5.3 column names read


def open_omop(con: duckdb.DuckDBPyConnection, source: str, schema: str | None) -> OmopSource:
    """Attach or read `source` and create the src.<table> views; SourceError when it cannot
    be read or lacks a required column."""
    if re.match(r"^postgres(ql)?://", source):
        found = _attach_postgres(con, source, schema)
    else:
        path = Path(source)
        if path.is_dir():
            found = _folder(con, path)
        elif path.is_file():
            found = _attach_duckdb(con, path, schema)
        else:
            raise SourceError(f"OMOP source {source}: no such file or folder")
    src, relations = found
    con.execute("CREATE SCHEMA IF NOT EXISTS src")
    for table in COLUMNS:
        relation = relations.get(table)
        names = _columns(con, relation) if relation else []
        if relation and names and all(HEADER_COLUMN.fullmatch(n) for n in names):
            src.empty_header_tables.append(table)
            src.present.add(table)  # an empty table: present, with no rows
            relation, names = None, []
        if relation:
            src.present.add(table)
        view = _view(table, relation, names, src.names_53)
        con.execute(f"CREATE OR REPLACE VIEW src.{table} AS {view}")
    if "person" not in src.present:
        raise SourceError(f"OMOP source {src.location}: no person table")
    src.version = _version(con, src)
    return src


def _view(table: str, relation: str | None, names: list[str], used_53: list[str]) -> str:
    """SELECT of the table's columns under their 5.4 names, cast; NULL for optional absent
    ones; an empty SELECT when the table is absent. Adds the 5.3 names it read to used_53."""
    by_lower = {n.lower(): n for n in names}
    cols = []
    for col, kind, required in COLUMNS[table]:
        actual = by_lower.get(col) or by_lower.get(RENAMED_IN_54.get((table, col), ""))
        if relation and actual is None and required:
            raise SourceError(f"table {table}: no column {col}")
        if relation is None or actual is None:
            cols.append(f"CAST(NULL AS {kind}) AS {col}")
        else:
            cols.append(f"TRY_CAST({quote(actual)} AS {kind}) AS {col}")
            if actual.lower() != col:
                used_53.append(f"{table}.{actual.lower()}")
    body = ", ".join(cols)
    if relation is None:
        return f"SELECT {body} WHERE false"
    return f"SELECT {body} FROM {relation}"


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    try:
        return [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    except duckdb.Error as err:
        raise SourceError(f"cannot read {relation}: {str(err).splitlines()[0]}") from err


def _version(con: duckdb.DuckDBPyConnection, src: OmopSource) -> str:
    """5.3 or 5.4: cdm_source.cdm_version when it says, else from the visit columns."""
    row = con.execute("SELECT max(cdm_version) FROM src.cdm_source").fetchone()
    stated = str(row[0]) if row and row[0] else ""
    match = re.search(r"5\.[0-9]", stated)
    if match:
        return match.group(0)
    return "5.3" if src.names_53 else "5.4"


def _tables_in(
    con: duckdb.DuckDBPyConnection, database: str, schema: str | None, where: str
) -> dict[str, str]:
    """CDM table name -> qualified relation in an attached database, one schema."""
    rows = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? "
        "UNION SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = ?",
        [database, database],
    ).fetchall()
    schemas = {s for s, t in rows if t.lower() == "person"}
    if schema is None:
        if len(schemas) != 1:
            found = ", ".join(sorted(schemas)) or "none"
            raise SourceError(
                f"OMOP source {where}: give --schema (schemas with a person table: {found})"
            )
        schema = schemas.pop()
    return {
        t.lower(): f"{quote(database)}.{quote(s)}.{quote(t)}"
        for s, t in rows
        if s == schema and t.lower() in COLUMNS
    }


def _attach_duckdb(
    con: duckdb.DuckDBPyConnection, path: Path, schema: str | None
) -> tuple[OmopSource, dict[str, str]]:
    try:
        con.execute(f"ATTACH {literal(path)} AS cdm (READ_ONLY)")
    except duckdb.Error as err:
        raise SourceError(f"OMOP source {path}: {str(err).splitlines()[0]}") from err
    return OmopSource("duckdb", str(path)), _tables_in(con, "cdm", schema, str(path))


def _attach_postgres(
    con: duckdb.DuckDBPyConnection, url: str, schema: str | None
) -> tuple[OmopSource, dict[str, str]]:
    where = _without_password(url)
    try:
        con.execute("LOAD postgres")
    except duckdb.Error:
        return _postgres_by_copy(con, url, schema or "public", where)
    try:
        con.execute(f"ATTACH {literal(url)} AS cdm (TYPE postgres, READ_ONLY)")
    except duckdb.Error as err:
        raise SourceError(f"OMOP source {where}: {str(err).splitlines()[0]}") from err
    return OmopSource("postgresql", where), _tables_in(con, "cdm", schema or "public", where)


def _postgres_by_copy(
    con: duckdb.DuckDBPyConnection, url: str, schema: str, where: str
) -> tuple[OmopSource, dict[str, str]]:
    """Without DuckDB's postgres extension: each CDM table copied out with PostgreSQL's COPY
    to a CSV file in a temporary folder, then read like a folder source."""
    import psycopg2

    try:
        conn = psycopg2.connect(url)
    except psycopg2.Error as err:
        raise SourceError(f"OMOP source {where}: {str(err).strip().splitlines()[0]}") from err
    folder = Path(tempfile.mkdtemp(prefix="carerisk-omop-"))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                [schema],
            )
            names = [r[0] for r in cur.fetchall() if r[0].lower() in COLUMNS]
            for name in names:
                with (folder / f"{name.lower()}.csv").open("w", encoding="utf-8") as out:
                    cur.copy_expert(
                        f"COPY {quote(schema)}.{quote(name)} TO STDOUT WITH CSV HEADER", out
                    )
    except psycopg2.Error as err:
        shutil.rmtree(folder, ignore_errors=True)
        raise SourceError(f"OMOP source {where}: {str(err).strip().splitlines()[0]}") from err
    finally:
        conn.close()
    try:
        _, relations = _folder(con, folder)  # the CSV files are read into tables here
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return OmopSource("postgresql", where), relations


def _folder(con: duckdb.DuckDBPyConnection, folder: Path) -> tuple[OmopSource, dict[str, str]]:
    """A table per file <table>.csv or <table>.parquet (any case); every CSV value text."""
    relations: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        name, ext = path.stem.lower(), path.suffix.lower()
        if name not in COLUMNS or ext not in (".csv", ".parquet"):
            continue
        if name in relations:
            raise SourceError(f"OMOP source {folder}: two files for table {name}")
        if ext == ".csv":
            # read into a table first: DuckDB pushes casts into a CSV scan, where a value
            # that does not cast stops the read instead of being NULL
            raw = quote(f"raw_{name}")
            try:
                con.execute(
                    f"CREATE TABLE {raw} AS SELECT * FROM read_csv({literal(path)}, "
                    "header = true, all_varchar = true)"
                )
            except duckdb.Error as err:
                raise SourceError(f"table {name} ({path}): {str(err).splitlines()[0]}") from err
            relations[name] = raw
        else:
            relations[name] = f"read_parquet({literal(path)})"
    return OmopSource("folder", str(folder)), relations


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, "", ""))
