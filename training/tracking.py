"""Logging a trained model to MLflow, then registering it once every artifact is in place.

The tracking URI is always passed in (a sqlite database; never the file store) and each
experiment is created with its artifact location under the given artifact root.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import sklearn
import skops.io as sio
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from evaluation.drift import reference_profile
from features.contract import TABLE_NAMES
from features.feature_list import Feature
from features.outcomes import Outcome
from features.training_sets import sample_totals
from models.bundle import CODELISTS_DIGEST, ModelBundle, feature_list_hash
from models.encoding import feature_to_dict
from models.registered import BUNDLE_ARTIFACT, CHALLENGER
from training.config import TrainingConfig
from training.fit import TrainedModels, baseline_coefficients

PREDICTIONS_ARTIFACT = "validation/predictions.parquet"
# everyone at the validation date, profiled for the monitor (evaluation/drift.py)
PROFILE_ARTIFACT = "monitor/reference_profile.json"
CHECKS_DIR = "checks"
SHAP_ROWS = 5000


class TrackingError(RuntimeError):
    """A run could not be logged or registered."""


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    experiment_id: str
    model_uri: str
    model_id: str | None
    version: str | None = None  # the registered model version, once registered


def client_for(tracking_uri: str) -> MlflowClient:
    _refuse_file_store(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _refuse_file_store(tracking_uri: str) -> None:
    if not tracking_uri.startswith(("sqlite:", "postgresql", "mysql", "http:", "https:")):
        raise TrackingError(f"tracking URI {tracking_uri!r} is not a database or server")


def ensure_experiment(client: MlflowClient, outcome: Outcome, artifact_root: Path) -> str:
    name = outcome.model_name
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = (Path(artifact_root).resolve() / name).as_uri()
    return str(client.create_experiment(name, artifact_location=location))


# --- fingerprints ----------------------------------------------------------------------


def store_fingerprint(store_path: Path) -> str:
    """sha256 over each contract table's row count and order-free content hash."""
    summary = {}
    with duckdb.connect(str(store_path), read_only=True) as con:
        present = {
            row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        for name in TABLE_NAMES:
            if name in present:
                row = con.execute(f'SELECT count(*), bit_xor(hash(t)) FROM "{name}" t').fetchone()
                summary[name] = [int(row[0]), str(row[1])] if row else None
    return hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of a frame's columns and row hashes (used when there is no store)."""
    digest = hashlib.sha256(json.dumps(list(map(str, frame.columns))).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def features_fingerprint(features: Sequence[Feature]) -> str:
    """The feature list's own fingerprint when these are its features; else a list hash."""
    from features import feature_list

    fingerprint = getattr(feature_list, "feature_list_fingerprint", None)
    listed = tuple(getattr(feature_list, "FEATURES", ()))
    if callable(fingerprint) and listed and tuple(features) == listed:
        return str(fingerprint())
    return feature_list_hash(features)


def data_fingerprint(content_fingerprint: str, features: Sequence[Feature]) -> str:
    text = f"{content_fingerprint}:{features_fingerprint(features)}"
    return hashlib.sha256(text.encode()).hexdigest()


def git_commit(start: Path | None = None) -> str:
    """The current commit of the repository holding `start`, or 'unknown'."""
    folder = Path(start or Path(__file__).resolve().parent)
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


# --- logging ---------------------------------------------------------------------------


def log_training_run(
    trained: TrainedModels,
    validation_frame: pd.DataFrame,
    *,
    outcome: Outcome,
    config: TrainingConfig,
    tracking_uri: str,
    artifact_root: Path,
    fingerprint: str,
    inside_run: Callable[[str], None] | None = None,
) -> LoggedRun:
    """Log everything about one training in one run; `inside_run(run_id)` may log more.

    If anything raises, the run ends FAILED and the error propagates; nothing is registered.
    """
    client = client_for(tracking_uri)
    experiment_id = ensure_experiment(client, outcome, artifact_root)
    mlflow.set_tracking_uri(tracking_uri)
    features = trained.bundle.features
    with mlflow.start_run(experiment_id=experiment_id) as run:
        run_id = run.info.run_id
        mlflow.set_tags(_run_tags(outcome.name, config, fingerprint, features))
        mlflow.log_params(_params(trained, outcome.name, config))
        mlflow.log_metrics(_metrics(trained))
        mlflow.log_text(
            json.dumps([feature_to_dict(f) for f in features], indent=2), "features.json"
        )
        mlflow.log_text(trained.bundle.calibrator.to_json(), "calibrator.json")
        with tempfile.TemporaryDirectory() as tmp:
            _log_files(trained, validation_frame, Path(tmp))
        mlflow.log_dict(_profile(validation_frame, features), PROFILE_ARTIFACT)
        model_info = _log_lightgbm(trained.bundle, validation_frame)
        if inside_run is not None:
            inside_run(run_id)
    return LoggedRun(run_id, experiment_id, model_info.model_uri, model_info.model_id)


def _run_tags(
    outcome: str, config: TrainingConfig, fingerprint: str, features: Sequence[Feature]
) -> dict[str, str]:
    return {
        "outcome": outcome,
        "config_version": config.config_version,
        "data_fingerprint": fingerprint,
        "feature_list_hash": feature_list_hash(features),
        "git_commit": git_commit(),
    }


def _params(trained: TrainedModels, outcome: str, config: TrainingConfig) -> dict[str, Any]:
    params = config.flat_params()
    params[f"bands.{outcome}.cuts"] = list(trained.bundle.bands.cuts)
    params.update({f"split.{k}": v for k, v in trained.split_sizes.items()})
    params["outcome"] = outcome
    params["n_features"] = len(trained.bundle.features)
    params["best_iteration"] = trained.best_iteration
    params["calibrator"] = trained.bundle.calibrator.kind
    recalibration = trained.bundle.calibrator.recalibration
    params["recalibration"] = (
        f"slope {recalibration.slope:.4f}, intercept {recalibration.intercept:+.4f}"
        if recalibration
        else "none (too few events at the validation date)"
    )
    params.update(sampling_params(trained.bundle.metadata.get("sampling")))
    if CODELISTS_DIGEST in trained.bundle.metadata:
        params[CODELISTS_DIGEST] = trained.bundle.metadata[CODELISTS_DIGEST]
    return params


def sampling_params(sampling: dict[str, Any] | None) -> dict[str, Any]:
    """A sampled training set's sizes over its training dates, for MLflow params: the rows
    fitted on, their positives and the rows they stand for (the sum of the weights)."""
    if not sampling:
        return {}
    total = sample_totals(sampling["by_index_date"])
    return {
        "sampling.training_rows": int(total["rows"]),
        "sampling.training_positives": int(total["positives"]),
        "sampling.rows_represented": round(total["represented"]),
        "sampling.note": sampling["note"],
    }


def _metrics(trained: TrainedModels) -> dict[str, float]:
    out = {}
    for model, values in trained.metrics.items():
        for key, value in values.items():
            out[f"{model}.{key}"] = float(value)
    return out


def _log_files(trained: TrainedModels, validation_frame: pd.DataFrame, tmp: Path) -> None:
    bundle_dir = trained.bundle.save(tmp / BUNDLE_ARTIFACT)
    mlflow.log_artifacts(str(bundle_dir), BUNDLE_ARTIFACT)
    baseline_dir = tmp / "baseline"
    baseline_dir.mkdir()
    sio.dump(trained.baseline, baseline_dir / "baseline.skops")
    (baseline_dir / "coefficients.json").write_text(baseline_coefficients(trained.baseline))
    mlflow.log_artifacts(str(baseline_dir), "baseline")
    predictions = tmp / "predictions.parquet"
    trained.validation_predictions.to_parquet(predictions, index=False)
    mlflow.log_artifact(str(predictions), str(Path(PREDICTIONS_ARTIFACT).parent))
    plot = tmp / "shap_summary.png"
    shap_summary_plot(trained.bundle, validation_frame, plot)
    mlflow.log_artifact(str(plot))


def _profile(frame: pd.DataFrame, features: Sequence[Feature]) -> dict[str, Any]:
    """The monitor's reference: everyone at the validation date (evaluation/drift.py)."""
    day = pd.Timestamp(frame["index_date"].max()).date()
    history = int(frame["lookback_days"].max()) if "lookback_days" in frame else None
    return reference_profile(frame, features, day, history)


def shap_summary_plot(bundle: ModelBundle, frame: pd.DataFrame, path: Path) -> Path:
    """A bar chart of mean |SHAP| per feature (log-odds), labelled in plain words."""
    rows = frame if len(frame) <= SHAP_ROWS else frame.sample(SHAP_ROWS, random_state=0)
    contrib = bundle.contributions(rows)[:, : len(bundle.features)]
    importance = np.abs(contrib).mean(axis=0)
    order = np.argsort(importance)
    labels = [_plain_label(bundle.features[i]) for i in order]
    figure = Figure(figsize=(8, 0.35 * len(order) + 1.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.barh(labels, importance[order], color="#3b6ea5")
    axes.set_xlabel("mean |SHAP value| (log-odds)")
    axes.set_title(f"What drives {bundle.outcome.replace('_', ' ')} risk")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def _plain_label(feature: Feature) -> str:
    """The label without its value placeholder."""
    return feature.label.replace("{value}", "").replace("  ", " ").strip(" :") or feature.name


def _log_lightgbm(bundle: ModelBundle, validation_frame: pd.DataFrame) -> Any:
    """The booster in LightGBM's own text format: loading it needs no pickle."""
    example = bundle.matrix(validation_frame.head(5))
    signature = infer_signature(
        example, np.asarray(bundle.booster.predict(example, raw_score=True))
    )
    with warnings.catch_warnings():
        # mlflow's own import of its agent response types warns about an Any type hint
        warnings.filterwarnings("ignore", message=".*Any type hint", category=UserWarning)
        return _log_booster(bundle, example, signature)


def _log_booster(bundle: ModelBundle, example: pd.DataFrame, signature: Any) -> Any:
    return mlflow.lightgbm.log_model(
        bundle.booster,
        name="model",
        signature=signature,
        input_example=example,
        pip_requirements=[
            f"lightgbm=={lgb.__version__}",
            f"numpy=={np.__version__}",
            f"pandas=={pd.__version__}",
            f"scikit-learn=={sklearn.__version__}",
        ],
    )


# --- registration ----------------------------------------------------------------------


def register_run(logged: LoggedRun, outcome: Outcome, tracking_uri: str) -> ModelVersion:
    """Register a FINISHED run's model as a new version with alias challenger."""
    client = client_for(tracking_uri)
    run = client.get_run(logged.run_id)
    if run.info.status != "FINISHED":
        raise TrackingError(
            f"run {logged.run_id} is {run.info.status}; only finished runs register"
        )
    name = outcome.model_name
    _ensure_registered_model(client, outcome)
    tags = {key: run.data.tags[key] for key in ("data_fingerprint", "feature_list_hash", "outcome")}
    tags["git_commit"] = run.data.tags.get("git_commit", "unknown")
    version = client.create_model_version(
        name, logged.model_uri, run_id=logged.run_id, tags=tags, model_id=logged.model_id
    )
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return version


def _ensure_registered_model(client: MlflowClient, outcome: Outcome) -> None:
    try:
        client.get_registered_model(outcome.model_name)
    except MlflowException:
        client.create_registered_model(
            outcome.model_name,
            tags={"outcome": outcome.name},
            description=f"carerisk risk model: the chance of {outcome.predicts}",
        )


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
