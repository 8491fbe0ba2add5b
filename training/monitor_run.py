"""Monitor the champions: gather each one's inputs from MLflow and the store, run
evaluation.monitor, write the report and log it to the champion's run.

Per champion: its bundle (the registry's champion alias), its run's validation predictions and
reference profile, the cohort in the store's snapshot (objectors left out) scored by it, the
scores history's matured scores joined to what happened, and the feed's new codes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from codelists import CodeLists
from evaluation.drift import ProfileError, check_profile
from evaluation.monitor import MonitorInput, MonitorLimits, MonitorResult, monitor
from evaluation.monitor import write_monitor_report as write_report
from features.extent import latest_event_date
from features.new_codes import NewCodes, new_codes
from features.outcomes import Outcome
from features.scores_history import matured_outcomes
from features.snapshot import read_snapshot_people
from models.score_all import Champion, cohort_members, predict
from training.champions import registry_champions
from training.tracking import PREDICTIONS_ARTIFACT, PROFILE_ARTIFACT, client_for

REPORT_DIR = "monitor"


@dataclass(frozen=True)
class MonitorFiles:
    """One champion's verdict and where its report went."""

    result: MonitorResult
    html: Path
    json: Path
    logged_to: str | None  # the run's artifact folder, when logged

    def summary(self) -> dict[str, Any]:
        meta = self.result.meta
        return {
            "outcome": meta["outcome"],
            "model_name": meta["model_name"],
            "model_version": meta["model_version"],
            "run_id": meta["run_id"],
            "snapshot_date": meta["snapshot_date"],
            "verdict": self.result.verdict,
            "exit_code": self.result.exit_code,
            "reasons": [r.to_dict() for r in self.result.reasons],
            "notes": self.result.notes,
            "html": str(self.html),
            "json": str(self.json),
            "logged_to": self.logged_to,
        }


def monitor_champions(
    store_path: Path,
    tracking_uri: str,
    outcomes: Sequence[Outcome],
    limits: MonitorLimits,
    reports_dir: Path,
    *,
    objections: frozenset[str] = frozenset(),
    log_to_run: bool = True,
) -> list[MonitorFiles]:
    """Monitor each outcome's champion against its own validation data."""
    champions = registry_champions(tracking_uri, outcomes)
    client = client_for(tracking_uri)
    snapshot = read_snapshot_people(store_path)
    data_end = latest_event_date(store_path)
    if data_end is None:
        raise ValueError(f"the store {store_path} holds no dated events")
    shared = _Shared(store_path, snapshot)
    out = []
    for champion in champions:
        inp = monitor_input(client, champion, shared, data_end, objections)
        result = monitor(inp, limits)
        html, js = write_report(result, reports_dir)
        folder = f"{REPORT_DIR}/{result.meta['snapshot_date']}" if log_to_run else None
        if folder:
            client.log_artifact(champion.run_id, str(html), folder)
            client.log_artifact(champion.run_id, str(js), folder)
        out.append(MonitorFiles(result, html, js, folder))
    return out


@dataclass
class _Shared:
    """What the champions of one store share, each computed once: the feed's new codes since
    a date, and the snapshot seen through a given length of history."""

    store_path: Path
    snapshot: pd.DataFrame
    codes: dict[date, list[NewCodes]] = field(default_factory=dict)
    windows: dict[int | None, pd.DataFrame] = field(default_factory=dict)

    def new_codes(self, since: date) -> list[NewCodes]:
        if since not in self.codes:
            self.codes[since] = new_codes(self.store_path, since, CodeLists.load().knows)
        return self.codes[since]

    def seen_through(self, history_days: int | None) -> pd.DataFrame:
        if history_days not in self.windows:
            self.windows[history_days] = same_history(self.store_path, self.snapshot, history_days)
        return self.windows[history_days]


def monitor_input(
    client: MlflowClient,
    champion: Champion,
    shared: _Shared,
    data_end: date,
    objections: frozenset[str],
) -> MonitorInput:
    outcome, bundle, snapshot = champion.outcome, champion.bundle, shared.snapshot
    predictions, profile = run_reference(client, champion.run_id)
    reference_date = pd.Timestamp(predictions["index_date"].max()).date()
    served = cohort_members(snapshot, outcome, objections)
    history = profile.get("history_days") if profile else None
    current = cohort_members(shared.seen_through(history), outcome, objections)
    matured = matured_outcomes(shared.store_path, outcome, data_end, objections)
    cuts = bundle.bands.cuts
    return MonitorInput(
        outcome=outcome.name,
        predicts=outcome.predicts,
        cohort=outcome.cohort.words,
        model_name=champion.model_name,
        model_version=champion.version,
        run_id=champion.run_id,
        snapshot_date=pd.Timestamp(snapshot["index_date"].iloc[0]).date(),
        data_end=data_end,
        reference_date=reference_date,
        features=bundle.features,
        bands=bundle.bands,
        horizon_months=outcome.horizon_months,
        profile=profile,
        current=current,
        p_current=predict(bundle, current),
        p_served=predict(bundle, served),
        y_reference=predictions["y"].to_numpy(dtype=int),
        p_reference=predictions["p"].to_numpy(dtype=float),
        matured=matured.rows,
        pending=matured.pending,
        unmatched=matured.unmatched,
        new_codes=shared.new_codes(reference_date),
        operating_threshold=float(cuts[-2] if len(cuts) > 1 else 0.1),
        coverage=bundle.coverage,
    )


def same_history(
    store_path: Path, snapshot: pd.DataFrame, history_days: int | None
) -> pd.DataFrame:
    """The snapshot's people with their features computed from the last `history_days` of
    records only, as the validation date saw them (the snapshot itself when the profile does
    not say, or the store holds no longer a history)."""
    from features.engines import compute_features
    from features.extent import data_start

    day = pd.Timestamp(snapshot["index_date"].iloc[0]).date()
    start = data_start(store_path)
    if not history_days or start is None or (day - start).days <= history_days:
        return snapshot
    frame = compute_features(store_path, day, history_from=day - timedelta(days=history_days))
    extra = [c for c in snapshot.columns if c not in frame.columns]
    return snapshot[["person_id", *extra]].merge(frame, on="person_id", validate="1:1")


def run_reference(client: MlflowClient, run_id: str) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The run's validation predictions, and its reference profile (None when it has none)."""
    import json

    folder = str(Path(PROFILE_ARTIFACT).parent)
    logged = {a.path for a in client.list_artifacts(run_id, folder)}
    with tempfile.TemporaryDirectory() as tmp:
        predictions = pd.read_parquet(client.download_artifacts(run_id, PREDICTIONS_ARTIFACT, tmp))
        if PROFILE_ARTIFACT not in logged:
            return predictions, None
        path = client.download_artifacts(run_id, PROFILE_ARTIFACT, tmp)
        profile = json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        check_profile(profile)
    except ProfileError as error:
        raise ProfileError(f"run {run_id}: {PROFILE_ARTIFACT}: {error}") from None
    return predictions, profile
