"""Each stage contributes its subcommands through a `register(app)` function."""

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


def register_all(app: typer.Typer) -> None:
    modules = (synth, store, importing, features, codes, train, monitor, refresh, serve, referrals)
    for module in (*modules, demo, home):
        module.register(app)
