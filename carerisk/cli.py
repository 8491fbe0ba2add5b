"""The `carerisk` command: one Typer app assembled from each stage's commands.

Heavy libraries are imported inside the commands, so `carerisk --help` stays quick.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from carerisk.commands import register_all
from carerisk.settings import disable_telemetry, load_settings
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
    ctx.obj = load_settings(home)


register_all(app)


def main() -> None:
    # Homes, stores, extracts, registers and the audit hold person-level data: everything the
    # command (and the server it starts) creates is owner-only.
    os.umask(OWNER_ONLY_UMASK)
    app()
