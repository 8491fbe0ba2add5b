"""One outcome from store to registered challenger: build, split, fit, log, register."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from features.registry import Feature
from training.config import TrainingConfig
from training.fit import TrainedModels, fit
from training.tracking import (
    canonical_outcome,
    data_fingerprint,
    log_training_run,
    register_run,
    store_fingerprint,
)


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
    outcome: str,
    *,
    config: TrainingConfig,
    tracking_uri: str,
    artifact_root: Path,
    index_dates: Sequence[date] | None = None,
    features: Sequence[Feature] | None = None,
    engine: str = "duckdb",
) -> TrainingResult:
    """Build the training set from the store, fit, log to MLflow and register a challenger."""
    from features import registry, training_sets  # lazily: written by the features stage

    outcome = canonical_outcome(outcome)
    chosen = tuple(features if features is not None else registry.FEATURES)
    if not chosen:
        raise ValueError("the feature registry is empty; nothing to train on")
    dates = list(index_dates) if index_dates is not None else default_index_dates(store_path)
    frame = training_sets.build_training_set(store_path, outcome, dates, engine)  # type: ignore[arg-type]
    train, validation = training_sets.split_temporal(frame)
    trained = fit(train, validation, chosen, outcome, config)
    return log_and_register(
        trained,
        validation,
        outcome=outcome,
        config=config,
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        fingerprint=data_fingerprint(store_fingerprint(store_path), chosen),
    )


def default_index_dates(store_path: Path) -> list[date]:
    """Quarterly index dates spanning the store: a year of lookback, a year of follow-up."""
    import duckdb

    from features.contract import TABLES
    from features.engines import default_data_start
    from features.training_sets import index_dates

    start = default_data_start(Path(store_path))
    parts = [
        f'SELECT max("{spec.event_date}") AS d FROM "{spec.name}"'
        for spec in TABLES
        if spec.event_date and spec.name != "death"
    ]
    with duckdb.connect(str(store_path), read_only=True) as con:
        row = con.execute(f"SELECT max(d) FROM ({' UNION ALL '.join(parts)})").fetchone()
    end = row[0] if row else None
    if start is None or end is None:
        raise ValueError(f"store {store_path} holds no dated events; cannot choose index dates")
    return index_dates(start, end)


def log_and_register(
    trained: TrainedModels,
    validation: Any,
    *,
    outcome: str,
    config: TrainingConfig,
    tracking_uri: str,
    artifact_root: Path,
    fingerprint: str,
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
    )
    version = register_run(logged, outcome, tracking_uri)
    return TrainingResult(
        outcome=canonical_outcome(outcome),
        run_id=logged.run_id,
        version=str(version.version),
        metrics=trained.metrics,
        split_sizes=trained.split_sizes,
        best_iteration=trained.best_iteration,
    )
