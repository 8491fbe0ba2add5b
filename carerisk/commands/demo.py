"""`carerisk demo`: the whole job end to end on the embedded defaults.

synthetic county -> load -> validate -> features -> train both outcomes (with their evaluation
reports) -> promote -> score everyone (score-all: the scores the service reads) -> risk
registers -> demo keys -> the scoring service on loopback.
Each step is the real subcommand, invoked in this process with the same settings.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from carerisk.commands._common import console, settings_of

if TYPE_CHECKING:
    from features.outcomes import Outcome


def _step(ctx: typer.Context, title: str, name: str, *args: object) -> None:
    """Run a sibling subcommand, parsed from its command-line arguments, in this process."""
    console.rule(f"[bold]{title}")
    commands: dict[str, Any] = getattr(ctx.find_root().command, "commands", {})
    command = commands[name]
    with command.make_context(name, [str(a) for a in args], parent=ctx) as sub:
        command.invoke(sub)


def demo(
    ctx: typer.Context,
    people: int = typer.Option(20_000, "--people", help="People in the synthetic county."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic county."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the service at the end."),
    port: int = typer.Option(3000, "--port", help="Loopback port of the service."),
    config: Path | None = typer.Option(
        None, "--config", help="Training config TOML (default: config/demo.toml)."
    ),
    end: str | None = typer.Option(
        None,
        "--end",
        help="Last day of the county's extract (YYYY-MM-DD; default: the last day of the "
        "previous month, so the first answers are not stale).",
    ),
) -> None:
    """Run everything on a synthetic county, then serve the champions on 127.0.0.1."""
    settings = settings_of(ctx)
    extract_end = end or last_month_end(date.today()).isoformat()
    settings.home.root.mkdir(parents=True, exist_ok=True)
    extract = settings.home.extract_dir
    from training.config import DEMO_CONFIG_PATH

    cfg = ["--config", config or DEMO_CONFIG_PATH]
    outcomes = list(settings.outcomes())
    _step(ctx, "1. Synthetic county", "synth", "--people", people, "--seed", seed, "--out", extract,
          "--end", extract_end)  # fmt: skip
    _step(ctx, "2. Load into the store (every row checked)", "load", extract)
    _step(ctx, "3. Validate the extract again, writing nothing", "validate", extract)
    _step(ctx, "4. Features at the latest index date (snapshot)", "features")
    for outcome in outcomes:
        _step(ctx, f"5. Train and evaluate: {outcome.cli_name}", "train",
              "--outcome", outcome.cli_name, *cfg)  # fmt: skip
    for outcome in outcomes:
        _step(ctx, f"6. Promotion gate: {outcome.cli_name}", "promote",
              "--outcome", outcome.cli_name, *cfg)  # fmt: skip
    _step(ctx, "7. Score and explain everyone in each cohort (what the service reads)",
          "score-all")  # fmt: skip
    registers(ctx, settings.home.reports_dir, outcomes)
    keys = demo_keys(ctx)
    cds_patients(ctx)
    console.rule("[bold]Done")
    console.print(f"Evaluation reports: {settings.home.reports_dir}")
    console.print(f"MLflow: .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri}")
    if serve:
        first = outcomes[0]
        person = first_person(register_path(settings.home.reports_dir, first, "gp"))
        print_examples(keys, port, first, person)
        _step(ctx, "10. Scoring service (Ctrl-C stops it)", "serve", "--port", port)


def last_month_end(today: date) -> date:
    """The last day of the month before `today`'s."""
    return today.replace(day=1) - timedelta(days=1)


def registers(ctx: typer.Context, reports: Path, outcomes: list[Outcome]) -> None:
    """A GP register of each outcome, and the fire service's view of the first."""
    first, *others = outcomes
    for outcome, role in [(first, "gp"), (first, "fire"), *((o, "gp") for o in others)]:
        out = register_path(reports, outcome, role)
        _step(ctx, f"8. Risk register: {outcome.cli_name}, {role} view", "register",
              "--outcome", outcome.cli_name, "--top", 200, "--role", role,
              "--out", out)  # fmt: skip


def register_path(reports: Path, outcome: Outcome, role: str) -> Path:
    return reports / f"register-{outcome.cli_name}-{role}.csv"


def demo_keys(ctx: typer.Context) -> dict[str, str]:
    """A GP key (for every practice) and a fire-service key for trying the API (shown once,
    like any key)."""
    from serving.keys import KeyStore

    console.rule("[bold]9. Demo API keys")
    store = KeyStore(settings_of(ctx).home.keys_path)
    keys = {}
    for org, role in (("Demo Surgery", "gp"), ("Demo Fire and Rescue", "fire")):
        _, keys[role] = store.add(org, role, all_practices=role == "gp")  # a demo federation
        console.print(f"{role:5} key for {org}: {keys[role]}")
    return keys


def cds_patients(ctx: typer.Context) -> None:
    """The CDS Hooks patient lookup of the demo: each Patient.id is the pseudonymised id."""
    from features.snapshot import read_snapshot
    from serving.cds_patients import write_identity_lookup

    home = settings_of(ctx).home
    people = read_snapshot(home.store_path)["person_id"].tolist()
    count = write_identity_lookup(home.cds_patients_path, people)
    console.print(f"CDS Hooks patient lookup: {count} people, mapped one to one")


def first_person(register_csv: Path) -> str:
    import pandas as pd

    return str(pd.read_csv(register_csv, nrows=1)["person_id"].iloc[0])


def print_examples(keys: dict[str, str], port: int, outcome: Outcome, person_id: str) -> None:
    base = f"http://127.0.0.1:{port}/v1"
    name = outcome.name
    console.print("\nOnce the service says it is listening, try:")
    console.print(
        f"curl -s -X POST {base}/score -H 'Authorization: Bearer {keys['gp']}' "
        "-H 'Content-Type: application/json' "
        f'-d \'{{"outcome": "{name}", "person_ids": ["{person_id}"]}}\'',
        soft_wrap=True,
    )
    console.print(
        f"curl -s '{base}/referrals' -H 'Authorization: Bearer {keys['fire']}'",
        soft_wrap=True,
    )


def add_commands(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("demo")(demo)
