"""`carerisk synth`: write a synthetic county extract with its truth."""

from __future__ import annotations

from pathlib import Path

import typer

from carerisk.commands._common import console, fail, print_json


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("synth")(synth)


def synth(
    people: int = typer.Option(20_000, "--people", help="Number of people in the county."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same files."),
    out: Path = typer.Option(..., "--out", help="Folder to write the extract into."),
    mess: float = typer.Option(0.0, "--mess", help="Share of bad rows to inject (0 = clean)."),
    fmt: str = typer.Option("parquet", "--format", help="parquet or csv."),
    structure: str = typer.Option(
        "realistic",
        "--structure",
        help="realistic (non-additive risk, as real data show) or additive (the control).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Generate a seeded synthetic county: one file per contract table, a manifest and truth/."""
    from pydantic import ValidationError
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from synthetic import CountyConfig, generate

    if fmt not in ("parquet", "csv"):
        fail(f"--format must be parquet or csv, not {fmt!r}")
    try:
        config = CountyConfig.model_validate(
            {"people": people, "seed": seed, "mess_rate": mess, "structure": structure}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"invalid setting {'.'.join(map(str, first['loc']))}: {first['msg']}")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a folder")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("starting", total=1.0)

            def progress(stage: str, fraction: float) -> None:
                bar.update(task, description=stage, completed=fraction)

            summary = generate(config, out, "csv" if fmt == "csv" else "parquet", progress)
    except OSError as exc:
        fail(f"could not write to {out}: {exc}")
    if as_json:
        print_json(summary.as_dict())
        return
    _print_table(summary.as_dict())


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
