"""Scoring without HTTP: one code path for the API, the pages and `carerisk register`.

A `Scorer` holds the champion bundle of each outcome and the latest feature snapshot. It looks
people up, leaves out objectors and people outside a model's cohort, scores, explains with
LightGBM's TreeSHAP and ranks. Nothing here knows about keys, roles or the audit: the callers do.
Nor does it apply any rule about people: who is in an outcome's cohort is the snapshot's
`cohort_<outcome>` flag, computed by the code that builds the training cohorts.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pydantic_core

from features.outcomes import Outcome, OutcomeRegistry, UnknownOutcome
from features.snapshot import PLACE_COLUMNS, missing_columns
from models import ModelBundle
from models.bundle import TopReasons, plain_value
from models.encoding import encode_array
from models.reasons import Reason, reason_fields
from models.score_all import AUDIENCES
from serving.objections import ObjectionList
from serving.schemas import ScoreResult

log = logging.getLogger("carerisk.serving")


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
    """A champion as served: its outcome, its bundle and where it came from."""

    outcome: Outcome
    name: str
    version: str
    bundle: ModelBundle


class SnapshotError(LookupError):
    """The stored snapshot cannot be served; the message says to re-run `carerisk features`."""


@dataclass
class Snapshot:
    """The latest features of everyone, their cohort flags and places, indexed by person_id."""

    frame: pd.DataFrame
    index_date: dt.date

    @classmethod
    def from_frame(cls, snapshot: pd.DataFrame, outcomes: Iterable[Outcome]) -> Snapshot:
        """Refuses a snapshot without a served outcome's cohort flag or the places."""
        if snapshot.empty:
            raise SnapshotError("the feature snapshot is empty; run `carerisk features`")
        missing = missing_columns(snapshot, outcomes)
        if missing:
            raise SnapshotError(
                f"the feature snapshot has no {', '.join(missing)}: it was written before "
                "these were kept, or without these outcomes registered; re-run "
                "`carerisk features`"
            )
        day = pd.Timestamp(snapshot["index_date"].iloc[0]).date()
        return cls(frame=snapshot.set_index("person_id", drop=False), index_date=day)

    @cached_property
    def places(self) -> pd.DataFrame:
        """district and practice_code, indexed by person_id."""
        return self.frame[list(PLACE_COLUMNS)]

    @cached_property
    def person_ids(self) -> np.ndarray:
        return self.frame["person_id"].to_numpy(dtype=object)

    @cached_property
    def positions(self) -> dict[str, int]:
        """person_id -> row (a dict: a lookup costs nanoseconds, a pandas .loc microseconds)."""
        return {pid: row for row, pid in enumerate(self.person_ids)}

    @cached_property
    def columns(self) -> dict[str, np.ndarray]:
        """Each feature's values as an array, for reading single values without pandas."""
        return {name: self.frame[name].to_numpy() for name in self.frame.columns}


NON_CLINICAL = AUDIENCES["non_clinical"]
FILL_ROWS = 5_000  # people a background pass explains at a time


@dataclass(frozen=True)
class Precomputed:
    """One outcome's scores for its cohort in the snapshot (snapshot and model are fixed while
    the service runs). Probabilities are computed at start, in one cheap pass; the reasons
    (TreeSHAP, the costly part: minutes at 600,000 people) are filled by a background pass
    and, for anyone it has not reached, when they are asked for. Filling is idempotent: any
    thread may fill a slot, always with the same values, and marks it done last."""

    bundle: ModelBundle
    frame: pd.DataFrame
    top_k: int
    slot: np.ndarray  # snapshot row -> position in the arrays below; -1 outside the cohort
    rows: np.ndarray  # snapshot rows of the cohort members, in snapshot order
    probabilities: np.ndarray
    bands: list[str]
    tops: Mapping[bool, TopReasons]  # shown clinical reasons? -> top reasons (filled lazily)
    done: np.ndarray  # reasons filled, by slot
    worded: dict[tuple[int, Any], str] = field(default_factory=dict)  # (feature, value) -> label

    @classmethod
    def start(
        cls, bundle: ModelBundle, frame: pd.DataFrame, members: np.ndarray, top_k: int
    ) -> Precomputed:
        rows = np.flatnonzero(members)
        slot = np.full(len(members), -1, dtype=np.int64)
        slot[rows] = np.arange(len(rows))
        chunks = [
            bundle.predict(frame.iloc[rows[i : i + 50_000]]) for i in range(0, len(rows), 50_000)
        ]
        probabilities = np.concatenate(chunks) if chunks else np.empty(0)
        return cls(
            bundle=bundle,
            frame=frame,
            top_k=top_k,
            slot=slot,
            rows=rows,
            probabilities=probabilities,
            bands=bundle.bands.band(probabilities),
            tops={
                clinical: _blank(len(rows), _width(bundle, allowed, top_k))
                for clinical, allowed in ((True, None), (False, NON_CLINICAL))
            },
            done=np.zeros(len(rows), dtype=bool),
        )

    def ensure(self, slots: np.ndarray) -> None:
        """Fill the reasons of these slots unless they are filled already."""
        missing = np.unique(slots[~self.done[slots]])
        if missing.size == 0:
            return
        x = encode_array(self.frame.iloc[self.rows[missing]], self.bundle.features)
        tops = self.bundle.top_reasons(x, self.top_k, AUDIENCES)
        for clinical, name in ((True, "clinical"), (False, "non_clinical")):
            self.tops[clinical].picks[missing] = tops[name].picks
            self.tops[clinical].contributions[missing] = tops[name].contributions
        self.done[missing] = True  # last: a reader that sees done sees the values

    def reason_maker(self, columns: Mapping[str, np.ndarray]) -> ReasonMaker:
        """(feature position, snapshot row, contribution) -> one reason as plain data, in the
        field order of models.reasons.Reason. A feature's label for a value is worded once."""
        features = self.bundle.features
        values = [columns[f.name] for f in features]
        worded = self.worded

        def reason(j: int, row: int, contribution: float) -> dict[str, Any]:
            value = plain_value(values[j][row])  # None for every kind of missing, NaN included
            label = worded.get((j, value))
            if label is None:
                label = features[j].describe("unknown" if value is None else value)
                if len(worded) < WORDED_MAX:
                    worded[(j, value)] = label
            return reason_fields(features[j], label, value, contribution)

        return reason

    def fill_all(self, chunk: int = FILL_ROWS, stop: threading.Event | None = None) -> bool:
        """Fill every slot's reasons, a chunk at a time; False when `stop` was set first."""
        for first in range(0, len(self.rows), chunk):
            if stop is not None and stop.is_set():
                return False
            self.ensure(np.arange(first, min(first + chunk, len(self.rows))))
        return True


ReasonMaker = Callable[[int, int, float], dict[str, Any]]
WORDED_MAX = 200_000  # (feature, value) labels kept; continuous features could add many


def _width(bundle: ModelBundle, allowed: frozenset[str] | None, top_k: int) -> int:
    usable = [f for f in bundle.features if f.explain and (allowed is None or f.name in allowed)]
    return min(top_k, len(usable))


def _blank(n: int, k: int) -> TopReasons:
    return TopReasons(np.zeros((n, k), dtype=np.int64), np.zeros((n, k), dtype=float))


@dataclass
class Scorer:
    models: Mapping[str, ServedModel]
    snapshot: Snapshot
    objections: ObjectionList
    stale_after_days: int = 120
    top_k: int = 5
    _precomputed: dict[str, Precomputed] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def model(self, outcome: str) -> ServedModel:
        if outcome not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise ScoringError(f"no model is served for outcome {outcome!r} (served: {known})")
        return self.models[outcome]

    def resolve(self, spelling: str) -> str:
        """The name of the served outcome called `spelling` (either spelling: falls,
        complex-dependency); refuses others, listing those served."""
        served = OutcomeRegistry(tuple(m.outcome for m in self.models.values()))
        try:
            return served.get(spelling).name
        except UnknownOutcome as error:
            raise ScoringError(str(error)) from None

    def precompute(self, *, background: bool = True) -> threading.Thread | None:
        """Probabilities of each cohort now; everyone's reasons in a background thread (or
        now, with `background=False`). Returns the thread."""
        for outcome in self.models:
            self.precomputed(outcome)
        if not background:
            self._fill_all()
            return None
        thread = threading.Thread(target=self._fill_all, name="carerisk-reasons", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Stop the background pass (a state swapped out must not be kept alive by it)."""
        self._stop.set()

    def served(self) -> dict[str, Any]:
        """What this scorer serves: each outcome's model name and version, the snapshot date."""
        return {
            "models": [
                {"outcome": name, "model_name": m.name, "model_version": m.version}
                for name, m in self.models.items()
            ],
            "snapshot_date": self.snapshot.index_date,
        }

    def _fill_all(self) -> None:
        began = time.perf_counter()
        for outcome in self.models:
            if not self.precomputed(outcome).fill_all(stop=self._stop):
                log.info("reasons pass stopped: this state was swapped out")
                return
        people = sum(len(p.rows) for p in self._precomputed.values())
        log.info("reasons ready for all %d cohort members in %.1f s", people,
                 time.perf_counter() - began)  # fmt: skip

    def precomputed(self, outcome: str) -> Precomputed:
        with self._lock:
            if outcome not in self._precomputed:
                frame = self.snapshot.frame
                served = self.model(outcome)
                members = frame[served.outcome.cohort_column].to_numpy(dtype=bool)
                self._precomputed[outcome] = Precomputed.start(
                    served.bundle, frame, members, self.top_k
                )
            return self._precomputed[outcome]

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

    def lookup(self, outcome: str, person_ids: Sequence[str]) -> list[int]:
        """The snapshot rows of these people, in the order asked; refuses unknown, objecting
        and out-of-cohort people with the ids named."""
        served = self.model(outcome)
        objected = [p for p in person_ids if p in self.objections]
        if objected:
            raise ObjectedPeople(
                "these people have objected to risk stratification and are never scored", objected
            )
        positions = self.snapshot.positions
        unknown = [p for p in person_ids if p not in positions]
        if unknown:
            raise UnknownPeople("no person with these ids is in the latest snapshot", unknown)
        rows = [positions[p] for p in person_ids]
        slot = self.precomputed(outcome).slot
        outside = [p for p, row in zip(person_ids, rows, strict=True) if slot[row] < 0]
        if outside:
            raise OutsideCohort(served.outcome.outside_cohort(), outside)
        return rows

    # --- scoring -------------------------------------------------------------------------

    def score_people(
        self, outcome: str, person_ids: Sequence[str], *, clinical: bool = True
    ) -> list[ScoreResult]:
        """Snapshot people's scores, from the scores computed when the service started."""
        rows = self.lookup(outcome, person_ids)
        return self._from_snapshot(outcome, rows, [None] * len(rows), clinical)

    def score_people_json(self, outcome: str, person_ids: Sequence[str]) -> tuple[bytes, list[str]]:
        """`score_people` as the JSON of a ScoreResponse, with the bands for the audit. The
        same records, serialised without building a model per result and reason (at 1,000
        people that was most of the time)."""
        rows = self.lookup(outcome, person_ids)
        records = self.snapshot_records(outcome, rows, [None] * len(rows), clinical=True)
        return pydantic_core.to_json({"results": records}), [r["band"] for r in records]

    def _from_snapshot(
        self, outcome: str, rows: Sequence[int], ranks: Sequence[int | None], clinical: bool
    ) -> list[ScoreResult]:
        # Built without re-validation: every field comes from the model and the snapshot (a test
        # validates results); at 1,000 people a request validation cost a third of the time.
        return [
            ScoreResult.model_construct(
                **{**record, "reasons": [Reason.model_construct(**r) for r in record["reasons"]]}
            )
            for record in self.snapshot_records(outcome, rows, ranks, clinical=clinical)
        ]

    def snapshot_records(
        self, outcome: str, rows: Sequence[int], ranks: Sequence[int | None], *, clinical: bool
    ) -> list[dict[str, Any]]:
        """Each snapshot row's result as plain data, in ScoreResult's field order."""
        served = self.model(outcome)
        pre = self.precomputed(outcome)
        slots = pre.slot[np.asarray(rows, dtype=np.int64)]
        pre.ensure(slots)
        top = pre.tops[clinical]
        reason = pre.reason_maker(self.snapshot.columns)
        ids, notes, day = self.snapshot.person_ids, self.notes(), self.snapshot.index_date
        outcome_name = served.outcome.name
        return [
            {
                "person_ref": ids[row],
                "outcome": outcome_name,
                "model_name": served.name,
                "model_version": served.version,
                "index_date": day,
                "probability": float(pre.probabilities[i]),
                "band": pre.bands[i],
                "rank": rank,
                "reasons": [
                    reason(j, row, c)
                    for j, c in zip(
                        top.picks[i].tolist(), top.contributions[i].tolist(), strict=True
                    )
                ],
                "notes": notes,
            }
            for row, i, rank in zip(rows, slots.tolist(), ranks, strict=True)
        ]

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
        day = index_date or self.snapshot.index_date
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
        or practice; returns the people's places and their scored results, rank 1 first."""
        pre = self.precomputed(outcome)
        ids = self.snapshot.person_ids[pre.rows]
        places = self.snapshot.places.reindex(ids).reset_index()
        chosen = _in_place(places, district, practice)
        chosen &= np.array([p not in self.objections for p in ids], dtype=bool)
        kept = np.flatnonzero(chosen)
        order = kept[np.argsort(-pre.probabilities[kept], kind="stable")][: top or len(kept)]
        places = places.iloc[order].reset_index(drop=True)
        ranks = list(range(1, len(order) + 1))
        return places, self._from_snapshot(outcome, pre.rows[order].tolist(), ranks, clinical)


def _in_place(places: pd.DataFrame, district: str | None, practice: str | None) -> np.ndarray:
    chosen = np.ones(len(places), dtype=bool)
    if district:
        chosen &= (places["district"] == district).to_numpy()
    if practice:
        chosen &= (places["practice_code"] == practice).to_numpy()
    return chosen


def person_ids_of(results: Iterable[ScoreResult]) -> list[str]:
    return [r.person_ref for r in results]
