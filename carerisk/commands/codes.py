"""`carerisk codes report`: what the store's coding matches in the code lists, and misses."""

from __future__ import annotations

from typing import Any

import typer

from carerisk.commands._common import console, fail, print_json, settings_of

codes_app = typer.Typer(help="The code lists: what a store's coding matches and misses.")


def add_commands(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.add_typer(codes_app, name="codes")


@codes_app.command("report")
def report_command(
    ctx: typer.Context,
    top: int = typer.Option(20, "--top", min=1, help="Unmatched codes shown per column."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """For each code list, the records and people it matches in the store; for each code
    column, the most frequent codes no list holds (with their term where a list knows it)."""
    from codelists import CodeListError
    from codelists.report import code_report

    settings = settings_of(ctx)
    store = settings.home.store_path
    if not store.is_file():
        fail(f"no store at {store}; run `carerisk load` first")
    try:
        lists = settings.code_lists()
    except CodeListError as error:
        fail(f"the code lists are refused: {error}")
    found = code_report(store, lists, top)
    if as_json:
        print_json(found)
    else:
        _print(found)


def _print(found: dict[str, Any]) -> None:
    from rich.table import Table

    lists = found["codelists"]
    typer.echo(f"code lists {lists['folder']} (digest {lists['digest'][:12]}) on {found['store']}")
    table = Table("list", "system", "codes", "records", "people")
    for item in found["lists"]:
        table.add_row(item["name"], item["system"], str(item["size"]), f"{item['records']:,}",
                      f"{item['people']:,}")  # fmt: skip
    console.print(table)
    for label, column in found["columns"].items():
        share = column["unmatched_rows"] / column["rows"] if column["rows"] else 0.0
        typer.echo(
            f"{label}: {column['rows']:,} coded rows, {column['unmatched_rows']:,} ({share:.0%}) "
            f"with a code no list holds ({column['unmatched_codes']:,} codes)"
        )
        missed = Table("code", "rows", "term")
        for row in column["most_frequent_unmatched"]:
            missed.add_row(row["code"], f"{row['count']:,}", row["term"] or "")
        console.print(missed)
    for label in found["absent_columns"]:
        typer.echo(f"{label}: not in the store")
