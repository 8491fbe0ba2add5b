"""Each stage contributes its subcommands through a `register(app)` function."""

from __future__ import annotations

import typer

from carerisk.commands import demo, evaluate, features, serve, synth, train


def register_all(app: typer.Typer) -> None:
    for module in (synth, features, train, evaluate, serve, demo):
        module.register(app)
