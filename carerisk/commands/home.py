"""`carerisk home check [--fix]`: after a copy, restore or move, do the home's records still
name its old place, and are the registered models' files there?"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from carerisk.commands._common import console, fail, print_json, settings_of

if TYPE_CHECKING:
    from training.home_check import HomeCheck


def say(text: str) -> None:
    console.print(text, soft_wrap=True)


home_app = typer.Typer(help="The home folder: check it after a copy, restore or move.")


def add_commands(app: typer.Typer) -> None:
    app.add_typer(home_app, name="home")


@home_app.command("check")
def check(
    ctx: typer.Context,
    fix: bool = typer.Option(
        False, "--fix", help="Rewrite the records that name the old place to name this home."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Find the records (MLflow's artifact locations and registry, the store's load log) that
    still name the place this home was copied or moved from; with --fix, point them here.
    Exits non-zero while anything is left to fix or a registered model's files are missing."""
    from training.home_check import HomeCheckError, check_home, move_records

    settings = settings_of(ctx)
    home = settings.home
    if not home.root.is_dir():
        fail(f"no home at {home.root}")
    try:
        found = check_home(home, settings.tracking_uri)
        if fix and found.was_at is not None:
            moved = move_records(home, found.was_at)
            say(f"moved {sum(r.rows for r in moved)} recorded paths to {home.root}")
            found = check_home(home, settings.tracking_uri)
    except HomeCheckError as error:
        fail(str(error))
    if as_json:
        print_json(found.to_dict())
    else:
        _say(found)
    if not found.ok:
        raise typer.Exit(code=1)


def _say(found: HomeCheck) -> None:
    say(f"home: {found.root}")
    if found.was_at is not None:
        say(f"its records say it was at {found.was_at}")
    for record in found.recorded:
        say(f"  still naming {found.was_at}: {record.describe()}")
    for line in found.missing:
        say(f"  [red]missing[/red]: {line}")
    if found.tracking_outside:
        say(
            f"the tracking store is outside the home ({found.tracking_outside}): "
            "its artifact locations are not checked"
        )
    if found.recorded:
        say("run `carerisk home check --fix` to point them at this home")
    elif found.ok:
        say("every recorded path names this home; every registered file is there")
