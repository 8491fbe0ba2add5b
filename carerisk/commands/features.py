"""`carerisk features`: compute everyone's features at an index date and keep a snapshot."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import typer

from carerisk.commands._common import codes_of, console, fail, print_json, settings_of


def add_commands(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command(name="features")(features_command)


def features_command(
    ctx: typer.Context,
    index_date: str | None = typer.Option(
        None, "--index-date", help="YYYY-MM-DD (default: the day after the latest event)."
    ),
    engine: str = typer.Option("duckdb", "--engine", help="duckdb or spark."),
    snapshot: bool = typer.Option(True, "--snapshot/--no-snapshot", help="Store the snapshot."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Compute every registry feature at an index date and store the feature snapshot (with
    each registered outcome's cohort flag and the people's places, for the service)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from features.engines import ENGINES, compute_features

    settings = settings_of(ctx)
    store = settings.home.store_path
    if not store.exists():
        fail(f"no store at {store}; run `carerisk load` first")
    if engine not in ENGINES:
        fail(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    day = _parse_date(index_date) if index_date else _default_index_date(store)
    codes = codes_of(settings)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"features at {day} on {engine}", total=None)
        frame = compute_features(store, day, engine, codes=codes)  # type: ignore[arg-type]
        if snapshot:
            from features.snapshot import write_snapshot

            progress.update(task, description="writing the snapshot")
            write_snapshot(store, day, settings.outcomes(), frame=frame)
    summary = summarise(frame, day, engine, snapshot)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)


def _parse_date(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        fail(f"--index-date {text!r} is not a date in the form YYYY-MM-DD")


def _default_index_date(store: Path) -> date:
    """The day after the latest activity in the store, else after the last extract's date."""
    from features.extent import snapshot_date

    day = snapshot_date(store)
    if day is None:
        fail(f"the store {store} has no events and no extract date; pass --index-date")
    return day


def summarise(frame: Any, day: date, engine: str, snapshot: bool) -> dict[str, Any]:
    """Rows, columns and the share missing in each feature family (by source tables)."""
    from features.feature_list import FEATURES

    families: dict[str, list[str]] = {}
    for item in FEATURES:
        families.setdefault("+".join(item.sources) or "derived", []).append(item.name)
    missing = {
        family: round(float(frame[names].isna().to_numpy().mean()), 4)
        for family, names in families.items()
    }
    return {
        "index_date": day.isoformat(),
        "engine": engine,
        "rows": int(len(frame)),
        "columns": int(frame.shape[1] - 1),
        "snapshot_written": snapshot,
        "share_missing_by_family": missing,
    }


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    typer.echo(
        f"{summary['rows']} people, {summary['columns']} features at {summary['index_date']} "
        f"({summary['engine']}); snapshot {'written' if summary['snapshot_written'] else 'skipped'}"
    )
    table = Table("family (sources)", "share missing")
    for family, share in summary["share_missing_by_family"].items():
        table.add_row(family, f"{share:.1%}")
    console.print(table)
