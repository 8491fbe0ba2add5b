"""`carerisk synth`: write a synthetic county extract with its truth."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

from carerisk.commands._common import console, fail, print_json

if TYPE_CHECKING:
    from synthetic.later import Drift


def add_commands(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("synth")(synth)


LATER_HELP = (
    "Write the full extract of this county folder's rolling window --months later instead: "
    "the same people, time moved on (its settings come from its manifest)."
)
WINDOW_MONTHS = 36
END_HELP = (
    "Last day of the extract (YYYY-MM-DD, the last day of a month; default 2025-03-31). The "
    f"county covers the {WINDOW_MONTHS} months up to it."
)
DRIFT_HELP = (
    "With --later-of: a known change in the data feed, one of gp-system (the biggest practice "
    "moves GP system and its fall codes are lost), new-provider (a new home care provider "
    "takes on a share of people 65+), prevalence (recorded falls become more common). Its size "
    "is written to the manifest."
)


def synth(
    ctx: typer.Context,
    people: int = typer.Option(20_000, "--people", help="Number of people in the county."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same files."),
    out: Path = typer.Option(..., "--out", help="Folder to write the extract into."),
    mess: float = typer.Option(0.0, "--mess", help="Share of bad rows to inject (0 = clean)."),
    fmt: str = typer.Option(
        "parquet",
        "--format",
        help="parquet or csv (the contract extract), or omop (an OMOP CDM 5.4 DuckDB file).",
    ),
    structure: str = typer.Option(
        "realistic",
        "--structure",
        help="realistic (non-additive risk, as real data show) or additive (the control).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    later_of: Path | None = typer.Option(None, "--later-of", help=LATER_HELP),
    months: int = typer.Option(1, "--months", help="With --later-of: months later (1 or more)."),
    drift: str | None = typer.Option(None, "--drift", help=DRIFT_HELP),
    end: str | None = typer.Option(None, "--end", help=END_HELP),
) -> None:
    """Generate a seeded synthetic county: one file per contract table, a manifest and truth/;
    or, with --later-of, a later extract of a county already written."""
    from pydantic import ValidationError

    from synthetic import CountyConfig, generate

    if later_of is not None:
        _later(ctx, later_of, out, months, drift, as_json)
        return
    if drift is not None:
        fail("--drift changes a later extract: give --later-of FOLDER too")
    if fmt not in ("parquet", "csv", "omop"):
        fail(f"--format must be parquet or csv (an extract) or omop (a CDM), not {fmt!r}")
    if fmt == "omop" and mess:
        fail("--format omop writes a clean county: --mess applies to parquet and csv")
    dates = _window(end) if end else {}
    try:
        config = CountyConfig.model_validate(
            {"people": people, "seed": seed, "mess_rate": mess, "structure": structure, **dates}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"invalid setting {'.'.join(map(str, first['loc']))}: {first['msg']}")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a folder")
    try:
        with _bar() as progress:
            if fmt == "omop":
                from synthetic.omop import generate_omop

                summary = generate_omop(config, out, progress)
            else:
                summary = generate(config, out, "csv" if fmt == "csv" else "parquet", progress)
    except OSError as exc:
        fail(f"could not write to {out}: {exc}")
    if as_json:
        print_json(summary.as_dict())
        return
    _print_table(summary.as_dict())


def _window(end: str) -> dict[str, date]:
    """The county's start and end for an extract ending on `end` (the same length as the
    default: 36 months)."""
    from synthetic.config import add_months

    try:
        last = date.fromisoformat(end)
    except ValueError:
        fail(f"--end must be a date YYYY-MM-DD, not {end!r}")
    return {"start": add_months(last + timedelta(days=1), -WINDOW_MONTHS), "end": last}


@contextmanager
def _bar() -> Iterator[Callable[[str, float], None]]:
    """A transient progress bar on stderr, updated by the callable it yields."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("starting", total=1.0)

        def progress(stage: str, fraction: float) -> None:
            bar.update(task, description=stage, completed=fraction)

        yield progress


COUNTY_OPTIONS = ("people", "seed", "mess", "fmt", "structure")


def _later(
    ctx: typer.Context, earlier: Path, out: Path, months: int, drift: str | None, as_json: bool
) -> None:
    from synthetic.later import DRIFTS, later_extract

    given = [n for n in COUNTY_OPTIONS if _given(ctx, n)]
    if given:
        fail(f"--later-of takes the county's settings from its manifest; drop --{given[0]}")
    if drift is not None and drift not in DRIFTS:
        fail(f"--drift must be one of {', '.join(DRIFTS)}, not {drift!r}")
    if out.resolve() == earlier.resolve():
        fail("--out must be another folder than --later-of")
    try:
        with _bar() as progress:
            manifest = later_extract(earlier, out, months, cast("Drift | None", drift), progress)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    summary = {
        "out_dir": str(out),
        "later_of": str(earlier),
        **{k: manifest[k] for k in ("extract_date", "start", "rows", "changes", "drift")},
    }
    if as_json:
        print_json(summary)
        return
    _print_changes(summary)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether an option was given on the command line (typer's own click: compared by name)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _print_changes(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"later extract in {summary['out_dir']} (to {summary['extract_date']})")
    for column in ("table", "rows", "fell off", "corrected", "deleted in error", "added"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name, c in summary["changes"].items():
        table.add_row(
            name, f"{summary['rows'][name]:,}", *(f"{c[k]:,}" for k in (
                "fell_off", "corrected", "deleted_in_error", "added"))
        )  # fmt: skip
    Console().print(table)
    if summary["drift"]:
        Console().print(f"drift: {json.dumps(summary['drift'])}")


def _print_table(summary: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"synthetic county in {summary['out_dir']}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    rows = summary["rows"]
    assert isinstance(rows, dict)
    for name, count in rows.items():
        table.add_row(name, f"{count:,}")
    table.add_row("total", f"{summary['total_rows']:,}")
    table.add_row("bad rows injected", f"{summary['mess_rows']:,}")
    table.add_row("truth rows", f"{summary['truth_rows']:,}")
    Console().print(table)
    Console().print(f"done in {summary['seconds']} s")
