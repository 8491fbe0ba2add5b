"""Commands for the train stage: `carerisk train` and `carerisk promote`."""

from __future__ import annotations

from pathlib import Path

import typer

from carerisk.commands._common import console, fail, print_json, settings_of

OUTCOME_HELP = "falls or complex-dependency"


def train(
    ctx: typer.Context,
    outcome: str = typer.Option(..., "--outcome", help=OUTCOME_HELP),
    config: Path | None = typer.Option(None, "--config", help="Training config TOML."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train one outcome from the store, log it to MLflow and register a challenger."""
    from training.config import ConfigError, TrainingConfig
    from training.pipeline import train_outcome
    from training.tracking import canonical_outcome

    settings = settings_of(ctx)
    try:
        name = canonical_outcome(outcome)
        settings_config = TrainingConfig.load(config)
    except (ValueError, ConfigError) as error:
        fail(str(error))
    if not settings.store_path.is_file():
        fail(f"no store at {settings.store_path}; run `carerisk load` first")
    with console.status(f"training {name} ..."):
        try:
            result = train_outcome(
                settings.store_path,
                name,
                config=settings_config,
                tracking_uri=settings.tracking_uri,
                artifact_root=settings.artifacts_dir,
            )
        except Exception as error:  # one line, non-zero exit
            fail(f"training {name} failed: {error}")
    if as_json:
        print_json(result.to_dict())
        return
    model = result.metrics["model"]
    console.print(
        f"{name}: version {result.version} (alias challenger), run {result.run_id}; "
        f"AUROC {model['auroc']:.3f}, Brier {model['brier']:.4f}, "
        f"calibration slope {model['calibration_slope']:.2f}"
    )


def promote(
    ctx: typer.Context,
    outcome: str = typer.Option(..., "--outcome", help=OUTCOME_HELP),
    config: Path | None = typer.Option(None, "--config", help="Training config TOML (gate)."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Gate the challenger against the champion; move alias champion only if it passes."""
    from training.config import ConfigError, TrainingConfig
    from training.registry import PromotionError
    from training.registry import promote as run_gate

    settings = settings_of(ctx)
    try:
        gate_config = TrainingConfig.load(config)
        verdict = run_gate(
            outcome, settings.tracking_uri, gate=gate_config.gate, seed=gate_config.seed
        )
    except (ValueError, ConfigError, PromotionError) as error:
        fail(str(error))
    if as_json:
        print_json(verdict.to_dict())
    else:
        console.print(verdict.summary())
    if not verdict.passed:
        fail("promotion refused: " + "; ".join(verdict.reasons))


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("train")(train)
    app.command("promote")(promote)
