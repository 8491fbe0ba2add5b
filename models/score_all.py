"""Everyone in each outcome's cohort scored at a snapshot: the rows of the scores history.

A plain function of the snapshot frame and the champions' bundles (features.scores_history
stores the rows; `carerisk score-all` runs it on DuckDB, a Spark engine later runs the same
function per partition). People on the objections list are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.outcomes import Outcome
from features.scores_history import COLUMNS, GROUP_COLUMNS
from features.training_sets import descriptors
from models.bundle import ModelBundle

CHUNK_ROWS = 200_000  # people encoded and predicted at once: bounds memory at 600k


@dataclass(frozen=True)
class Champion:
    """A registered model as it scores: the bundle and where it came from."""

    outcome: Outcome
    bundle: ModelBundle
    model_name: str
    version: str
    run_id: str


def groups_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The evaluation's fairness groups (GROUP_COLUMNS) of feature rows, as text."""
    found = descriptors(frame).rename(columns={"completeness_band": "completeness"})
    return found[list(GROUP_COLUMNS)].astype(str)


def score_snapshot(
    snapshot: pd.DataFrame,
    champions: Sequence[Champion],
    objections: Iterable[str] = (),
    chunk_rows: int = CHUNK_ROWS,
) -> pd.DataFrame:
    """One row per outcome and cohort member of the snapshot (COLUMNS of the scores history).

    `snapshot` is features.snapshot.read_snapshot_people's frame: the registry's features,
    index_date, each outcome's cohort flag, district and gp_system.
    """
    blocked = set(objections)
    parts = [_score_one(snapshot, c, blocked, chunk_rows) for c in champions]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    return pd.concat(parts, ignore_index=True)[list(COLUMNS)]


def cohort_members(
    snapshot: pd.DataFrame, outcome: Outcome, objections: Iterable[str] = ()
) -> pd.DataFrame:
    """The snapshot's rows in the outcome's cohort, objectors left out, in snapshot order."""
    flag = outcome.cohort_column
    if flag not in snapshot.columns:
        raise ValueError(
            f"the snapshot has no {flag} column; run `carerisk features` to rebuild it"
        )
    blocked = set(objections)
    keep = snapshot[flag].fillna(False).astype(bool) & ~snapshot["person_id"].isin(blocked)
    members = snapshot.loc[keep.to_numpy()].reset_index(drop=True)
    days = pd.to_datetime(members["index_date"]).dt.date.unique()
    if len(days) > 1:
        raise ValueError(f"the snapshot holds {len(days)} index dates; it must hold one")
    return members


def predict(bundle: ModelBundle, frame: pd.DataFrame, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Calibrated probabilities, `chunk_rows` people at a time."""
    parts = [
        bundle.predict(frame.iloc[i : i + chunk_rows]) for i in range(0, len(frame), chunk_rows)
    ]
    return np.concatenate(parts) if parts else np.empty(0)


def _score_one(
    snapshot: pd.DataFrame, champion: Champion, blocked: set[str], chunk_rows: int
) -> pd.DataFrame:
    outcome = champion.outcome
    members = cohort_members(snapshot, outcome, blocked)
    p = predict(champion.bundle, members, chunk_rows)
    rows = pd.DataFrame(
        {
            "snapshot_date": pd.to_datetime(members["index_date"]).dt.date,
            "outcome": outcome.name,
            "person_id": members["person_id"].astype(str),
            "probability": p,
            "band": champion.bundle.bands.band(p),
            "model_name": champion.model_name,
            "model_version": champion.version,
            "run_id": champion.run_id,
        }
    )
    return pd.concat([rows, groups_of(members)], axis=1)
