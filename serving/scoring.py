"""Scoring without HTTP: one code path for the API, the pages and `carerisk register`.

A `Scorer` holds the champion bundle of each outcome and, per outcome, a read-only handle on the
scores export of that champion at the snapshot (serving/scores_file.py), written by `carerisk
score-all`. It looks people up there, leaves out objectors (the list may have grown since the
scores were written) and people outside a model's cohort, and turns the stored scores and
reasons into results. It explains live only records sent in (`score_frame`). It holds nothing
the size of the population. Nothing here knows about keys, roles or the audit: the callers do.
Nor does it apply any rule about people: who is in an outcome's cohort is the snapshot's
`cohort_<outcome>` flag, computed by the code that builds the training cohorts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pydantic_core

from features.feature_list import Feature
from features.outcomes import Outcome, OutcomeSet, UnknownOutcome
from models import ModelBundle
from models.reasons import Reason, reason_fields
from models.score_all import AUDIENCES, TOP_K
from serving import scores_file as sf
from serving.objection_list import ObjectionList
from serving.score_results import ScoreResult

log = logging.getLogger("carerisk.serving")

NOT_IN_SNAPSHOT = "no person with these ids is in the latest snapshot"
OBJECTED = "these people have objected to risk stratification and are never scored"


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


class NotScored(ScoringError):
    """Cohort members without a stored score: they objected when the scores were written and
    have withdrawn the objection since."""

    status = 422


@dataclass(frozen=True)
class ServedModel:
    """A champion as served: its outcome, its bundle and where it came from."""

    outcome: Outcome
    name: str
    version: str
    bundle: ModelBundle
    run_id: str = ""


class SnapshotError(LookupError):
    """The stored snapshot cannot be served; the message says to re-run `carerisk features`."""


NON_CLINICAL = AUDIENCES["non_clinical"]
WORDED_MAX = 200_000  # (feature, value) labels kept; continuous features could add many


@dataclass
class Scorer:
    models: Mapping[str, ServedModel]
    scores: Mapping[str, sf.ScoresFile]  # outcome -> its champion's export at the snapshot
    objections: ObjectionList
    stale_after_days: int = 120
    top_k: int = 5
    _worded: dict[tuple[str, str, Any], str] = field(default_factory=dict, repr=False)
    _features: dict[str, dict[str, Feature]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._features.update(
            {name: {f.name: f for f in m.bundle.features} for name, m in self.models.items()}
        )
        missing = sorted(set(self.models) - set(self.scores))
        if missing:
            raise SnapshotError(
                f"no scores export for {', '.join(missing)}; run `carerisk score-all`"
            )
        days = {f.index_date for f in self.scores.values()}
        if len(days) > 1:
            raise SnapshotError(
                f"the scores exports hold {len(days)} snapshot dates; run `carerisk score-all`"
            )
        if self.top_k > TOP_K:
            log.warning("top_k %d: the stored scores keep %d reasons a person", self.top_k, TOP_K)

    @property
    def index_date(self) -> dt.date:
        """The snapshot's index date (of every export served)."""
        return next(iter(self.scores.values())).index_date

    def model(self, outcome: str) -> ServedModel:
        if outcome not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise ScoringError(f"no model is served for outcome {outcome!r} (served: {known})")
        return self.models[outcome]

    def resolve(self, spelling: str) -> str:
        """The name of the served outcome called `spelling` (either spelling: falls,
        complex-dependency); refuses others, listing those served."""
        served = OutcomeSet(tuple(m.outcome for m in self.models.values()))
        try:
            return served.get(spelling).name
        except UnknownOutcome as error:
            raise ScoringError(str(error)) from None

    def close(self) -> None:
        """Nothing runs in the background; the exports close when the scorer is freed."""

    def served(self) -> dict[str, Any]:
        """What this scorer serves: each outcome's model name and version, the snapshot date."""
        return {
            "models": [
                {"outcome": name, "model_name": m.name, "model_version": m.version}
                for name, m in self.models.items()
            ],
            "snapshot_date": self.index_date,
        }

    def place(self, person_id: str) -> dict[str, str]:
        """A person's district and practice_code; UnknownPeople when not in the snapshot."""
        for file in self.scores.values():
            found = file.people([person_id]).get(person_id)
            if found is not None:
                row = found[1]
                return {"district": row[sf.DISTRICT], "practice_code": row[sf.PRACTICE]}
        raise UnknownPeople(NOT_IN_SNAPSHOT, [person_id])

    # --- notes ---------------------------------------------------------------------------

    def notes(self, today: dt.date | None = None) -> list[str]:
        """Warnings every response carries, e.g. a feature snapshot older than expected."""
        today = today or dt.date.today()
        age = (today - self.index_date).days
        if age > self.stale_after_days:
            return [
                f"The data behind this score are {age} days old (index date "
                f"{self.index_date.isoformat()}); the limit is {self.stale_after_days} "
                "days. Check for a newer extract before acting on it."
            ]
        return []

    # --- looking people up -----------------------------------------------------------------

    def lookup(self, outcome: str, person_ids: Sequence[str]) -> list[sf.Row]:
        """The stored rows of these people, in the order asked; refuses unknown, objecting,
        out-of-cohort and unscored people with the ids named."""
        served = self.model(outcome)
        objected = [p for p in person_ids if p in self.objections]
        if objected:
            raise ObjectedPeople(OBJECTED, objected)
        found = self.scores[outcome].people(person_ids)
        unknown = [p for p in person_ids if p not in found]
        if unknown:
            raise UnknownPeople(NOT_IN_SNAPSHOT, unknown)
        outside = [p for p in person_ids if not found[p][0]]
        if outside:
            raise OutsideCohort(served.outcome.outside_cohort(), outside)
        unscored = [p for p in person_ids if found[p][1][sf.PROBABILITY] is None]
        if unscored:
            raise NotScored(
                "these people have no stored score (they objected when the scores were "
                "written); run `carerisk score-all`, then reload the service",
                unscored,
            )
        return [found[p][1] for p in person_ids]

    # --- scoring -------------------------------------------------------------------------

    def score_people(
        self, outcome: str, person_ids: Sequence[str], *, clinical: bool = True
    ) -> list[ScoreResult]:
        """Snapshot people's scores, as stored by `carerisk score-all`."""
        rows = self.lookup(outcome, person_ids)
        return self._results(outcome, rows, [None] * len(rows), clinical)

    def score_people_json(self, outcome: str, person_ids: Sequence[str]) -> tuple[bytes, list[str]]:
        """`score_people` as the JSON of a ScoreResponse, with the bands for the audit. The
        same records, serialised without building a model per result and reason (at 1,000
        people that was most of the time)."""
        rows = self.lookup(outcome, person_ids)
        records = self.snapshot_records(outcome, rows, [None] * len(rows), clinical=True)
        return pydantic_core.to_json({"results": records}), [r["band"] for r in records]

    def _results(
        self, outcome: str, rows: Sequence[sf.Row], ranks: Sequence[int | None], clinical: bool
    ) -> list[ScoreResult]:
        # Built without re-validation: every field comes from the model and the stored scores
        # (a test validates results); at 1,000 people a request validation cost a third of it.
        return [
            ScoreResult.model_construct(
                **{**record, "reasons": [Reason.model_construct(**r) for r in record["reasons"]]}
            )
            for record in self.snapshot_records(outcome, rows, ranks, clinical=clinical)
        ]

    def snapshot_records(
        self, outcome: str, rows: Sequence[sf.Row], ranks: Sequence[int | None], *, clinical: bool
    ) -> list[dict[str, Any]]:
        """Each stored row's result as plain data, in ScoreResult's field order."""
        served = self.model(outcome)
        column = sf.CLINICAL if clinical else sf.NON_CLINICAL
        notes, day = self.notes(), self.index_date
        return [
            {
                "person_ref": row[sf.PERSON],
                "outcome": served.outcome.name,
                "model_name": served.name,
                "model_version": served.version,
                "index_date": day,
                "probability": float(row[sf.PROBABILITY]),
                "band": row[sf.BAND],
                "rank": rank,
                "reasons": self.reasons(served, row[column]),
                "notes": notes,
            }
            for row, rank in zip(rows, ranks, strict=True)
        ]

    def reasons(self, served: ServedModel, text: str) -> list[dict[str, Any]]:
        """Stored reasons (models.score_all.reasons_json) as the reasons served: the top
        `top_k`, each feature's label for its value worded once."""
        features = self._features[served.outcome.name]
        out = []
        for name, value, contribution in json.loads(text)[: self.top_k]:
            feature = features.get(name)
            if feature is None:
                raise SnapshotError(
                    f"a stored reason names {name!r}, not a feature of {served.name} "
                    f"v{served.version}; run `carerisk score-all`"
                )
            key = (served.outcome.name, name, value)
            label = self._worded.get(key)
            if label is None:
                label = feature.describe("unknown" if value is None else value)
                if len(self._worded) < WORDED_MAX:
                    self._worded[key] = label
            out.append(reason_fields(feature, label, value, float(contribution)))
        return out

    def score_frame(
        self,
        outcome: str,
        rows: pd.DataFrame,
        refs: Sequence[str],
        *,
        index_date: dt.date | None = None,
        clinical: bool = True,
    ) -> list[ScoreResult]:
        """Score feature rows (registry columns) and explain each with its top reasons; with
        `clinical=False` the reasons are the top non-clinical ones (the fire service's view)."""
        served = self.model(outcome)
        allowed = None if clinical else NON_CLINICAL
        scored = served.bundle.assess(rows, top_k=self.top_k, allowed=allowed)
        notes = self.notes()
        day = index_date or self.index_date
        return [
            ScoreResult.model_construct(
                person_ref=refs[i],
                outcome=served.outcome.name,
                model_name=served.name,
                model_version=served.version,
                index_date=day,
                probability=float(scored.probabilities[i]),
                band=scored.bands[i],
                rank=None,
                reasons=scored.reasons[i],
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
        or practice; returns the people's places and their scored results, rank 1 first. A
        range read of the export; objectors since the scores were written are left out here,
        so the read goes that many rows further."""
        self.model(outcome)
        limit = None if top is None else top + len(self.objections)
        found = self.scores[outcome].ranked(district=district, practice=practice, limit=limit)
        kept = [r for r in found if r[sf.PERSON] not in self.objections][: top or None]
        places = pd.DataFrame(
            {
                "person_id": [r[sf.PERSON] for r in kept],
                "district": [r[sf.DISTRICT] for r in kept],
                "practice_code": [r[sf.PRACTICE] for r in kept],
            },
            dtype=object,
        )
        ranks = list(range(1, len(kept) + 1))
        return places, self._results(outcome, kept, ranks, clinical)


def person_ids_of(results: Iterable[ScoreResult]) -> list[str]:
    return [r.person_ref for r in results]
