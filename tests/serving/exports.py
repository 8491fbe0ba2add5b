"""A Scorer over a snapshot frame: the frame scored as `carerisk score-all` does, exported
(features.scores_export) and opened read-only, as the service opens it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from features.home import Home
from features.outcomes import PRODUCT
from models import ModelBundle
from models.registered import BUNDLE_ARTIFACT, CHAMPION
from models.score_all import export_key, export_scores, score_snapshot
from serving.objection_list import ObjectionList
from serving.scores_file import ScoresFile, champion_of
from serving.scoring import Scorer, ServedModel
from training.tracking import client_for, version_by_alias

# what the scores history's fairness groups are made of (features.training_sets.descriptors)
DESCRIBED_BY: dict[str, object] = {
    "gp_system": "EMIS",
    "age_years": 80,
    "female": 1,
    "ethnic_group": "white",
    "imd_decile": 5,
    "has_gp_event_730d": 1,
    "ethnicity_recorded": 1,
    "bmi_recorded": 1,
    "lookback_days": 730,
}


def champions(home: Path) -> dict[str, ServedModel]:
    """The registry's champion of each outcome, as the service serves it."""
    client = client_for(Home(home).default_tracking_uri)
    served = {}
    for outcome in PRODUCT:
        version = version_by_alias(client, outcome.model_name, CHAMPION)
        assert version is not None, outcome.model_name
        with tempfile.TemporaryDirectory() as tmp:
            folder = client.download_artifacts(str(version.run_id), BUNDLE_ARTIFACT, tmp)
            bundle = ModelBundle.load(Path(folder))
        served[outcome.name] = ServedModel(
            outcome, outcome.model_name, str(version.version), bundle, str(version.run_id)
        )
    return served


def export_frame(
    folder: Path,
    snapshot: pd.DataFrame,
    models: Mapping[str, ServedModel],
    objectors: Iterable[str] = (),
    fingerprint: str | None = None,
) -> dict[str, ScoresFile]:
    """Score `snapshot` (features, index_date, cohort flags, places) with `models`, leaving out
    `objectors`, write the exports into `folder` and open them."""
    frame = snapshot.copy()
    for column, value in DESCRIBED_BY.items():  # a test frame of a few features lacks them
        if column not in frame.columns:
            frame[column] = value
    day = pd.Timestamp(frame["index_date"].iloc[0]).date()
    fingerprint = fingerprint or f"{day.isoformat()}/{len(frame)}/test"
    champions = [champion_of(m) for m in models.values()]
    scores = score_snapshot(frame, champions, objectors)
    export_scores(folder, scores, frame, champions, fingerprint)
    keys = {c.outcome.name: export_key(c, fingerprint) for c in champions}
    return {name: ScoresFile(key.path(folder), key) for name, key in keys.items()}


def scorer_over(
    folder: Path,
    snapshot: pd.DataFrame,
    models: Mapping[str, ServedModel],
    objections: ObjectionList,
    *,
    scored_without: Iterable[str] = (),
    top_k: int = 5,
) -> Scorer:
    """A Scorer serving `snapshot`'s exports; `scored_without`: objectors when it was scored."""
    files = export_frame(folder, snapshot, models, scored_without)
    return Scorer(models=models, scores=files, objections=objections, top_k=top_k)
