"""`carerisk refresh EXTRACT`: the monthly cycle in one command, for cron or an orchestrator.

Exit status: 0 stable (or no champion yet), 3 watch, 4 retrain (the monitor's verdict, the
worst champion's); 1 an error (nothing after the failing step ran); 2 a usage error. `--json`
prints one object: `changed` (false when the run did nothing new), `verdict`, `exit_code`,
`snapshot_date` and each step with `changed` and `detail`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from carerisk.commands._common import console, fail, print_json, settings_of

EXIT_HELP = (
    "Exit status: 0 stable (or no champion yet), 3 watch, 4 retrain (the monitor's verdict); "
    "1 an error."
)


def add_commands(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("refresh", epilog=EXIT_HELP)(refresh_command)


def refresh_command(
    ctx: typer.Context,
    extract: Path = typer.Argument(..., help="Folder of the new extract."),
    full: bool = typer.Option(False, "--full", help="The extract is full (else its manifest)."),
    increment: bool = typer.Option(False, "--increment", help="The extract is an increment."),
    retrain: bool = typer.Option(
        False, "--retrain", help="Train a challenger of each outcome and run the promotion gate."
    ),
    config: Path | None = typer.Option(None, "--config", help="Training config TOML."),
    log: bool = typer.Option(True, "--log/--no-log", help="Log monitor reports to the runs."),
    as_json: bool = typer.Option(False, "--json", help="Print what was done as JSON."),
) -> None:
    """Load the extract (every row checked), snapshot the features, keep the champions' scores,
    monitor the champions, and with --retrain train challengers and run the gate. A step whose
    work is already done is skipped: a second run of the same extract changes nothing."""
    from carerisk.commands.train import synthetic_truth
    from evaluation.drift import ProfileError
    from features.objections import ObjectionListError, read_objections
    from features.store import ContractError
    from training.config import ConfigError, TrainingConfig
    from training.refresh import RefreshError, RefreshOptions, RefreshPlaces, refresh

    if full and increment:
        fail("--full and --increment contradict each other; give one")
    if not extract.is_dir():
        fail(f"no extract folder at {extract}")
    settings = settings_of(ctx)
    try:
        cfg = TrainingConfig.load(config)
        cfg.check_outcomes(settings.outcomes().names())
        objections = read_objections(settings.home.objections_path)
    except (ValueError, ConfigError, ObjectionListError) as err:
        fail(str(err))
    places = RefreshPlaces(
        settings.home.store_path,
        settings.tracking_uri,
        settings.home.artifacts_dir,
        settings.home.reports_dir,
        settings.home.scores_dir,
    )
    options = RefreshOptions(
        outcomes=list(settings.outcomes()),
        config=cfg,
        objections=objections,
        kind="full" if full else "increment" if increment else None,
        retrain=retrain,
        log_to_run=log,
        truth=synthetic_truth,
    )
    say = None if as_json else (lambda text: console.print(text, soft_wrap=True))
    try:
        result = refresh(extract, places, options, say)
    except (RefreshError, ContractError, ProfileError, FileNotFoundError, ValueError) as err:
        fail(str(err))
    if as_json:
        print_json(result.to_dict())
    else:
        what = "changed" if result.changed else "nothing new: this extract was already refreshed"
        console.print(f"refresh: {what}; verdict {result.verdict or 'none'} "
                      f"(exit status {result.exit_code})")  # fmt: skip
    raise typer.Exit(code=result.exit_code)
