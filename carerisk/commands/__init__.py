"""Each stage contributes its subcommands through a `register(app)` function."""

from __future__ import annotations

import typer

from carerisk.commands import (
    demo,
    features,
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
    for module in (
        synth,
        store,
        importing,
        features,
        train,
        monitor,
        refresh,
        serve,
        referrals,
        demo,
    ):
        module.register(app)
