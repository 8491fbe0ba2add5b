"""The `carerisk` command: one Typer app assembled from each stage's commands.

Heavy libraries are imported inside the commands, so `carerisk --help` stays quick.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from carerisk.commands import add_all_commands
from carerisk.commands._common import console, fail
from carerisk.settings import Settings, disable_telemetry, load_settings
from features.home import OWNER_ONLY_UMASK

app = typer.Typer(
    name="carerisk",
    help="Risk stratification for falls and complex dependency from linked care records.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", help="Folder holding all state (default: $CARERISK_HOME or ./.carerisk)."
    ),
) -> None:
    disable_telemetry(os.environ)
    ctx.obj = settings = load_settings(home)
    if ctx.invoked_subcommand != "home":  # `carerisk home check` shows a move before fixing it
        settle_home(settings)


def settle_home(settings: Settings) -> None:
    """A home copied, restored or moved here names itself before any command reads it."""
    from training.home_check import HomeCheckError, settle

    try:
        moved = settle(settings.home)
    except HomeCheckError as error:
        fail(f"{error}; see `carerisk home check`")
    if moved:
        was, records = moved
        rows = sum(record.rows for record in records)
        note = f"this home was at {was}: {rows} recorded paths now name its new place"
        console.print(note, soft_wrap=True)


add_all_commands(app)


def main() -> None:
    # Homes, stores, extracts, registers and the audit hold person-level data: everything the
    # command (and the server it starts) creates is owner-only.
    os.umask(OWNER_ONLY_UMASK)
    app()
