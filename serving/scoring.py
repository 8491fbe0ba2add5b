"""Scoring without HTTP: one code path for the API, the pages and `carerisk register`.

A `Scorer` holds the champion bundle of each outcome and the latest feature snapshot. It looks
people up, leaves out objectors and people outside a model's cohort, scores, explains with
LightGBM's TreeSHAP and ranks. Nothing here knows about keys, roles or the audit: the callers do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.registry import FEATURES, OUTCOMES
from models import ModelBundle
from serving.objections import ObjectionList
from serving.schemas import Reason, ScoreResult

MIN_AGE: Mapping[str, int] = {"falls": 65, "complex_dependency": 18}
COHORT_TEXT: Mapping[str, str] = {
    "falls": "aged 65 or over and not living in a care home",
    "complex_dependency": "aged 18 or over and not in long-term residential care",
}


class ScoringError(Exception):
    """A request that cannot be scored; `status` is the HTTP status that says why."""

    status = 422

    def __init__(self, message: str, person_ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.person_ids = list(person_ids)


class UnknownPeople(ScoringError):
    status = 404


class ObjectedPeople(ScoringError):
    status = 451  # unavailable for legal reasons: the person objected to risk stratification


class OutsideCohort(ScoringError):
    status = 422


@dataclass(frozen=True)
class ServedModel:
    """A champion as served: its bundle and where it came from."""

    outcome: str
    name: str
    version: str
    bundle: ModelBundle


@dataclass
class Snapshot:
    """The latest features of everyone, indexed by person_id."""

    frame: pd.DataFrame
    index_date: dt.date
    places: pd.DataFrame = field(default_factory=pd.DataFrame)  # district, practice_code

    @classmethod
    def from_frames(cls, features: pd.DataFrame, places: pd.DataFrame) -> Snapshot:
        if features.empty:
            raise ValueError("the feature snapshot is empty; run `carerisk features`")
        day = pd.Timestamp(features["index_date"].iloc[0]).date()
        frame = features.set_index("person_id", drop=False)
        return cls(frame=frame, index_date=day, places=places.set_index("person_id"))


@dataclass
class Scorer:
    models: Mapping[str, ServedModel]
    snapshot: Snapshot
    objections: ObjectionList
    stale_after_days: int = 120
    top_k: int = 5

    def model(self, outcome: str) -> ServedModel:
        if outcome not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise ScoringError(f"no model is served for outcome {outcome!r} (served: {known})")
        return self.models[outcome]

    # --- notes ---------------------------------------------------------------------------

    def notes(self, today: dt.date | None = None) -> list[str]:
        """Warnings every response carries, e.g. a feature snapshot older than expected."""
        today = today or dt.date.today()
        age = (today - self.snapshot.index_date).days
        if age > self.stale_after_days:
            return [
                f"The data behind this score are {age} days old (index date "
                f"{self.snapshot.index_date.isoformat()}); the limit is {self.stale_after_days} "
                "days. Check for a newer extract before acting on it."
            ]
        return []

    # --- looking people up -----------------------------------------------------------------

    def lookup(self, outcome: str, person_ids: Sequence[str]) -> pd.DataFrame:
        """The snapshot rows of these people, in the order asked; refuses unknown, objecting
        and out-of-cohort people with the ids named."""
        self.model(outcome)
        objected = [p for p in person_ids if p in self.objections]
        if objected:
            raise ObjectedPeople(
                "these people have objected to risk stratification and are never scored", objected
            )
        unknown = [p for p in person_ids if p not in self.snapshot.frame.index]
        if unknown:
            raise UnknownPeople("no person with these ids is in the latest snapshot", unknown)
        rows = self.snapshot.frame.loc[list(person_ids)]
        outside = rows.loc[~self.in_cohort(outcome, rows), "person_id"].tolist()
        if outside:
            raise OutsideCohort(
                f"the {outcome} model applies only to people {COHORT_TEXT[outcome]}", outside
            )
        return rows.reset_index(drop=True)

    def in_cohort(self, outcome: str, rows: pd.DataFrame) -> pd.Series:
        flag = f"cohort_{outcome}"
        if flag in rows.columns:
            return rows[flag].fillna(False).astype(bool)
        return rows["age_years"].fillna(-1) >= MIN_AGE[outcome]

    # --- scoring -------------------------------------------------------------------------

    def score_people(
        self, outcome: str, person_ids: Sequence[str], *, clinical: bool = True
    ) -> list[ScoreResult]:
        rows = self.lookup(outcome, person_ids)
        return self.score_frame(outcome, rows, rows["person_id"].tolist(), clinical=clinical)

    def score_frame(
        self,
        outcome: str,
        rows: pd.DataFrame,
        refs: Sequence[str],
        *,
        ranks: Sequence[int | None] | None = None,
        index_date: dt.date | None = None,
        clinical: bool = True,
    ) -> list[ScoreResult]:
        """Score feature rows (registry columns) and explain each with its top reasons; with
        `clinical=False` the reasons are the top non-clinical ones (the fire service's view)."""
        served = self.model(outcome)
        bundle = served.bundle
        allowed = None if clinical else {f.name for f in FEATURES if not f.clinical}
        scored = bundle.assess(rows, top_k=self.top_k, allowed=allowed)
        probabilities, bands, reasons = scored.probabilities, scored.bands, scored.reasons
        notes = self.notes()
        day = index_date or self.snapshot.index_date
        ranks = ranks or [None] * len(rows)
        return [
            ScoreResult(
                person_ref=refs[i],
                outcome=outcome,  # type: ignore[arg-type]
                model_name=served.name,
                model_version=served.version,
                index_date=day,
                probability=float(probabilities[i]),
                band=bands[i],  # type: ignore[arg-type]
                rank=ranks[i],
                reasons=[Reason.model_validate(r.to_dict()) for r in reasons[i]],
                notes=notes,
            )
            for i in range(len(rows))
        ]

    # --- registers -------------------------------------------------------------------------

    def ranked(
        self,
        outcome: str,
        *,
        district: str | None = None,
        practice: str | None = None,
        top: int | None = None,
        clinical: bool = True,
    ) -> tuple[pd.DataFrame, list[ScoreResult]]:
        """Everyone in the cohort (less objectors), ranked by risk, optionally within a district
        or practice; returns the people's places and their scored results, rank 1 first."""
        frame = self.snapshot.frame
        people, _ = self.objections.filter_frame(frame.loc[self.in_cohort(outcome, frame)])
        people = people.reset_index(drop=True)
        places = self.snapshot.places.reindex(people["person_id"]).reset_index()
        chosen = _in_place(places, district, practice)
        people, places = people.loc[chosen].reset_index(drop=True), places.loc[chosen]
        if people.empty:
            return places.reset_index(drop=True), []
        probabilities = self.model(outcome).bundle.predict(people)
        order = np.argsort(-probabilities, kind="stable")[: top or len(people)]
        people = people.iloc[order].reset_index(drop=True)
        places = places.iloc[order].reset_index(drop=True)
        ranks = list(range(1, len(people) + 1))
        results = self.score_frame(
            outcome, people, people["person_id"].tolist(), ranks=ranks, clinical=clinical
        )
        return places, results


def _in_place(places: pd.DataFrame, district: str | None, practice: str | None) -> np.ndarray:
    chosen = np.ones(len(places), dtype=bool)
    if district:
        chosen &= (places["district"] == district).to_numpy()
    if practice:
        chosen &= (places["practice_code"] == practice).to_numpy()
    return chosen


def check_outcome(outcome: str) -> str:
    """Accept `complex-dependency` from the command line as well as `complex_dependency`."""
    name = outcome.replace("-", "_")
    if name not in OUTCOMES:
        raise ScoringError(f"unknown outcome {outcome!r}; choose one of {', '.join(OUTCOMES)}")
    return name


def person_ids_of(results: Iterable[ScoreResult]) -> list[str]:
    return [r.person_ref for r in results]
