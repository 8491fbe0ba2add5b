"""Risk registers: a ranked table of the people in a district or practice, scoped by role.

One audited use case, `ranked_register`, serves the API's register endpoint (and through it the
practitioner pages' CSV download) and `carerisk register`, so the three can never disagree:
the cohort ranked by `Scorer.ranked`, an audit record of who saw which people, then the rows
the role may see (`register_rows`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from features.feature_list import FEATURES, Feature
from serving.api import audit_entry
from serving.calls import mark_audited
from serving.roles import scope_result, sees_clinical
from serving.score_results import ScoreResult

if TYPE_CHECKING:
    from serving.keys import Principal
    from serving.state import ServiceState

BASE_COLUMNS = ["rank", "person_id", "district", "practice_code", "band"]
SOURCE_COLUMNS = ["model_name", "model_version", "index_date"]  # what every row was scored with


@dataclass(frozen=True)
class RegisterQuery:
    outcome: str  # either spelling: falls, complex-dependency
    district: str | None = None
    practice: str | None = None
    top: int | None = None  # everyone when None


@dataclass(frozen=True)
class Register:
    """A ranked register as one role may see it."""

    outcome: str
    role: str
    places: pd.DataFrame  # person_id, district, practice_code, rank 1 first
    results: list[ScoreResult]

    def rows(self) -> pd.DataFrame:
        """The table (CSV, Parquet): one row per person, rank 1 first."""
        return register_rows(self.places, self.results, self.role)

    def scoped(self) -> list[dict[str, Any]]:
        """Each result as the role may see it, with the person's place, as JSON data."""
        people = []
        for result, (_, place) in zip(self.results, self.places.iterrows(), strict=True):
            row = scope_result(self.role, result, FEATURES).model_dump(mode="json")
            row["district"], row["practice_code"] = place["district"], place["practice_code"]
            people.append(row)
        return people


def ranked_register(
    state: ServiceState, principal: Principal, query: RegisterQuery, *, result: str = "ok"
) -> Register:
    """The cohort of the outcome ranked by risk (objectors left out), audited as a register call
    by `principal` before it is returned.

    Raises ScoringError for an outcome not served and AuditUnavailable when the audit record
    cannot be written (then nothing is returned).
    """
    outcome = state.scorer.resolve(query.outcome)
    places, results = state.scorer.ranked(
        outcome, district=query.district, practice=query.practice, top=query.top,
        clinical=sees_clinical(principal.role),
    )  # fmt: skip
    state.writer.append(audit_entry(state, principal, "register", result, 200,
                                    person_ids=[r.person_ref for r in results],
                                    outcome=outcome, results=results))  # fmt: skip
    mark_audited()  # so the request guard adds no second record of the answer
    return Register(outcome, principal.role, places, results)


def register_rows(
    places: pd.DataFrame,
    results: Sequence[ScoreResult],
    role: str,
    features: Sequence[Feature] = FEATURES,
) -> pd.DataFrame:
    """One row per person, rank 1 first: place, band, (probability for clinical roles) and the
    reasons the role may see, in plain words, with the modifiable ones listed apart, and the model
    version and snapshot date each row was scored with."""
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
        row |= {"model_name": result.model_name, "model_version": result.model_version,
                "index_date": result.index_date.isoformat()}  # fmt: skip
        rows.append(row)
    columns = BASE_COLUMNS + (["probability"] if sees_clinical(role) else [])
    return pd.DataFrame(rows, columns=[*columns, "reasons", "could_be_acted_on", *SOURCE_COLUMNS])


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
