"""Commands for the store stage: `carerisk load DIR`, `carerisk validate DIR` and
`carerisk store check`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from carerisk.commands._common import console, fail, print_json, settings_of

if TYPE_CHECKING:
    from features.store import ExtractKind, LoadReport
    from features.store_check import StoreCheck

DATE_HELP = "Extract date (YYYY-MM-DD); default: manifest.json, else today."
FULL_HELP = "The extract holds every row of its sources: stored rows it lacks are retired."
INCREMENT_HELP = "The extract holds new and changed rows only: nothing is retired."


def _parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        fail(f"--extract-date {value!r} is not a date (YYYY-MM-DD)")


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A rich progress bar per table, on stderr; nothing when printing JSON."""
    if not enabled:
        yield None
        return
    bars = Progress(
        TextColumn("{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def update(table: str, done: int, total: int) -> None:
        if table not in tasks:
            tasks[table] = bars.add_task(table, total=max(total, 1))
        bars.update(tasks[table], completed=done if total else 1, total=max(total, 1))

    with bars:
        yield update


def report_tables(report: LoadReport) -> list[Table]:
    """The load report as rich tables: rows per contract table, then quarantine reasons."""
    from features.schemas import ALL_REASONS
    from features.store import COUNTS

    title = f"{'Loaded' if report.store_path else 'Validated'} {report.extract_dir}"
    kind = f", {report.kind} extract" if report.kind else ""
    rows = Table(title=f"{title} (extract date {report.extract_date}{kind})")
    for name in ("table", "read", "loaded", "updated", "unchanged", "quarantined", "retired"):
        rows.add_column(name, justify="left" if name == "table" else "right")
    for t in report.tables:
        rows.add_row(t.table, *(f"{getattr(t, k):,}" for k in COUNTS))
    tot = report.totals()
    rows.add_row("total", *(f"{tot[k]:,}" for k in COUNTS), style="bold")
    found = [rows, *coverage_table(report)]
    if report.clean:
        return found
    reasons = Table(title="Quarantine entries by reason (a row may have several)")
    for name in ("reason", "table", "entries"):
        reasons.add_column(name, justify="right" if name == "entries" else "left")
    for reason in ALL_REASONS:
        for t in report.tables:
            if t.reasons.get(reason):
                reasons.add_row(reason, t.table, f"{t.reasons[reason]:,}")
    return [*found, reasons]


def coverage_table(report: LoadReport) -> list[Table]:
    """What the source lacks (the manifest's coverage block); nothing when it lacks nothing."""
    if report.coverage.complete:
        return []
    lacks = Table(title="What the source lacks (manifest.json coverage)")
    for name in ("table", "state", "not supplied or why absent"):
        lacks.add_column(name)
    for t in report.tables:
        why = report.coverage.absent.get(t.table) or ", ".join(t.not_supplied)
        if t.state != "mapped" or why:
            lacks.add_row(t.table, t.state, why)
    return [lacks]


def _run(
    ctx: typer.Context,
    folder: Path,
    extract_date: str | None,
    as_json: bool,
    kind: ExtractKind | None = None,
    write: bool = True,
) -> None:
    from features.objections import ObjectionListError, read_objections
    from features.store import ContractError, load_extract, validate_extract

    when = _parse_date(extract_date)
    try:
        with _progress(not as_json) as progress:
            if write:
                settings = settings_of(ctx)
                settings.home.root.mkdir(parents=True, exist_ok=True)
                report = load_extract(
                    folder,
                    settings.home.store_path,
                    extract_date=when,
                    kind=kind,
                    objections=read_objections(settings.home.objections_path),
                    progress=progress,
                )
            else:
                report = validate_extract(folder, extract_date=when, progress=progress)
    except (ContractError, FileNotFoundError, ObjectionListError) as err:
        fail(str(err))
    if as_json:
        print_json(report.to_dict())
    else:
        for table in report_tables(report):
            Console().print(table)
        if report.objectors or report.scores_withdrawn:
            Console().print(
                f"Objections applied again: {report.objectors:,} people in the store are on "
                f"the list; {report.scores_withdrawn:,} kept scores of theirs were removed."
            )
    if not report.ok:
        fail("rows read do not equal rows loaded + updated + unchanged + quarantined")


def _kind(full: bool, increment: bool) -> ExtractKind | None:
    if full and increment:
        fail("--full and --increment contradict each other; give one")
    return "full" if full else "increment" if increment else None


store_app = typer.Typer(help="Check the store.", no_args_is_help=True)


def add_commands(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("contract")(contract)
    store_app.command("check")(check)
    app.add_typer(store_app, name="store")

    @app.command("load")
    def load(
        ctx: typer.Context,
        folder: Path = typer.Argument(..., help="Extract folder: one CSV or Parquet per table."),
        extract_date: str | None = typer.Option(None, "--extract-date", help=DATE_HELP),
        full: bool = typer.Option(False, "--full", help=FULL_HELP),
        increment: bool = typer.Option(False, "--increment", help=INCREMENT_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print the load report as JSON."),
    ) -> None:
        """Check every row of an extract against the data contract and load it into the store.

        A later extract must say whether it is full or an increment (manifest.json "kind", or
        --full / --increment): a full extract retires the stored rows it lacks, into the
        tables' history."""
        _run(ctx, folder, extract_date, as_json, _kind(full, increment))

    @app.command("validate")
    def validate(
        ctx: typer.Context,
        folder: Path = typer.Argument(..., help="Extract folder: one CSV or Parquet per table."),
        extract_date: str | None = typer.Option(None, "--extract-date", help=DATE_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        """Run the same checks as `load` without writing anything."""
        _run(ctx, folder, extract_date, as_json, write=False)


def contract(
    as_json: bool = typer.Option(False, "--json", help="Print the contract as JSON."),
) -> None:
    """Print the data contract a real extract must meet (Markdown, or JSON)."""
    import dataclasses
    import json

    from features.contract import TABLES, contract_markdown

    if as_json:
        tables = [dataclasses.asdict(t) for t in TABLES]
        typer.echo(json.dumps(tables, indent=2, default=sorted))
    else:
        typer.echo(contract_markdown())


def check(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check the store: unique keys, every record's person known, the history against the load
    log. Exits 1 when a check fails, naming the first offending keys."""
    from features.store_check import check_store

    try:
        result = check_store(settings_of(ctx).home.store_path)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    if as_json:
        print_json(result.to_dict())
    else:
        Console().print(check_table(result))
    if not result.ok:
        first = result.failures()[0]
        fail(
            f"{len(result.failures())} check(s) failed; first: {first.check} of {first.table}: "
            f"{first.detail}; first offending: {first.first}"
        )


def check_table(result: StoreCheck) -> Table:
    """The store check as a rich table: one row per check."""
    out = Table(title=f"Store check of {result.store_path} ({result.seconds:.1f} s)")
    for name in ("check", "table", "rows", "offending", "first offending"):
        out.add_column(name, justify="right" if name in ("rows", "offending") else "left")
    for c in result.checks:
        first = "; ".join(", ".join(str(v) for v in row) for row in c.first)
        style = None if c.ok else "red"
        out.add_row(c.check, c.table, f"{c.rows:,}", f"{c.offending:,}", first, style=style)
    return out
