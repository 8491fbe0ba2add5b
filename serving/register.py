"""Risk registers: a ranked table of the people in a district or practice, scoped by role.

The API's register endpoint, the practitioner pages' CSV download and `carerisk register` all
call `register_rows` on results from `Scorer.ranked`, so the three can never disagree.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from features.registry import FEATURES, Feature
from serving.roles import scope_result, sees_clinical
from serving.schemas import ScoreResult

BASE_COLUMNS = ["rank", "person_id", "district", "practice_code", "band"]


def register_rows(
    places: pd.DataFrame,
    results: Sequence[ScoreResult],
    role: str,
    features: Sequence[Feature] = FEATURES,
) -> pd.DataFrame:
    """One row per person, rank 1 first: place, band, (probability for clinical roles) and the
    reasons the role may see, in plain words, with the modifiable ones listed apart."""
    rows = []
    for i, result in enumerate(results):
        scoped = scope_result(role, result, features)
        row = {
            "rank": result.rank,
            "person_id": result.person_ref,
            "district": places["district"].iloc[i],
            "practice_code": places["practice_code"].iloc[i],
            "band": result.band,
        }
        if sees_clinical(role):
            row["probability"] = round(result.probability, 4)
        row["reasons"] = "; ".join(r.label for r in scoped.reasons)
        row["could_be_acted_on"] = "; ".join(
            r.label for r in scoped.reasons if r.modifiable and r.direction == "raises"
        )
        rows.append(row)
    columns = BASE_COLUMNS + (["probability"] if sees_clinical(role) else [])
    return pd.DataFrame(rows, columns=[*columns, "reasons", "could_be_acted_on"])


def to_csv(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def write_register(frame: pd.DataFrame, path: Path) -> Path:
    """CSV or Parquet by the file's suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        path.write_text(to_csv(frame), encoding="utf-8")
    else:
        raise ValueError(f"register file {path} must end in .csv or .parquet")
    return path
