"""Small helpers shared by the commands: settings from the context, failures, JSON output."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console

from carerisk.settings import Settings

if TYPE_CHECKING:
    from features.codes import Codes
    from features.outcomes import Outcome

console = Console(stderr=True)
OUTCOME_HELP = "A registered outcome, e.g. falls or complex-dependency."


def settings_of(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    if not isinstance(obj, Settings):
        raise RuntimeError("settings were not built at the entry point")
    return obj


def outcome_of(settings: Settings, spelling: str) -> Outcome:
    """The registered outcome called `spelling`, or exit naming the outcomes registered."""
    from features.outcomes import UnknownOutcome

    try:
        return settings.outcomes().get(spelling)
    except UnknownOutcome as error:
        fail(str(error))


def codes_of(settings: Settings) -> Codes:
    """The code lists' codes, or exit naming the list, line and reason a list is refused for."""
    from codelists import CodeListError

    try:
        return settings.codes()
    except CodeListError as error:
        fail(f"the code lists are refused: {error}")


def fail(reason: str) -> NoReturn:
    """Exit non-zero with a one-line reason."""
    console.print(f"[red]error:[/red] {reason}", soft_wrap=True)
    raise typer.Exit(code=1)


def print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, default=str))
