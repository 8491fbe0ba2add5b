"""Commands for the monthly cycle's look-back: `carerisk score-all` and `carerisk monitor`.

`score-all` keeps the champions' scores of everyone in each cohort at the snapshot in the
store's scores history; `monitor` compares each champion's population, feed, scores and
realised performance with its validation data and exits with its verdict: 0 stable, 3 watch,
4 retrain (1 is an error, 2 a usage error).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from carerisk.commands._common import OUTCOME_HELP, console, fail, outcome_of, print_json
from carerisk.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from features.engines import Engine
    from features.outcomes import Outcome
    from features.scores_history import Written
    from models.score_all import Champion
    from training.monitor_run import MonitorFiles

EXIT_HELP = "Exit status: 0 stable, 3 watch, 4 retrain (the worst champion's); 1 on an error."


def _outcomes(settings: Settings, names: list[str] | None) -> list[Outcome]:
    return [outcome_of(settings, n) for n in names] if names else list(settings.outcomes())


def _objections(settings: Settings) -> frozenset[str]:
    from features.objections import ObjectionListError, read_objections

    try:
        return read_objections(settings.home.objections_path)
    except ObjectionListError as err:
        fail(str(err))


def score_all(
    settings: Settings,
    outcomes: list[Outcome],
    objections: frozenset[str],
    engine: Engine = "duckdb",
) -> list[Written]:
    """Score the snapshot's cohorts with the registry's champions on `engine`; store them in the
    history and write each champion's scores export, the file the service reads
    (features.scores_export)."""
    from features.snapshot import snapshot_fingerprint
    from training.champions import registry_champions

    champions = registry_champions(settings.tracking_uri, outcomes)
    store = settings.home.store_path
    fingerprint = snapshot_fingerprint(store)
    if engine == "spark":
        return _score_all_spark(settings, champions, objections, fingerprint)
    if engine != "duckdb":
        raise ValueError(f"unknown engine {engine!r}; choose duckdb or spark")
    return _score_all_duckdb(settings, champions, objections, fingerprint)


def _score_all_duckdb(
    settings: Settings, champions: list[Champion], objections: frozenset[str], fingerprint: str
) -> list[Written]:
    """The snapshot scored a chunk at a time into Parquet files in the home, which DuckDB
    ranks and reads into the scores history and the exports (the rows are never all held in
    memory). A snapshot with nobody to score is scored in memory: there is nothing to hold."""
    import tempfile

    from features.snapshot import read_snapshot_people
    from models.score_all import score_snapshot, store_and_export, write_scores_files

    store = settings.home.store_path
    with tempfile.TemporaryDirectory(prefix=".score-all-", dir=settings.home.root) as folder:
        scores: pd.DataFrame | Path | None = write_scores_files(
            store, champions, Path(folder), objections
        )
        if scores is None:
            scores = score_snapshot(read_snapshot_people(store), champions, objections)
        return store_and_export(
            store, settings.home.scores_dir, scores, champions, objections, fingerprint
        )


def _score_all_spark(
    settings: Settings, champions: list[Champion], objections: frozenset[str], fingerprint: str
) -> list[Written]:
    """Spark writes the scores as Parquet partitions in the home; DuckDB reads them into the
    scores history and the exports (the driver never holds the rows)."""
    import tempfile

    from features.engines import spark_session
    from models.score_all import store_and_export
    from models.score_spark import write_scores_spark

    store = settings.home.store_path
    with tempfile.TemporaryDirectory(prefix=".score-all-", dir=settings.home.root) as folder:
        session = spark_session("carerisk-score-all")
        try:
            parquet = write_scores_spark(store, champions, session, Path(folder) / "scores",
                                         objections)  # fmt: skip
        finally:
            session.stop()
        return store_and_export(
            store, settings.home.scores_dir, parquet, champions, objections, fingerprint
        )


def _written_table(written: list[Written]) -> Table:
    table = Table(title="Scores history")
    for name in ("snapshot", "outcome", "model", "people", "written", "replaced"):
        table.add_column(name, justify="right" if name == "people" else "left")
    for w in written:
        replaced = ", ".join(f"v{v}: {n:,}" for v, n in w.replaced.items()) or "-"
        state = "unchanged (already stored)" if w.unchanged else "written"
        table.add_row(
            str(w.snapshot_date),
            w.outcome,
            f"{w.model_name} v{w.model_version}",
            f"{w.rows:,}",
            state,
            replaced,
        )
    return table


def _verdicts_table(done: list[MonitorFiles]) -> Table:
    table = Table(title="Monitoring the champions")
    for name in ("outcome", "model", "snapshot", "verdict", "reasons"):
        table.add_column(name, justify="right" if name == "reasons" else "left")
    for item in done:
        meta, result = item.result.meta, item.result
        table.add_row(
            meta["outcome"],
            f"{meta['model_name']} v{meta['model_version']}",
            meta["snapshot_date"],
            result.verdict,
            str(len(result.reasons)),
        )
    return table


def _print_details(item: MonitorFiles) -> None:
    """One champion's reasons and notes, a line each, and where its report is."""
    out = Console()
    outcome = item.result.meta["outcome"]
    for reason in item.result.reasons:
        out.print(f"{outcome} [{reason.level}] {reason.area}: {reason.text}", soft_wrap=True)
    for note in item.result.notes:
        out.print(f"{outcome} (note): {note}", soft_wrap=True)
    out.print(f"{outcome} report: {item.html}", soft_wrap=True)


def _finish(done: list[MonitorFiles], as_json: bool) -> NoReturn:
    from evaluation.monitor import EXIT_CODES, worst

    verdict = worst([d.result.verdict for d in done])
    if as_json:
        print_json(
            {
                "verdict": verdict,
                "exit_code": EXIT_CODES[verdict],
                "champions": [d.summary() for d in done],
            }
        )
    else:
        Console().print(_verdicts_table(done))
        for item in done:
            _print_details(item)
        Console().print(f"Verdict: {verdict} (exit status {EXIT_CODES[verdict]})")
    raise typer.Exit(code=EXIT_CODES[verdict])


def add_commands(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""

    @app.command("score-all")
    def score_all_command(
        ctx: typer.Context,
        outcome: list[str] | None = typer.Option(None, "--outcome", help=OUTCOME_HELP),
        engine: str = typer.Option("duckdb", "--engine", help="duckdb or spark."),
        as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
    ) -> None:
        """Score and explain everyone in each cohort at the snapshot with the registry's
        champions and keep the scores (probability, band, ranks within practice, district and
        county, top reasons per audience) in the store's scores history (idempotent for the
        same snapshot and champions)."""
        from carerisk.commands._common import settings_of
        from features.engines import ENGINES
        from training.champions import NoChampion

        if engine not in ENGINES:
            fail(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        settings = settings_of(ctx)
        try:
            written = score_all(
                settings,
                _outcomes(settings, outcome),
                _objections(settings),
                engine,  # type: ignore[arg-type]
            )
        except (NoChampion, LookupError, ValueError, FileNotFoundError) as err:
            fail(str(err))
        if as_json:
            print_json({"written": [w.to_dict() for w in written]})
        else:
            Console().print(_written_table(written))

    @app.command("monitor", epilog=EXIT_HELP)
    def monitor_command(
        ctx: typer.Context,
        outcome: list[str] | None = typer.Option(None, "--outcome", help=OUTCOME_HELP),
        config: Path | None = typer.Option(None, "--config", help="Training config TOML."),
        log: bool = typer.Option(True, "--log/--no-log", help="Log the report to the run."),
        as_json: bool = typer.Option(False, "--json", help="Print the verdicts as JSON."),
    ) -> None:
        """Compare each champion's population, data feed, scores and realised performance with
        the data it was validated on; write an HTML + JSON report (logged to its MLflow run)
        and exit with the verdict: 0 stable, 3 watch, 4 retrain."""
        from carerisk.commands._common import settings_of
        from evaluation.drift import ProfileError
        from training.champions import NoChampion
        from training.config import ConfigError, TrainingConfig
        from training.monitor_run import monitor_champions

        settings = settings_of(ctx)
        try:
            limits = TrainingConfig.load(config).monitor.limits()
        except ConfigError as err:
            fail(str(err))
        if not as_json:
            console.print("Monitoring the champions against their validation data ...")
        try:
            done = monitor_champions(
                settings.home.store_path,
                settings.tracking_uri,
                _outcomes(settings, outcome),
                limits,
                settings.home.reports_dir,
                objections=_objections(settings),
                log_to_run=log,
            )
        except (NoChampion, ProfileError, LookupError, ValueError, FileNotFoundError) as err:
            fail(str(err))
        _finish(done, as_json)
