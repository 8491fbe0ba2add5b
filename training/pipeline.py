"""One outcome from store to registered challenger: build, split, fit, log, register."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import mlflow
import pandas as pd

from evaluation import FairnessLimits
from features.codes import Codes
from features.feature_list import Feature
from features.outcomes import Outcome
from models.bundle import with_codelists_digest
from training.config import TrainingConfig
from training.evaluation_run import TRAIN_DATES_PARAM, TruthFiles
from training.fit import LABEL, TrainedModels, TrainingError, calibration_people, fit
from training.tracking import (
    client_for,
    data_fingerprint,
    log_training_run,
    register_run,
    store_fingerprint,
)

if TYPE_CHECKING:
    from features.training_sets import NegativeSampling

INDEX_DATES = 5  # quarterly index dates: four to train, the latest to validate
# the fewest events the training dates, and the validation date, must each hold to train on
MIN_EVENTS = 10


@dataclass(frozen=True)
class TrainingResult:
    outcome: str
    run_id: str
    version: str
    metrics: dict[str, dict[str, float]]
    split_sizes: dict[str, int]
    best_iteration: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "run_id": self.run_id,
            "version": self.version,
            "metrics": self.metrics,
            "split_sizes": self.split_sizes,
            "best_iteration": self.best_iteration,
        }


def train_outcome(
    store_path: Path,
    outcome: Outcome,
    *,
    config: TrainingConfig,
    tracking_uri: str,
    artifact_root: Path,
    index_dates: Sequence[date] | None = None,
    features: Sequence[Feature] | None = None,
    engine: Literal["duckdb", "spark"] = "duckdb",
    objections: Iterable[str] = (),
    reports_dir: Path | None = None,
    truth: TruthFiles | None = None,
    codes: Codes | None = None,
) -> TrainingResult:
    """Build the training set from the store (objectors left out), fit, log to MLflow with the
    evaluation report and its subgroup checks, and register a challenger. `truth`: the
    people's known risks, when the extract is synthetic (the report measures the gaps).
    `codes`: the code lists' codes (default: the packaged lists); their digest goes into the
    bundle, the run's params and the model card.
    """
    from features import feature_list, training_sets  # lazily: written by the features stage
    from features.codes import packaged_codes
    from features.labels import LabelSettings

    codes = codes or packaged_codes()

    chosen = tuple(features if features is not None else feature_list.FEATURES)
    if not chosen:
        raise ValueError("the feature list is empty; nothing to train on")
    refuse_uncovered(store_path, outcome)
    dates = (
        list(index_dates) if index_dates is not None else default_index_dates(store_path, outcome)
    )
    frame = training_sets.build_training_set(
        store_path,
        outcome,
        dates,
        engine,
        objections=objections,  # type: ignore[arg-type]
        settings=LabelSettings(codes=codes),
        sampling=negative_sampling(config),
    )
    train, validation = training_sets.split_temporal(frame)
    refuse_too_few_events(train, validation, outcome)
    del frame  # the split holds copies (about 2 GiB for complex dependency at 600k people)
    trained = with_coverage(fit(train, validation, chosen, outcome, config), store_path)
    trained = replace(trained, bundle=with_codelists_digest(trained.bundle, codes.digest))
    train_dates = sorted({pd.Timestamp(d).date() for d in train["index_date"]})

    def inside_run(run_id: str) -> None:
        mlflow.log_param(TRAIN_DATES_PARAM, json.dumps([d.isoformat() for d in train_dates]))
        if reports_dir is not None:
            evaluate_trained(trained, outcome, validation, run_id, train_dates, tracking_uri,
                             reports_dir, truth)  # fmt: skip

    return log_and_register(
        trained,
        validation,
        outcome=outcome,
        config=config,
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        fingerprint=data_fingerprint(store_fingerprint(store_path), chosen),
        inside_run=inside_run,
    )


def uncovered(store_path: Path, outcome: Outcome) -> str | None:
    """Why the outcome cannot be trained on the store (its label needs a table the store's
    source lacks); None when it can."""
    from features.coverage import label_refusal, read_store_coverage

    return label_refusal(outcome, read_store_coverage(store_path))


def refuse_uncovered(store_path: Path, outcome: Outcome) -> None:
    """Stop before any work when the label needs a table the store's source lacks."""
    why = uncovered(store_path, outcome)
    if why is not None:
        raise TrainingError(why)


def too_few_events(train: pd.DataFrame, validation: pd.DataFrame, outcome: Outcome) -> str | None:
    """Why the outcome cannot be trained on these rows (the training dates or the validation
    date hold fewer than MIN_EVENTS events); None when both hold enough."""
    counts = {"training dates": train, "validation date": validation}
    events = {name: int(rows[LABEL].astype(int).sum()) for name, rows in counts.items()}
    if min(events.values()) >= MIN_EVENTS:
        return None
    held = "; ".join(
        f"the {name} {events[name]:,} in {len(counts[name]):,} person-dates" for name in counts
    )
    return (
        f"{outcome.title.lower()} cannot be trained on this store: too few events "
        f"({outcome.predicts}) to learn from: {held}; at least {MIN_EVENTS} are needed in each"
    )


def refuse_too_few_events(train: pd.DataFrame, validation: pd.DataFrame, outcome: Outcome) -> None:
    """Stop before fitting when the training set holds too few events to learn from."""
    why = too_few_events(train, validation, outcome)
    if why is not None:
        raise TrainingError(why)


def with_coverage(trained: TrainedModels, store_path: Path) -> TrainedModels:
    """The trained models, their bundle recording the coverage of the store it learned from."""
    from dataclasses import replace

    from features.coverage import read_store_coverage

    coverage = read_store_coverage(store_path)
    record = coverage.model_record(trained.bundle.features)
    return replace(trained, bundle=trained.bundle.with_coverage(record))


def negative_sampling(config: TrainingConfig) -> NegativeSampling | None:
    """The config's [sampling] as the training set builder takes it: the calibration people
    kept whole (training/fit.py calibration_people); None when it keeps every row."""
    from features.training_sets import NegativeSampling

    if not config.sampling.enabled:
        return None
    return NegativeSampling(
        config.sampling.negative_fraction, config.seed, whole=calibration_people(config)
    )


def evaluate_trained(
    trained: TrainedModels,
    outcome: Outcome,
    validation: pd.DataFrame,
    run_id: str,
    train_dates: Sequence[date],
    tracking_uri: str,
    reports_dir: Path,
    truth: TruthFiles | None = None,
) -> None:
    """The evaluation report of a model just trained, logged inside its run."""
    from training.evaluation_run import (
        aligned,
        champion_probabilities,
        evaluation_input,
        report_and_log,
    )

    client = client_for(tracking_uri)
    frame, predictions = aligned(validation, trained.validation_predictions)
    p_champion, _ = champion_probabilities(client, outcome.model_name, "new", frame)
    inp = evaluation_input(
        trained.bundle, outcome, frame, predictions,
        version=f"run {run_id[:8]}", train_dates=train_dates, p_champion=p_champion,
        p_true=truth.true(outcome.name, frame) if truth else None,
        p_reference=truth.reference(outcome.name, frame) if truth else None,
    )  # fmt: skip
    report_and_log(client, run_id, inp, reports_dir, FairnessLimits())


def default_index_dates(store_path: Path, outcome: Outcome, count: int = INDEX_DATES) -> list[date]:
    """The latest `count` quarterly index dates with a year of lookback and the outcome's whole
    horizon of follow-up in the store: the last validates, the earlier ones train."""
    from features.extent import data_start, latest_event_date
    from features.training_sets import index_dates

    start, end = data_start(Path(store_path)), latest_event_date(Path(store_path))
    if start is None or end is None:
        raise ValueError(f"store {store_path} holds no dated events; cannot choose index dates")
    return index_dates(start, end, outcome.horizon_months)[-count:]


def log_and_register(
    trained: TrainedModels,
    validation: Any,
    *,
    outcome: Outcome,
    config: TrainingConfig,
    tracking_uri: str,
    artifact_root: Path,
    fingerprint: str,
    inside_run: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Log the run; register (alias challenger) only after the run finished cleanly."""
    logged = log_training_run(
        trained,
        validation,
        outcome=outcome,
        config=config,
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        fingerprint=fingerprint,
        inside_run=inside_run,
    )
    version = register_run(logged, outcome, tracking_uri)
    return TrainingResult(
        outcome=outcome.name,
        run_id=logged.run_id,
        version=str(version.version),
        metrics=trained.metrics,
        split_sizes=trained.split_sizes,
        best_iteration=trained.best_iteration,
    )
