"""Evaluate a trained or registered model: build the evaluation's inputs, write the report,
log it and its subgroup checks to the model's MLflow run (the promotion gate reads them).

`train` calls `evaluate_trained` inside its run, before registration; `carerisk evaluate
--model NAME@ALIAS` calls `evaluate_version` for any registered version later.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from evaluation import (
    EvaluationInput,
    EvaluationResult,
    FairnessLimits,
    evaluate,
    subgroup_checks,
    write_report,
)
from features.codes import Codes
from features.fairness import FAIRNESS_GROUPS
from features.feature_list import Feature
from features.outcomes import Outcome, OutcomeSet
from features.training_sets import sample_totals
from models import ModelBundle
from models.bundle import CODELISTS_DIGEST
from models.registered import BUNDLE_ARTIFACT, CHAMPION
from training.tracking import PREDICTIONS_ARTIFACT, client_for, version_by_alias

REPORT_DIR = "evaluation"
CHECKS_FILE = "subgroup_checks.json"
TRAIN_DATES_PARAM = "train_index_dates"


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    json: Path
    passed: bool
    checks: list[tuple[str, bool, str]]


def groups_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The fairness descriptors of a training-set frame, named as the evaluation expects."""
    return frame[list(FAIRNESS_GROUPS)].astype("object").reset_index(drop=True)


def evaluation_input(
    bundle: ModelBundle,
    outcome: Outcome,
    frame: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    version: str,
    train_dates: Sequence[date],
    p_champion: np.ndarray | None = None,
    p_true: np.ndarray | None = None,
    p_reference: np.ndarray | None = None,
) -> EvaluationInput:
    """Inputs on the validation people: `frame` and `predictions` row-aligned by person."""
    features: Sequence[Feature] = bundle.features
    names = [f.name for f in features]
    contributions = bundle.contributions(frame)[:, : len(names)]
    return EvaluationInput(
        outcome=outcome.name,
        predicts=outcome.predicts,
        model_name=outcome.model_name,
        model_version=version,
        cohort=outcome.cohort.words,
        train_index_dates=list(train_dates),
        validation_index_dates=sorted({pd.Timestamp(d).date() for d in frame["index_date"]}),
        y=predictions["y"].to_numpy(dtype=int),
        p_model=predictions["p"].to_numpy(dtype=float),
        p_baseline=predictions["p_baseline"].to_numpy(dtype=float),
        groups=groups_of(frame),
        p_champion=p_champion,
        p_true=p_true,
        p_reference=p_reference,
        shap_values=contributions,
        feature_values=frame[names].reset_index(drop=True),
        features=features,
        bands=bundle.bands,
        operating_threshold=float(bundle.bands.cuts[-2] if len(bundle.bands.cuts) > 1 else 0.1),
        monthly_capacity=outcome.monthly_capacity,
        capacity_unit=outcome.capacity_unit,
        died_before_event=frame["died_before_event"].to_numpy(dtype=int),
        training_sample=sample_words(bundle.metadata.get("sampling")),
        code_lists=bundle.metadata.get(CODELISTS_DIGEST),
        coverage=bundle.coverage,
    )


def sample_words(sampling: dict[str, Any] | None) -> str | None:
    """The model card's sentence on a model fitted on a sample (training/fit.py metadata)."""
    if not sampling:
        return None
    total = sample_totals(sampling["by_index_date"])
    rows, represented = int(total["rows"]), total["represented"]
    return (
        f"Fitted on every positive and {sampling['negative_fraction']:.0%} of the negative "
        f"person-dates at the training dates ({rows:,} rows standing for {represented:,.0f}), "
        "each kept negative weighted by the inverse of that share; the calibration people and "
        "the validation date were used whole."
    )


def aligned(frame: pd.DataFrame, predictions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of both in the same person order; refuses when the people differ."""
    keys = ["person_id", "index_date"]
    left = frame.assign(index_date=pd.to_datetime(frame["index_date"]))
    right = predictions.assign(index_date=pd.to_datetime(predictions["index_date"]))
    merged = left.merge(right, on=keys, how="inner", suffixes=("", "_pred"), validate="1:1")
    if len(merged) != len(right):
        raise ValueError(
            f"the store's validation people ({len(left)}) do not match the run's predictions "
            f"({len(right)}); the store changed since training"
        )
    return merged[frame.columns].reset_index(drop=True), merged[right.columns].reset_index(
        drop=True
    )


@dataclass(frozen=True)
class TruthFiles:
    """A synthetic extract's known risks: the true probabilities (person_id, index_date,
    outcome, true_probability) and the records reference (the same with
    reference_probability), when the generator wrote one. The entry point finds them
    (synthetic/truth_files.py); training and evaluation never import synthetic."""

    true_risk: Path
    records_reference: Path | None = None

    def true(self, outcome: str, frame: pd.DataFrame) -> np.ndarray | None:
        return _known(self.true_risk, "true_probability", outcome, frame)

    def reference(self, outcome: str, frame: pd.DataFrame) -> np.ndarray | None:
        if self.records_reference is None:
            return None
        return _known(self.records_reference, "reference_probability", outcome, frame)


def _known(path: Path, column: str, outcome: str, frame: pd.DataFrame) -> np.ndarray | None:
    """The file's `column` for these rows, or None when the file or any row is missing."""
    if not path.is_file():
        return None
    rows = pd.read_parquet(path, columns=["person_id", "index_date", "outcome", column])
    rows = rows[rows["outcome"] == outcome]
    rows = rows.assign(index_date=pd.to_datetime(rows["index_date"]))
    keyed = frame[["person_id", "index_date"]].assign(
        index_date=pd.to_datetime(frame["index_date"])
    )
    merged = keyed.merge(rows, on=["person_id", "index_date"], how="left")
    if merged[column].isna().any():
        return None
    return merged[column].to_numpy(dtype=float)


def champion_probabilities(
    client: MlflowClient, name: str, version: str, frame: pd.DataFrame
) -> tuple[np.ndarray | None, str]:
    """The current champion's probabilities on the same people (None when there is none)."""
    champion = version_by_alias(client, name, CHAMPION)
    if champion is None or str(champion.version) == str(version):
        return None, ""
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(str(champion.run_id), BUNDLE_ARTIFACT, tmp)
        bundle = ModelBundle.load(Path(local))
    try:
        return bundle.predict(frame), f"champion v{champion.version}"
    except Exception:  # noqa: BLE001 - a champion on other features cannot be compared
        return None, ""


def report_and_log(
    client: MlflowClient,
    run_id: str,
    inp: EvaluationInput,
    reports_dir: Path,
    limits: FairnessLimits,
) -> ReportFiles:
    """Evaluate, write the report, log it and its checks to the run."""
    result: EvaluationResult = evaluate(inp, limits)
    html, js = write_report(result, reports_dir)
    client.log_artifact(run_id, str(html), REPORT_DIR)
    client.log_artifact(run_id, str(js), REPORT_DIR)
    checks = [(c.name, c.passed, c.reason) for c in subgroup_checks(result, limits)]
    payload = {"checks": [{"name": n, "passed": p, "reason": r} for n, p, r in checks]}
    client.log_dict(run_id, payload, f"checks/{CHECKS_FILE}")
    return ReportFiles(html=html, json=js, passed=all(p for _, p, _ in checks), checks=checks)


def parse_ref(ref: str) -> tuple[str, str]:
    """`NAME@ALIAS` or `NAME@VERSION` (also `NAME/VERSION`)."""
    for sep in ("@", "/"):
        if sep in ref:
            name, _, which = ref.partition(sep)
            if name and which:
                return name, which
    raise ValueError(f"model reference {ref!r} must look like carerisk-falls@challenger")


def evaluate_version(
    ref: str,
    *,
    store_path: Path,
    tracking_uri: str,
    reports_dir: Path,
    outcomes: OutcomeSet,
    limits: FairnessLimits | None = None,
    truth: TruthFiles | None = None,
    codes: Codes | None = None,
) -> ReportFiles:
    """Re-evaluate a registered version on its validation people, rebuilt from the store.
    `truth`: the synthetic extract's known risks, when there are any; `codes`: the code
    lists' codes (default: the packaged lists)."""
    from features.labels import LabelSettings
    from features.training_sets import build_training_set

    client = client_for(tracking_uri)
    name, which = parse_ref(ref)
    outcome = outcomes.by_model_name(name)
    mv = (
        client.get_model_version(name, which)
        if which.isdigit()
        else client.get_model_version_by_alias(name, which)
    )
    run_id = str(mv.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = ModelBundle.load(Path(client.download_artifacts(run_id, BUNDLE_ARTIFACT, tmp)))
        predictions = pd.read_parquet(client.download_artifacts(run_id, PREDICTIONS_ARTIFACT, tmp))
    day = pd.Timestamp(predictions["index_date"].max()).date()
    settings = LabelSettings(codes=codes) if codes is not None else None
    frame = build_training_set(store_path, outcome, [day], settings=settings)
    frame, predictions = aligned(frame, predictions)
    p_champion, _ = champion_probabilities(client, name, str(mv.version), frame)
    run = client.get_run(run_id)
    train_dates = json.loads(run.data.params.get(TRAIN_DATES_PARAM, "[]"))
    inp = evaluation_input(
        bundle, outcome, frame, predictions,
        version=str(mv.version), train_dates=[date.fromisoformat(d) for d in train_dates],
        p_champion=p_champion,
        p_true=truth.true(outcome.name, frame) if truth else None,
        p_reference=truth.reference(outcome.name, frame) if truth else None,
    )  # fmt: skip
    return report_and_log(client, run_id, inp, reports_dir, limits or FairnessLimits())
