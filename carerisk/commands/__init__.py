"""Each stage contributes its subcommands through an `add_commands(app)` function."""

from __future__ import annotations

import typer

from carerisk.commands import (
    codes,
    demo,
    features,
    home,
    importing,
    monitor,
    referrals,
    refresh,
    serve,
    store,
    synth,
    train,
)


def add_all_commands(app: typer.Typer) -> None:
    modules = (synth, store, importing, features, codes, train, monitor, refresh, serve, referrals)
    for module in (*modules, demo, home):
        module.add_commands(app)
