"""Commands for the train stage: `carerisk train` and `carerisk promote`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from training.evaluation_run import TruthFiles

from carerisk.commands._common import (
    OUTCOME_HELP,
    codes_of,
    console,
    fail,
    outcome_of,
    print_json,
    settings_of,
)


def train(
    ctx: typer.Context,
    outcome: str = typer.Option(..., "--outcome", help=OUTCOME_HELP),
    config: Path | None = typer.Option(None, "--config", help="Training config TOML."),
    engine: str = typer.Option("duckdb", "--engine", help="Feature engine: duckdb or spark."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the evaluation."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    sample_negatives: float | None = typer.Option(
        None,
        "--sample-negatives",
        help="Keep every positive and this share of negative person-dates at the training "
        "dates, weighted (the config's [sampling] negative_fraction).",
    ),
) -> None:
    """Train one outcome from the store, evaluate it, log both to MLflow and register a
    challenger. People on the objections list are left out."""
    from features.objections import ObjectionListError, read_objections
    from training.config import ConfigError, TrainingConfig
    from training.pipeline import train_outcome

    settings = settings_of(ctx)
    chosen = outcome_of(settings, outcome)
    try:
        settings_config = TrainingConfig.load(config)
        if sample_negatives is not None:
            settings_config = settings_config.with_negative_fraction(sample_negatives)
        settings_config.check_outcomes(settings.outcomes().names())
        objections = read_objections(settings.home.objections_path)
    except (ValueError, ConfigError, ObjectionListError) as error:
        fail(str(error))
    if engine not in ("duckdb", "spark"):
        fail(f"unknown engine {engine!r}; choose duckdb or spark")
    if not settings.home.store_path.is_file():
        fail(f"no store at {settings.home.store_path}; run `carerisk load` first")
    name = chosen.cli_name
    codes = codes_of(settings)
    with console.status(f"training {name} ..."):
        try:
            result = train_outcome(
                settings.home.store_path,
                chosen,
                config=settings_config,
                tracking_uri=settings.tracking_uri,
                artifact_root=settings.home.artifacts_dir,
                engine=engine,  # type: ignore[arg-type]
                objections=objections,
                reports_dir=settings.home.reports_dir if report else None,
                truth=synthetic_truth(settings.home.store_path),
                codes=codes,
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
    if report:
        console.print(f"evaluation report logged to the run; copies in {settings.home.reports_dir}")


def evaluate(
    ctx: typer.Context,
    model: str = typer.Option(
        ..., "--model", help="NAME@ALIAS or NAME@VERSION, e.g. carerisk-falls@challenger."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report's numbers as JSON."),
) -> None:
    """Write the evaluation and fairness report of a registered model and log it to its run."""
    import json

    from training.evaluation_run import evaluate_version

    settings = settings_of(ctx)
    if not settings.home.store_path.is_file():
        fail(f"no store at {settings.home.store_path}; run `carerisk load` first")
    codes = codes_of(settings)
    with console.status(f"evaluating {model} ..."):
        try:
            files = evaluate_version(
                model,
                store_path=settings.home.store_path,
                tracking_uri=settings.tracking_uri,
                reports_dir=settings.home.reports_dir,
                outcomes=settings.outcomes(),
                truth=synthetic_truth(settings.home.store_path),
                codes=codes,
            )
        except Exception as error:  # one line, non-zero exit
            fail(f"evaluating {model} failed: {error}")
    if as_json:
        print_json(json.loads(files.json.read_text(encoding="utf-8")))
        return
    verdict = "all checks pass" if files.passed else "some checks FAIL (see the summary)"
    console.print(f"report: {files.html}\nnumbers: {files.json}\n{verdict}")


def promote(
    ctx: typer.Context,
    outcome: str = typer.Option(..., "--outcome", help=OUTCOME_HELP),
    config: Path | None = typer.Option(None, "--config", help="Training config TOML (gate)."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Gate the challenger against the champion; move alias champion only if it passes."""
    from training.config import ConfigError, TrainingConfig
    from training.promotion import PromotionError
    from training.promotion import promote as run_gate

    settings = settings_of(ctx)
    chosen = outcome_of(settings, outcome)
    try:
        gate_config = TrainingConfig.load(config)
        verdict = run_gate(
            chosen, settings.tracking_uri, gate=gate_config.gate, seed=gate_config.seed
        )
    except (ValueError, ConfigError, PromotionError) as error:
        fail(str(error))
    if as_json:
        print_json(verdict.to_dict())
    else:
        console.print(verdict.summary())
    if not verdict.passed:
        fail("promotion refused: " + "; ".join(verdict.reasons))


def synthetic_truth(store_path: Path) -> TruthFiles | None:
    """The known risks of the extract last loaded into the store, when it is a synthetic
    county's (the report then measures the model against them)."""
    from features.extent import last_extract
    from synthetic.truth_files import records_reference_path, true_risk_path
    from training.evaluation_run import TruthFiles

    extract = last_extract(store_path)
    true = true_risk_path(extract.folder) if extract else None
    if extract is None or true is None:
        return None
    return TruthFiles(true, records_reference_path(extract.folder))


def add_commands(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("promote")(promote)
