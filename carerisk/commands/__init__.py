"""Each stage contributes its subcommands through a `register(app)` function."""

from __future__ import annotations

import typer

from carerisk.commands import (
    demo,
    features,
    home,
    monitor,
    referrals,
    refresh,
    serve,
    store,
    synth,
    train,
)


def register_all(app: typer.Typer) -> None:
    modules = (synth, store, features, train, monitor, refresh, serve, referrals, demo, home)
    for module in modules:
        module.register(app)
