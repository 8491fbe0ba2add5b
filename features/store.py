"""The DuckDB store: load an extract folder, validate every row, quarantine the bad ones.

How a load runs:
1. Find one file per contract table (`<table>.parquet` or `<table>.csv`), read each header
   and check its columns against the contract (missing or extra columns stop the load).
2. Stage every file into an in-memory DuckDB database (CSV as text, Parquet as typed);
   an unreadable file stops the load. A CSV line that does not split into the header's
   fields is kept aside as a malformed row (`features.store_csv`). Nothing is written yet.
3. Check every table in load order (person, death, then the others): the contract checks
   compiled from the same contract as the pandera schemas (`features.store_sql`), rows on
   their own first, then keys among the valid rows. A load whose person ids are mostly NHS
   numbers stops here.
4. Attach the store file and, in one transaction, write each failed check to `quarantine`
   and merge the valid rows into the table: new keys are inserted, keys with changed
   content replaced, identical rows counted as unchanged. `load_log` gets one row per table.

A later extract of the same sources says whether it is `full` (every row the sources hold) or an
`increment` (new and changed rows only): `"kind"` in its manifest.json or the caller's `kind`,
never guessed; a store that holds a load already refuses an extract that does not say. A full
extract retires every stored row whose key it does not carry at all (a key read in one of its
quarantined rows keeps the stored row), and with a retired person every stored row of theirs.
A retired row and the stored version of a replaced row go to the table's history
(`<table>_history`, with the load that moved them there and why): nothing leaves the store
silently. Rows read = loaded (new keys) + updated + unchanged + quarantined, per table; rows
retired are counted beside them. The objections list is applied again after every load: scores
kept for people who have objected since are removed from the scores history.

Quarantine on reload: a quarantined row is identified by its table, key and content as the
contract reads them (`row_key`, `row_sha256`), not by its file: a row read again, whatever
file or line it comes from, first deletes its earlier entries, so a reload never duplicates
them (the `load_id` shows the latest load that saw them) and a row that now loads leaves the
quarantine. An NHS number is withheld from the quarantine's copy of a row.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import duckdb

from features import contract, scores_history, store_sql
from features.coverage import Coverage, CoverageError, agree, effective_table, from_block
from features.coverage import store_coverage as stored_coverage
from features.schemas import ALL_REASONS, MALFORMED_ROW, code_valid
from features.store_csv import (
    ContractError,
    csv_header,
    csv_keys,
    csv_source,
    malformed_lines,
    place_malformed,
)
from features.store_sql import literal, quote

__all__ = [
    "ContractError",
    "ExtractKind",
    "LoadReport",
    "TableReport",
    "connect",
    "load_extract",
]

Progress = Callable[[str, int, int], None]
ExtractKind = Literal["full", "increment"]
KINDS: tuple[str, ...] = get_args(ExtractKind)
LOAD_ORDER: tuple[str, ...] = (
    "person",
    "death",
    *(n for n in contract.TABLE_NAMES if n not in ("person", "death")),
)

QUARANTINE_SQL = """CREATE TABLE IF NOT EXISTS quarantine (
  load_id BIGINT, table_name VARCHAR, source_file VARCHAR, source_sha256 VARCHAR,
  row_number BIGINT, column_name VARCHAR, value VARCHAR, reason VARCHAR, detail VARCHAR,
  raw_row VARCHAR, row_key VARCHAR, row_sha256 VARCHAR)"""
# Stores made before rows were identified by content lack the last two columns.
QUARANTINE_IDENTITY_SQL = (
    "ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS row_key VARCHAR",
    "ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS row_sha256 VARCHAR",
)
LOAD_LOG_SQL = """CREATE TABLE IF NOT EXISTS load_log (
  load_id BIGINT, started_at TIMESTAMP, finished_at TIMESTAMP, extract_dir VARCHAR,
  extract_date DATE, table_name VARCHAR, source_file VARCHAR, source_sha256 VARCHAR,
  rows_read BIGINT, rows_loaded BIGINT, rows_unchanged BIGINT, rows_quarantined BIGINT)"""
# Stores made before extracts said their kind lack these.
LOAD_LOG_MORE_SQL = (
    "ALTER TABLE load_log ADD COLUMN IF NOT EXISTS kind VARCHAR",
    "ALTER TABLE load_log ADD COLUMN IF NOT EXISTS rows_updated BIGINT",
    "ALTER TABLE load_log ADD COLUMN IF NOT EXISTS rows_retired BIGINT",
    # what the source lacks (features.coverage): the table's state, its columns not
    # supplied, and the load's whole coverage as JSON
    "ALTER TABLE load_log ADD COLUMN IF NOT EXISTS table_state VARCHAR",
    "ALTER TABLE load_log ADD COLUMN IF NOT EXISTS not_supplied VARCHAR",
    "ALTER TABLE load_log ADD COLUMN IF NOT EXISTS coverage VARCHAR",
)
LOAD_LOG_COLUMNS = (
    "load_id, started_at, finished_at, extract_dir, extract_date, table_name, source_file, "
    "source_sha256, rows_read, rows_loaded, rows_unchanged, rows_quarantined, kind, "
    "rows_updated, rows_retired, table_state, not_supplied, coverage"
)
# why a row went to its table's history
REPLACED, RETIRED = "replaced", "retired"
ABSENT = "absent from a full extract"
PERSON_RETIRED = "their person was retired"
HISTORY_COLUMNS = ("load_id", "change", "reason")


def history_table(name: str) -> str:
    """The history of a contract table: rows replaced or retired, with the load that did it."""
    return f"{name}_history"


def create_history_sql(spec: contract.Table) -> str:
    clash = set(HISTORY_COLUMNS) & set(spec.column_names)
    if clash:
        raise RuntimeError(f"table {spec.name} has column(s) {sorted(clash)} its history adds")
    cols = ", ".join(f"{quote(c.name)} {contract.DUCKDB_TYPES[c.kind]}" for c in spec.columns)
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(history_table(spec.name))} "
        f"(load_id BIGINT, change VARCHAR, reason VARCHAR, {cols})"
    )


@dataclass
class TableReport:
    table: str
    source_file: str
    rows_read: int = 0
    rows_loaded: int = 0  # new keys
    rows_updated: int = 0  # keys already stored with other content: replaced
    rows_unchanged: int = 0
    rows_quarantined: int = 0
    rows_retired: int = 0  # stored rows a full extract no longer carries (beside the others)
    reasons: dict[str, int] = field(default_factory=dict)  # quarantine entries per reason
    state: str = "mapped"  # mapped, proxy or absent (no file: the source holds no such table)
    not_supplied: list[str] = field(default_factory=list)  # columns the source does not supply

    @property
    def balanced(self) -> bool:
        return self.rows_read == (
            self.rows_loaded + self.rows_updated + self.rows_unchanged + self.rows_quarantined
        )


COUNTS = (
    "rows_read",
    "rows_loaded",
    "rows_updated",
    "rows_unchanged",
    "rows_quarantined",
    "rows_retired",
)


@dataclass
class LoadReport:
    extract_dir: str
    extract_date: date
    store_path: str | None  # None for a validation that writes nothing
    load_id: int | None = None
    kind: ExtractKind | None = None  # None: not stated, which only a first load may be
    tables: list[TableReport] = field(default_factory=list)
    seconds: float = 0.0
    objectors: int = 0  # people on the objections list who are in the store after the load
    scores_withdrawn: int = 0  # their kept scores, removed from the scores history
    coverage: Coverage = field(default_factory=Coverage)  # what the source lacks

    @property
    def ok(self) -> bool:
        """Every row read is accounted for (loaded, updated, unchanged or quarantined)."""
        return all(t.balanced for t in self.tables)

    @property
    def clean(self) -> bool:
        """Nothing was quarantined."""
        return all(t.rows_quarantined == 0 for t in self.tables)

    def table(self, name: str) -> TableReport:
        for t in self.tables:
            if t.table == name:
                return t
        raise KeyError(name)

    def totals(self) -> dict[str, int]:
        return {k: sum(getattr(t, k) for t in self.tables) for k in COUNTS}

    def reasons(self) -> dict[str, int]:
        out = dict.fromkeys(ALL_REASONS, 0)
        for t in self.tables:
            for reason, n in t.reasons.items():
                out[reason] += n
        return {k: v for k, v in out.items() if v}

    def to_dict(self) -> dict[str, Any]:
        return {
            "extract_dir": self.extract_dir,
            "extract_date": self.extract_date.isoformat(),
            "store_path": self.store_path,
            "load_id": self.load_id,
            "kind": self.kind,
            "ok": self.ok,
            "clean": self.clean,
            "seconds": round(self.seconds, 3),
            "totals": self.totals(),
            "reasons": self.reasons(),
            "objections": {"objectors": self.objectors, "scores_withdrawn": self.scores_withdrawn},
            "coverage": self.coverage.summary(),
            "tables": [asdict(t) for t in self.tables],
        }


# --- public API -------------------------------------------------------------------------


def load_extract(
    extract_dir: Path,
    store_path: Path,
    *,
    extract_date: date | None = None,
    kind: ExtractKind | None = None,
    objections: frozenset[str] = frozenset(),
    progress: Progress | None = None,
    memory_limit: str = "4GB",
) -> LoadReport:
    """Validate every row of an extract and load the valid ones into the DuckDB store.

    `kind` (else the manifest's "kind") says whether the extract is full or an increment; a
    store that holds a load already refuses an extract that says neither. `objections`: the
    person ids on the objections list, applied again to what the store keeps about people.
    """
    how = _How(resolve_kind(Path(extract_dir), kind), objections)
    return _run(Path(extract_dir), Path(store_path), extract_date, progress, memory_limit, how)


def validate_extract(
    extract_dir: Path,
    *,
    extract_date: date | None = None,
    progress: Progress | None = None,
    memory_limit: str = "4GB",
) -> LoadReport:
    """The same checks as `load_extract` against an empty store; writes nothing."""
    how = _How(resolve_kind(Path(extract_dir), None), frozenset())
    return _run(Path(extract_dir), None, extract_date, progress, memory_limit, how)


def connect(store_path: Path, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the store. Read-only needs an existing store; read-write creates the tables."""
    path = Path(store_path)
    if read_only and not path.exists():
        raise FileNotFoundError(f"no store at {path}; run `carerisk load` first")
    con = duckdb.connect(str(path), read_only=read_only)
    if not read_only:
        create_store_tables(con)
    return con


def create_store_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the contract tables, quarantine and load_log in the current database."""
    for spec in contract.TABLES:
        con.execute(contract.create_table_sql(spec))
        con.execute(create_history_sql(spec))
    con.execute(QUARANTINE_SQL)
    for sql in QUARANTINE_IDENTITY_SQL:
        con.execute(sql)
    con.execute(LOAD_LOG_SQL)
    for sql in LOAD_LOG_MORE_SQL:
        con.execute(sql)


def _manifest_field(extract_dir: Path, name: str) -> Any:
    """A field of the folder's manifest.json; None without the file or the field."""
    manifest = Path(extract_dir) / "manifest.json"
    if not manifest.exists():
        return None
    try:
        return json.loads(manifest.read_text()).get(name)
    except (json.JSONDecodeError, AttributeError) as err:
        raise ContractError(f"{manifest}: not a JSON object ({err})") from err


def resolve_kind(extract_dir: Path, kind: str | None) -> ExtractKind | None:
    """The argument, else manifest.json's "kind"; ContractError when either is not one of
    full / increment or the two disagree. None when neither says."""
    manifest = Path(extract_dir) / "manifest.json"
    stated = _manifest_field(extract_dir, "kind")
    for where, value in ((f"{manifest}: kind", stated), ("the extract kind", kind)):
        if value is not None and value not in KINDS:
            raise ContractError(f"{where} {value!r} is not one of {', '.join(KINDS)}")
    if kind is not None and stated is not None and kind != stated:
        raise ContractError(
            f"{manifest} says the extract is {stated!r}, but it was loaded as {kind!r}; "
            "correct one of them"
        )
    chosen = kind if kind is not None else stated
    return None if chosen is None else _as_kind(str(chosen))


def _as_kind(value: str) -> ExtractKind:
    return "full" if value == "full" else "increment"


def _refuse_unstated_kind(store_path: Path, extract_dir: Path) -> None:
    """A store that holds a load already needs to be told what a new extract is."""
    if not store_path.exists():
        return
    with duckdb.connect(str(store_path), read_only=True) as con:
        found = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'load_log'"
        ).fetchone()
        loads = _count(con, "SELECT count(*) FROM load_log") if found and found[0] else 0
    if loads:
        raise ContractError(
            f"{extract_dir}: the store {store_path} holds earlier loads, and the extract does "
            'not say whether it is full or an increment: add "kind": "full" (every row the '
            'sources hold; rows it lacks are retired) or "kind": "increment" (new and changed '
            "rows only) to its manifest.json, or load it with --full or --increment"
        )


def resolve_extract_date(extract_dir: Path, extract_date: date | None) -> date:
    """The argument, else manifest.json's "extract_date", else today."""
    if extract_date is not None:
        return extract_date
    manifest = Path(extract_dir) / "manifest.json"
    if manifest.exists():
        value = _manifest_field(extract_dir, "extract_date")
        if value:
            try:
                return date.fromisoformat(str(value))
            except ValueError as err:
                raise ContractError(f"{manifest}: extract_date {value!r} is not a date") from err
    return date.today()


def resolve_coverage(extract_dir: Path, store_path: Path | None, kind: str | None) -> Coverage:
    """The extract's coverage: its manifest's block, else (an increment) the store's, else
    complete. An increment that states a coverage must state the store's."""
    block = _manifest_field(extract_dir, "coverage")
    where = f"{Path(extract_dir) / 'manifest.json'}"
    stored = _stored_coverage(store_path) if kind == "increment" else None
    if block is None:
        return stored if stored is not None else Coverage()
    try:
        stated = from_block(block, where)
        if stored is not None:
            agree(stored, stated, where)
    except CoverageError as err:
        raise ContractError(str(err)) from err
    return stated


def _stored_coverage(store_path: Path | None) -> Coverage | None:
    if store_path is None or not Path(store_path).exists():
        return None
    with duckdb.connect(str(store_path), read_only=True) as con:
        return stored_coverage(con)


# --- finding and staging files ----------------------------------------------------------


def find_files(extract_dir: Path, absent: Collection[str] = ()) -> dict[str, Path]:
    """The one file per contract table present in the source; ContractError when one is
    missing or doubled, or when a table the coverage calls absent has a file."""
    if not extract_dir.is_dir():
        raise ContractError(f"extract folder {extract_dir} does not exist")
    found: dict[str, Path] = {}
    for name in contract.TABLE_NAMES:
        paths = [extract_dir / f"{name}.{ext}" for ext in ("parquet", "csv")]
        present = [p for p in paths if p.exists()]
        if name in absent:
            if present:
                raise ContractError(
                    f"table {name}: manifest.json's coverage says it is absent, but "
                    f"{present[0].name} is in {extract_dir}; remove the file or map the table"
                )
            continue
        if not present:
            raise ContractError(
                f"table {name}: no file {name}.parquet or {name}.csv in {extract_dir}"
            )
        if len(present) > 1:
            raise ContractError(f"table {name}: both {name}.parquet and {name}.csv; keep one")
        found[name] = present[0]
    return found


def _parquet(path: Path) -> str:
    return f"read_parquet({literal(path)})"


def _source_types(con: duckdb.DuckDBPyConnection, spec: contract.Table, path: Path) -> dict:
    """Column name -> DuckDB type of the file, after checking names against the contract."""
    try:
        if path.suffix == ".parquet":
            rows = con.execute(f"DESCRIBE SELECT * FROM {_parquet(path)}").fetchall()
            types = {r[0]: str(r[1]) for r in rows}
        else:
            types = dict.fromkeys(csv_header(path), "VARCHAR")
    except (duckdb.Error, OSError, UnicodeDecodeError) as err:
        raise ContractError(f"table {spec.name}: cannot read {path}: {_first_line(err)}") from err
    missing = [c for c in spec.column_names if c not in types]
    extra = [c for c in types if c not in spec.column_names]
    if missing:
        raise ContractError(f"table {spec.name} ({path.name}): missing column(s) {missing}")
    if extra:
        raise ContractError(f"table {spec.name} ({path.name}): unknown column(s) {extra}")
    return types


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _stage(con: duckdb.DuckDBPyConnection, src: _Source) -> tuple[int, int]:
    """Stage one file, text trimmed; returns (rows read, of which malformed). An absent
    table stages as no rows."""
    spec, path = src.spec, src.path
    if src.absent:
        empty = ", ".join(f"NULL::VARCHAR AS {quote(c)}" for c in spec.column_names)
        con.execute(f"CREATE TABLE {_stage_name(spec)} AS SELECT {empty} LIMIT 0")
        return 0, 0
    csv = path.suffix != ".parquet"
    source = csv_source(path, csv_header(path), spec) if csv else _parquet(path)
    names = store_sql.staged_select(spec, src.types)
    try:
        con.execute(f"CREATE TABLE {_stage_name(spec)} AS SELECT {names} FROM {source}")
    except duckdb.Error as err:
        raise ContractError(f"table {spec.name}: cannot read {path}: {_first_line(err)}") from err
    lines = malformed_lines(con, spec, path) if csv else []
    if lines:
        place_malformed(con, spec, _stage_name(spec), _scratch("malformed", spec), lines)
        src.header = csv_header(path)
        src.malformed_text = [text for _, _, text in lines]
    return _count(con, f"SELECT count(*) FROM {_stage_name(spec)}"), len(lines)


def _refuse_supplied(
    con: duckdb.DuckDBPyConnection, src: _Source, columns: Collection[str]
) -> None:
    """A column the coverage calls not supplied holds no value in any row."""
    cols = store_sql.column_sql(src.spec, src.types, "s")
    for name in columns:
        row = con.execute(
            f"SELECT s.rowid, s.{quote(name)}::VARCHAR FROM {_stage_name(src.spec)} s "
            f"WHERE NOT {cols[name].missing} ORDER BY s.rowid LIMIT 1"
        ).fetchone()
        if row:
            raise ContractError(
                f"table {src.spec.name}, column {name}, row {int(row[0]) + 1} of "
                f"{src.path.name}: manifest.json's coverage says the column is not supplied, "
                f"but the row holds {row[1]!r}; empty the column or remove it from not_supplied"
            )


def _stage_name(spec: contract.Table) -> str:
    return f"memory.main.{quote('stage_' + spec.name)}"


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# --- the load ---------------------------------------------------------------------------


@dataclass
class _Source:
    spec: contract.Table
    path: Path
    types: dict[str, str]
    sha256: str = ""
    rows: int = 0  # rows read, malformed ones included
    malformed: int = 0
    header: list[str] = field(default_factory=list)  # a CSV file's column names
    malformed_text: list[str] = field(default_factory=list)  # its malformed lines
    state: str = "mapped"  # the coverage's state of the table
    not_supplied: tuple[str, ...] = ()  # its columns the source does not supply
    absent: bool = False  # the source holds no such table: no file, no rows


@dataclass(frozen=True)
class _How:
    """What kind of extract this is, and who has objected."""

    kind: ExtractKind | None
    objections: frozenset[str]

    @property
    def full(self) -> bool:
        return self.kind == "full"


def _run(
    extract_dir: Path,
    store_path: Path | None,
    extract_date: date | None,
    progress: Progress | None,
    memory_limit: str,
    how: _How,
) -> LoadReport:
    started = datetime.now()
    clock = time.perf_counter()
    when = resolve_extract_date(extract_dir, extract_date)
    coverage = resolve_coverage(extract_dir, store_path, how.kind)
    files = find_files(extract_dir, coverage.absent)
    if store_path is not None and how.kind is None:
        _refuse_unstated_kind(store_path, extract_dir)
    spill = Path(tempfile.mkdtemp(prefix="carerisk-load-"))
    con = duckdb.connect(
        ":memory:",
        config={"memory_limit": memory_limit, "temp_directory": str(spill)},
    )
    try:
        sources = [_source(con, extract_dir, n, files, coverage) for n in LOAD_ORDER]
        for src in sources:
            src.rows, src.malformed = _stage(con, src)
            _refuse_supplied(con, src, coverage.not_supplied.get(src.spec.name, ()))
            src.sha256 = "" if src.absent else _sha256(src.path)
            if progress:
                progress(src.spec.name, 0, src.rows)
        _refuse_nhs_numbers(con, sources)
        report = LoadReport(
            str(extract_dir),
            when,
            str(store_path) if store_path else None,
            kind=how.kind,
            coverage=coverage,
        )
        _attach(con, store_path)
        _write(con, sources, report, started, progress, how)
        report.seconds = time.perf_counter() - clock
        return report
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _source(
    con: duckdb.DuckDBPyConnection,
    extract_dir: Path,
    name: str,
    files: dict[str, Path],
    coverage: Coverage,
) -> _Source:
    """One table to load, checked as the coverage reads it (not-supplied columns may be
    empty); an absent table has no file and loads no rows."""
    spec = effective_table(contract.table(name), coverage)
    state, gone = coverage.state(name), coverage.not_supplied.get(name, ())
    if name in coverage.absent:
        types = dict.fromkeys(spec.column_names, "VARCHAR")
        return _Source(spec, extract_dir / name, types, state=state, not_supplied=gone, absent=True)
    types = _source_types(con, spec, files[name])
    return _Source(spec, files[name], types, state=state, not_supplied=gone)


def _refuse_nhs_numbers(con: duckdb.DuckDBPyConnection, sources: list[_Source]) -> None:
    """Stop when most person ids (of the person table, or of every table) are NHS numbers."""
    counts: dict[str, tuple[int, int]] = {}
    for src in sources:
        pid = store_sql.column_sql(src.spec, src.types, "s")["person_id"].parsed
        row = con.execute(
            f"SELECT coalesce(count_if({store_sql.nhs_number(pid)}), 0), count({pid}) "
            f"FROM {_stage_name(src.spec)} s"
        ).fetchone()
        counts[src.spec.name] = (int(row[0]), int(row[1])) if row else (0, 0)
    everywhere = tuple(sum(c[i] for c in counts.values()) for i in (0, 1))
    for where, (nhs, ids) in (("table person", counts["person"]), ("the extract", everywhere)):
        if ids and nhs / ids > contract.NHS_NUMBER_STOP_SHARE:
            raise ContractError(
                f"{where}: {nhs:,} of {ids:,} person ids are NHS numbers; the contract takes "
                "pseudonymised ids only: pseudonymise the extract and load it again"
            )


def _attach(con: duckdb.DuckDBPyConnection, store_path: Path | None) -> None:
    if store_path is None:
        con.execute("ATTACH ':memory:' AS store")
    else:
        store_path.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"ATTACH {literal(store_path)} AS store")
    con.execute("USE store")
    create_store_tables(con)
    con.execute("USE memory")


def _write(
    con: duckdb.DuckDBPyConnection,
    sources: list[_Source],
    report: LoadReport,
    started: datetime,
    progress: Progress | None,
    how: _How,
) -> None:
    """Check every table (writing scratch tables in memory only), then write the store.

    DuckDB lets a transaction write to one database, so all checking happens first and the
    store is then written in one transaction that reads the scratch tables.
    """
    con.execute(f"CREATE OR REPLACE TABLE {RETIRED_PERSONS} (person_id VARCHAR)")
    checked = [_check_table(con, src, report.extract_date, how.full) for src in sources]
    _list_objectors(con, how.objections)
    row = con.execute("SELECT coalesce(max(load_id), 0) + 1 FROM store.main.load_log").fetchone()
    report.load_id = int(row[0]) if row else 1
    con.execute("BEGIN TRANSACTION")
    try:
        for src, result in zip(sources, checked, strict=True):
            _retire(con, src, result, report.load_id)
            _merge(con, src, result, report.load_id)
            _quarantine(con, src, report.load_id)
            if not result.balanced:
                raise RuntimeError(f"table {src.spec.name}: rows do not add up: {result}")
            report.tables.append(result)
            if progress:
                progress(src.spec.name, src.rows, src.rows)
        report.objectors, report.scores_withdrawn = _apply_objections(con)
        _log(con, report, sources, started)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _scratch(kind: str, spec: contract.Table) -> str:
    return f"memory.main.{quote(kind + '_' + spec.name)}"


KNOWN_PERSONS = "memory.main.known_persons"  # person_id, birth_month, date_of_death
RETIRED_PERSONS = "memory.main.retired_persons"  # person_id of people a full extract lacks


def _check_table(
    con: duckdb.DuckDBPyConnection, src: _Source, when: date, full: bool
) -> TableReport:
    """Find every problem of one staged table and count what the merge will do."""
    spec, stage = src.spec, _stage_name(src.spec)
    out = TableReport(spec.name, "" if src.absent else str(src.path), rows_read=src.rows)
    out.state, out.not_supplied = src.state, list(src.not_supplied)
    problems = _scratch("problems", spec)
    query = store_sql.problems_query(
        spec,
        src.types,
        stage,
        when,
        persons=None if spec.name == "person" else KNOWN_PERSONS,
        bad_codes=_bad_codes(con, src, stage),
    )
    con.execute(f"CREATE OR REPLACE TABLE {problems} AS {query}")
    if src.malformed:
        _mark_malformed(con, spec)
    con.execute(
        f"INSERT INTO {problems} {store_sql.duplicates_query(spec, src.types, stage, problems)}"
    )
    bad = _scratch("bad", spec)
    con.execute(f"CREATE OR REPLACE TABLE {bad} AS SELECT DISTINCT row_number FROM {problems}")
    out.rows_quarantined = _count(con, f"SELECT count(*) FROM {bad}")
    counts = con.execute(
        f"SELECT reason, count(*) FROM {problems} GROUP BY reason ORDER BY 1"
    ).fetchall()
    out.reasons = {str(r): int(n) for r, n in counts}
    typed = store_sql.typed_select(spec, src.types, stage, bad)
    out.rows_retired = _find_retired(con, src, full)
    if spec.name in ("person", "death"):
        _know_persons(con, spec, typed)
    _compare_with_store(con, src, typed, out)
    return out


def _mark_malformed(con: duckdb.DuckDBPyConnection, spec: contract.Table) -> None:
    """A malformed row's placeholder has only the problem of being malformed."""
    problems, malformed = _scratch("problems", spec), _scratch("malformed", spec)
    con.execute(f"DELETE FROM {problems} WHERE row_number IN (SELECT row_number FROM {malformed})")
    con.execute(
        f"INSERT INTO {problems} SELECT row_number, NULL, {literal(MALFORMED_ROW)}, detail "
        f"FROM {malformed}"
    )


def _know_persons(con: duckdb.DuckDBPyConnection, spec: contract.Table, typed: str) -> None:
    """The people events are checked against: this extract's valid rows over the store's,
    less the stored rows this (full) extract retires."""
    retired = _scratch("retired", spec)
    if spec.name == "person":
        con.execute(
            f"CREATE OR REPLACE TABLE {KNOWN_PERSONS} AS WITH new AS ({typed}) "
            "SELECT person_id, birth_month, NULL::DATE AS date_of_death FROM new UNION ALL "
            "SELECT person_id, birth_month, NULL FROM store.main.person "
            "WHERE person_id NOT IN (SELECT person_id FROM new) "
            f"AND person_id NOT IN (SELECT person_id FROM {retired})"
        )
        return
    con.execute(
        f"CREATE OR REPLACE TABLE {KNOWN_PERSONS} AS "
        f"WITH new AS ({typed}), deaths AS (SELECT person_id, date_of_death FROM new "
        "UNION ALL SELECT person_id, date_of_death FROM store.main.death "
        "WHERE person_id NOT IN (SELECT person_id FROM new) "
        f"AND person_id NOT IN (SELECT person_id FROM {retired})) "
        f"SELECT k.person_id, k.birth_month, d.date_of_death FROM {KNOWN_PERSONS} k "
        "LEFT JOIN deaths d USING (person_id)"
    )


def _find_retired(con: duckdb.DuckDBPyConnection, src: _Source, full: bool) -> int:
    """Keys of the stored rows a full extract retires, with why, into a scratch table.

    A stored row is retired when the extract carries its key in no row at all, valid or not
    (a malformed CSV line's key is read from the line when it can be); and, in the tables of
    people's records, when its person was retired. An increment retires nothing.
    """
    spec = src.spec
    retired = _scratch("retired", spec)
    keys = ", ".join(quote(k) for k in spec.key)
    con.execute(
        f"CREATE OR REPLACE TABLE {retired} AS SELECT {keys}, ''::VARCHAR AS reason "
        f"FROM store.main.{quote(spec.name)} LIMIT 0"
    )
    if not full:
        return 0
    seen = _seen_keys(con, src)
    target = f"store.main.{quote(spec.name)}"
    on = " AND ".join(f"v.{quote(k)} = t.{quote(k)}" for k in spec.key)
    first = spec.key[0]
    person = "person_id" in spec.column_names and spec.name != "person"
    gone = f" OR t.person_id IN (SELECT person_id FROM {RETIRED_PERSONS})" if person else ""
    tkeys = ", ".join(f"t.{quote(k)}" for k in spec.key)
    con.execute(
        f"INSERT INTO {retired} SELECT {tkeys}, CASE WHEN v.{quote(first)} IS NULL "
        f"THEN {literal(ABSENT)} ELSE {literal(PERSON_RETIRED)} END "
        f"FROM {target} t LEFT JOIN {seen} v ON {on} WHERE v.{quote(first)} IS NULL{gone}"
    )
    if spec.name == "person":
        con.execute(f"INSERT INTO {RETIRED_PERSONS} SELECT person_id FROM {retired}")
    return _count(con, f"SELECT count(*) FROM {retired}")


def _seen_keys(con: duckdb.DuckDBPyConnection, src: _Source) -> str:
    """A scratch table of the distinct keys the extract carries, as the contract reads them."""
    spec, seen = src.spec, _scratch("seen", src.spec)
    cols = store_sql.column_sql(spec, src.types, "s")
    keys = ", ".join(f"{cols[k].parsed} AS {quote(k)}" for k in spec.key)
    con.execute(
        f"CREATE OR REPLACE TABLE {seen} AS SELECT DISTINCT {keys} FROM {_stage_name(spec)} s"
    )
    lines = csv_keys(src.malformed_text, src.header, spec.key)
    if lines:
        con.executemany(f"INSERT INTO {seen} VALUES ({', '.join('?' for _ in spec.key)})", lines)
    return seen


def _compare_with_store(
    con: duckdb.DuckDBPyConnection, src: _Source, typed: str, out: TableReport
) -> None:
    """Count valid rows already stored unchanged; keep the keys stored with other content."""
    spec, target = src.spec, f"store.main.{quote(src.spec.name)}"
    on = " AND ".join(f"v.{quote(k)} = t.{quote(k)}" for k in spec.key)
    same = " AND ".join(
        f"v.{quote(c)} IS NOT DISTINCT FROM t.{quote(c)}" for c in spec.column_names
    )
    vkeys = ", ".join(f"v.{quote(k)}" for k in spec.key)
    con.execute(
        f"CREATE OR REPLACE TABLE {_scratch('changed', spec)} AS "
        f"SELECT {vkeys} FROM ({typed}) v JOIN {target} t ON {on} WHERE NOT ({same})"
    )
    out.rows_unchanged = _count(
        con, f"SELECT count(*) FROM ({typed}) v JOIN {target} t ON {on} WHERE {same}"
    )
    out.rows_updated = _count(con, f"SELECT count(*) FROM {_scratch('changed', spec)}")


def _bad_codes(con: duckdb.DuckDBPyConnection, src: _Source, stage: str) -> dict[str, list]:
    """Invalid values of each code column, found once per distinct value."""
    cols = store_sql.column_sql(src.spec, src.types, "s")
    found: dict[str, list[str]] = {}
    for name in store_sql.checked_by_value(src.spec):
        col = cols[name]
        distinct = con.execute(f"SELECT DISTINCT {col.parsed} FROM {stage} s").fetchall()
        found[name] = [r[0] for r in distinct if r[0] is not None and not code_valid(col.col, r[0])]
    con.execute(
        f"CREATE OR REPLACE TABLE {store_sql.BAD_CODES} (column_name VARCHAR, value VARCHAR)"
    )
    bad: list[Any] = [[name, v] for name, values in found.items() for v in values]
    if bad:
        con.executemany(f"INSERT INTO {store_sql.BAD_CODES} VALUES (?, ?)", bad)
    return found


QUARANTINE_COLUMNS = (
    "load_id, table_name, source_file, source_sha256, row_number, column_name, value, reason, "
    "detail, raw_row, row_key, row_sha256"
)


def _quarantine(con: duckdb.DuckDBPyConnection, src: _Source, load_id: int) -> None:
    """Forget the earlier entries of the rows read, then write this load's entries."""
    spec, stage, malformed = src.spec, _stage_name(src.spec), _scratch("malformed", src.spec)
    key, sha = store_sql.row_identity(spec, src.types, "s")
    _forget_earlier(con, src, key, sha)
    source = f"{load_id}, {literal(spec.name)}, {literal(src.path)}, {literal(src.sha256)}"
    con.execute(
        f"""INSERT INTO store.main.quarantine ({QUARANTINE_COLUMNS})
        SELECT {source}, p.row_number, p.column_name, {store_sql.value_case(spec, src.types, "s")},
          p.reason, p.detail, {store_sql.raw_row(spec, src.types, "s")}, {key}, {sha}
        FROM {_scratch("problems", spec)} p JOIN {stage} s ON s.rowid = p.row_number
        WHERE p.reason <> {literal(MALFORMED_ROW)}
        ORDER BY p.row_number, p.column_name, p.reason"""
    )
    if src.malformed:
        con.execute(
            f"""INSERT INTO store.main.quarantine ({QUARANTINE_COLUMNS})
            SELECT {source}, row_number, NULL, NULL, {literal(MALFORMED_ROW)}, detail,
              to_json(csv_line), NULL, sha256(csv_line)
            FROM {malformed} ORDER BY row_number"""
        )


def _forget_earlier(con: duckdb.DuckDBPyConnection, src: _Source, key: str, sha: str) -> None:
    """Delete the table's entries whose row (key and content) is read again in this load.

    Only rows whose key is quarantined already (or missing) are hashed. Entries written
    before rows had an identity are matched by their file, as they were then.
    """
    spec, stage, malformed = src.spec, _stage_name(src.spec), _scratch("malformed", src.spec)
    name = literal(spec.name)
    con.execute(
        "DELETE FROM store.main.quarantine "
        "WHERE table_name = ? AND row_sha256 IS NULL AND source_sha256 = ?",
        [spec.name, src.sha256],
    )
    if not _count(con, f"SELECT count(*) FROM store.main.quarantine WHERE table_name = {name}"):
        return
    seen = (
        f"SELECT {sha} FROM {stage} s WHERE ({key} IS NULL OR {key} IN "
        f"(SELECT row_key FROM store.main.quarantine WHERE table_name = {name}))"
    )
    if src.malformed:
        seen += (
            f" AND s.rowid NOT IN (SELECT row_number FROM {malformed}) "
            f"UNION ALL SELECT sha256(csv_line) FROM {malformed}"
        )
    con.execute(
        f"DELETE FROM store.main.quarantine WHERE table_name = {name} AND row_sha256 IN ({seen})"
    )


def _to_history(
    con: duckdb.DuckDBPyConnection,
    spec: contract.Table,
    keys_table: str,
    load_id: int,
    change: str,
    reason: str,
) -> None:
    """Copy the stored rows whose keys are in `keys_table` to the history, then delete them."""
    target = f"store.main.{quote(spec.name)}"
    history = f"store.main.{quote(history_table(spec.name))}"
    keys = ", ".join(quote(k) for k in spec.key)
    on = " AND ".join(f"k.{quote(k)} = t.{quote(k)}" for k in spec.key)
    names = ", ".join(quote(c) for c in spec.column_names)
    tcols = ", ".join(f"t.{quote(c)}" for c in spec.column_names)
    con.execute(
        f"INSERT INTO {history} (load_id, change, reason, {names}) "
        f"SELECT {load_id}, {literal(change)}, {reason}, {tcols} "
        f"FROM {target} t JOIN {keys_table} k ON {on}"
    )
    con.execute(f"DELETE FROM {target} WHERE ({keys}) IN (SELECT ({keys}) FROM {keys_table})")


def _retire(con: duckdb.DuckDBPyConnection, src: _Source, out: TableReport, load_id: int) -> None:
    """Move the rows a full extract retires to the table's history."""
    if out.rows_retired:
        _to_history(con, src.spec, _scratch("retired", src.spec), load_id, RETIRED, "k.reason")


def _merge(con: duckdb.DuckDBPyConnection, src: _Source, out: TableReport, load_id: int) -> None:
    """Replace stored rows whose content changed (the old version to the history), insert new
    ones; counts rows_loaded (new keys)."""
    spec, target = src.spec, f"store.main.{quote(src.spec.name)}"
    if out.rows_updated:
        reason = literal("changed in a later extract")
        _to_history(con, spec, _scratch("changed", spec), load_id, REPLACED, reason)
    typed = store_sql.typed_select(spec, src.types, _stage_name(spec), _scratch("bad", spec))
    on = " AND ".join(f"v.{quote(k)} = t.{quote(k)}" for k in spec.key)
    fresh = f"SELECT * FROM ({typed}) v WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE {on})"
    out.rows_loaded = _count_rows(con.execute(f"INSERT INTO {target} {fresh}")) - out.rows_updated


def _list_objectors(con: duckdb.DuckDBPyConnection, objections: frozenset[str]) -> None:
    """The objections list as a scratch table (written before the store's transaction)."""
    con.execute(f"CREATE OR REPLACE TABLE {OBJECTORS} (person_id VARCHAR)")
    if objections:
        con.executemany(f"INSERT INTO {OBJECTORS} VALUES (?)", [[p] for p in sorted(objections)])


def _apply_objections(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(people on the list now in the store, their scores removed from the scores history)."""
    present = _count(
        con,
        f"SELECT count(*) FROM store.main.person "
        f"WHERE person_id IN (SELECT person_id FROM {OBJECTORS})",
    )
    return present, scores_history.withdraw(con, OBJECTORS, database="store")


OBJECTORS = "memory.main.objectors"


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _count_rows(cursor: duckdb.DuckDBPyConnection) -> int:
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def _log(
    con: duckdb.DuckDBPyConnection, report: LoadReport, sources: list[_Source], started: datetime
) -> None:
    by_name = {s.spec.name: s for s in sources}
    coverage = report.coverage.to_json()
    rows = [
        [
            report.load_id,
            started,
            datetime.now(),
            report.extract_dir,
            report.extract_date,
            t.table,
            t.source_file or None,
            by_name[t.table].sha256 or None,
            t.rows_read,
            t.rows_loaded,
            t.rows_unchanged,
            t.rows_quarantined,
            report.kind,
            t.rows_updated,
            t.rows_retired,
            t.state,
            ",".join(t.not_supplied),
            coverage,
        ]
        for t in report.tables
    ]
    marks = ", ".join("?" for _ in LOAD_LOG_COLUMNS.split(","))
    con.executemany(f"INSERT INTO store.main.load_log ({LOAD_LOG_COLUMNS}) VALUES ({marks})", rows)
