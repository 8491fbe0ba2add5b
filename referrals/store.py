"""Referrals from a GP to a fire and rescue service, their history, and the visits that come back.

A referral is made by a GP organisation for one person, from one served score (model version,
snapshot date and band), with the person's recorded agreement (who recorded it, when, and what
they agreed to share), to one receiving fire organisation. It then moves through a small state
machine, each move kept in an append-only history:

    referred -> accepted | declined | closed
    accepted -> visited | declined | no_access | closed
    no_access -> accepted | closed      (another attempt, or give up)
    visited -> closed
    declined -> closed

Any other move is refused (`ImpossibleMove`, HTTP 409). "visited" carries the visit date and
the findings of the data contract's `fire_home_visit` table (trip hazards, smoke alarm working,
smoker, mobility concern, onward referral made), so a visit exports as one contract row
(referrals/export.py) and the next extract's features see it.

What is stored: the pseudonymised id, the outcome, the score's model, snapshot date and band, the
person's district and practice, the top reasons the fire service may see (non-clinical: labels
only, no contributions), the agreement, the organisations and key ids, and the history. Never a
probability, a clinical reason or a feature value beyond those labels.

Storage: SQLite at ``<home>/referrals.sqlite`` in WAL mode with ``synchronous=FULL``, like the
audit; each operation opens its own connection (referrals are rare, and several server workers
share the file), and a move runs in one ``BEGIN IMMEDIATE`` transaction, so two moves of one
referral cannot interleave. The same file also holds the ids of CDS Hooks client tokens already
used; serving/token_memory.py keeps those.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from features.contract import PERSON_ID_PATTERN
from features.home import Home

Status = Literal["referred", "accepted", "visited", "declined", "no_access", "closed"]
STATUSES: tuple[Status, ...] = get_args(Status)
Move = Literal["accepted", "visited", "declined", "no_access", "closed"]
MOVES: dict[str, frozenset[str]] = {
    "referred": frozenset({"accepted", "declined", "closed"}),
    "accepted": frozenset({"visited", "declined", "no_access", "closed"}),
    "no_access": frozenset({"accepted", "closed"}),
    "visited": frozenset({"closed"}),
    "declined": frozenset({"closed"}),
    "closed": frozenset(),
}
OPEN: frozenset[str] = frozenset({"referred", "accepted", "no_access"})  # a visit may still come

ID_PATTERN = r"^ref-[0-9a-f]{24}$"
ORG_PATTERN = r"^[\w .,&'()/-]{1,100}$"  # as serving/keys.py accepts organisation names
FUTURE_SLACK = dt.timedelta(minutes=5)  # clocks differ: an agreement "now" may look a little ahead

# What the person agrees to, item by item; the page shows these words and the referral keeps them.
AGREEMENT_ITEMS: dict[str, str] = {
    "contact_details": "share their name, address and telephone number with the fire and "
    "rescue service, so that it can contact them",
    "reason_category": "tell the fire and rescue service why they are referred: a home safety "
    "and falls check (no diagnoses, medicines or risk figures)",
}
AGREEMENT_WORDING = (
    "The person has agreed that we may "
    + "; and ".join(AGREEMENT_ITEMS.values())
    + ". They know the visit is free, that they can say no to it at any time, and that saying "
    "no does not change their care."
)

PersonId = Annotated[str, StringConstraints(pattern=PERSON_ID_PATTERN)]
OrgName = Annotated[str, StringConstraints(pattern=ORG_PATTERN, strip_whitespace=True)]
AgreementItem = Literal["contact_details", "reason_category"]


class ReferralError(Exception):
    """A referral request that cannot be met; `status` is the HTTP status saying why."""

    status = 409
    error = "referral_conflict"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ImpossibleMove(ReferralError):
    error = "impossible_move"


class DuplicateReferral(ReferralError):
    error = "already_referred"


class BadVisit(ReferralError):
    status = 422
    error = "invalid_visit"


def open_home_sqlite(path: Path, busy_timeout: float, schema: str | None) -> sqlite3.Connection:
    """A connection to a sqlite file of the home (autocommit, synchronous FULL). With `schema`,
    the file is first put in WAL mode, given the schema and made owner-only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    conn.execute("PRAGMA synchronous=FULL")
    if schema is not None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(schema)
        os.chmod(path, 0o600)
    return conn


class ReferralStoreError(Exception):
    """The referral store cannot be read or written (answer 503)."""


# --- what a caller sends -------------------------------------------------------------------


class AgreementIn(BaseModel):
    """The person's agreement as the clinician recorded it."""

    model_config = ConfigDict(extra="forbid")

    recorded_by: str = Field(
        min_length=2,
        max_length=100,
        pattern=r"^[^\x00-\x1f<>]+$",
        description="who recorded the agreement, e.g. Dr A Patel",
        examples=["Dr A Patel"],
    )
    recorded_at: AwareDatetime = Field(
        description="when the person agreed (with a time zone); not in the future (up to "
        f"{FUTURE_SLACK.seconds // 60} minutes ahead are taken as clocks that differ)",
        json_schema_extra={"x-not-after": "now"},
    )
    agreed_to: list[AgreementItem] = Field(
        min_length=1,
        # every item, each once (the validator says which is missing)
        json_schema_extra={"minItems": len(get_args(AgreementItem)), "uniqueItems": True},
        description="what the person agreed to share: both contact_details and reason_category",
        examples=[["contact_details", "reason_category"]],
    )

    @field_validator("agreed_to")
    @classmethod
    def _both(cls, items: list[str]) -> list[str]:
        missing = [name for name in AGREEMENT_ITEMS if name not in items]
        if missing:
            raise ValueError(f"a referral needs the person's agreement to {' and '.join(missing)}")
        return sorted(set(items))

    @field_validator("recorded_at")
    @classmethod
    def _not_ahead(cls, value: dt.datetime) -> dt.datetime:
        if value > dt.datetime.now(dt.UTC) + FUTURE_SLACK:
            raise ValueError("the agreement cannot be recorded in the future")
        return value.astimezone(dt.UTC)


class Agreement(AgreementIn):
    """The agreement as kept: what was recorded and the words the person agreed to."""

    wording: str


class ScoreBasis(BaseModel):
    """The score a referral was made from, as the referrer saw it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_version: str = Field(min_length=1, max_length=64)
    index_date: dt.date = Field(description="the snapshot date of the score")
    band: str = Field(min_length=1, max_length=32)


class ReferralRequest(BaseModel):
    """POST /v1/referrals: who, for which outcome, from which score, to whom, and agreed how."""

    model_config = ConfigDict(extra="forbid")

    person_id: PersonId = Field(examples=["P1a2b3c4d5e6f"])
    outcome: str = Field(min_length=1, max_length=64, examples=["falls"])
    score: ScoreBasis
    receiving_org: OrgName = Field(description="the fire organisation asked to visit")
    agreement: AgreementIn


class Findings(BaseModel):
    """What a visit found: the data contract's fire_home_visit columns."""

    model_config = ConfigDict(extra="forbid")

    trip_hazards: StrictBool
    smoke_alarm_working: StrictBool
    smoker: StrictBool
    mobility_concern: StrictBool
    referral_made: StrictBool = Field(description="an onward referral was made")


FINDINGS: tuple[str, ...] = tuple(Findings.model_fields)  # the findings' names, in contract order


# A visit brings its date and findings and no other move does: the rule in JSON Schema, for the
# OpenAPI document (the validator below applies it, with the dates)
VISIT_RULE: JsonDict = {
    "if": {"properties": {"status": {"const": "visited"}}},
    "then": {
        "required": ["visit_date", "findings"],
        "properties": {"visit_date": {"not": {"type": "null"}},
                       "findings": {"not": {"type": "null"}}},
    },
    "else": {"properties": {"visit_date": {"type": "null"}, "findings": {"type": "null"}}},
}  # fmt: skip


class StatusChange(BaseModel):
    """POST /v1/referrals/{id}/status: the next status; a visit brings its date and findings."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=VISIT_RULE)

    status: Move
    visit_date: dt.date | None = None
    findings: Findings | None = None

    @model_validator(mode="after")
    def _visit_fields(self) -> StatusChange:
        if self.status == "visited":
            if self.visit_date is None or self.findings is None:
                raise ValueError("a visit needs its visit_date and findings")
            if self.visit_date > dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1):
                raise ValueError("visit_date cannot be in the future")
        elif self.visit_date is not None or self.findings is not None:
            raise ValueError(f"only a visit carries visit_date and findings, not {self.status}")
        return self


# --- what is kept --------------------------------------------------------------------------


class SharedReason(BaseModel):
    """A reason the fire service may see: its label in words, never a number."""

    feature: str
    label: str
    direction: str
    modifiable: bool


class Event(BaseModel):
    """One entry of a referral's history."""

    seq: int
    at: str
    status: Status
    org: str
    role: str
    key_id: str
    visit_date: dt.date | None = None
    findings: Findings | None = None


class Referral(BaseModel):
    model_config = ConfigDict(frozen=True, protected_namespaces=())

    id: str
    created_at: str
    updated_at: str
    status: Status
    person_id: str
    outcome: str
    model_name: str
    model_version: str
    index_date: dt.date
    band: str
    reasons: list[SharedReason]
    district: str
    practice_code: str
    referring_org: str
    referred_by: str  # key id
    receiving_org: str
    agreement: Agreement
    visit_date: dt.date | None = None
    findings: Findings | None = None
    history: list[Event] = Field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    def view(self, role: str) -> dict[str, Any]:
        """The referral as JSON data for `role`, with the moves open to it: key ids only for the
        admin."""
        data = self.model_dump(mode="json")
        data["moves"] = sorted(MOVES[self.status])  # what the receiving service may do next
        if role != "admin":
            data.pop("referred_by")
            for event in data["history"]:
                event.pop("key_id")
        return data


@dataclass(frozen=True)
class NewReferral:
    """A referral to store: everything but its id, times, status and history."""

    person_id: str
    outcome: str
    model_name: str
    model_version: str
    index_date: dt.date
    band: str
    reasons: Sequence[SharedReason]
    district: str
    practice_code: str
    referring_org: str
    referred_by: str
    receiving_org: str
    agreement: AgreementIn


@dataclass(frozen=True)
class Actor:
    """Who makes a change: organisation, role and key id."""

    org: str
    role: str
    key_id: str


# --- the store -----------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS referral (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    status TEXT NOT NULL,
    person_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    index_date TEXT NOT NULL,
    band TEXT NOT NULL,
    reasons TEXT NOT NULL,
    district TEXT NOT NULL,
    practice_code TEXT NOT NULL,
    referring_org TEXT NOT NULL,
    referred_by TEXT NOT NULL,
    receiving_org TEXT NOT NULL,
    agreement TEXT NOT NULL,
    visit_date TEXT,
    findings TEXT
);
CREATE INDEX IF NOT EXISTS referral_queue ON referral (receiving_org, status);
CREATE INDEX IF NOT EXISTS referral_person ON referral (person_id, outcome);
CREATE TABLE IF NOT EXISTS referral_event (
    referral_id TEXT NOT NULL REFERENCES referral (id),
    seq INTEGER NOT NULL,
    at TEXT NOT NULL,
    status TEXT NOT NULL,
    org TEXT NOT NULL,
    role TEXT NOT NULL,
    key_id TEXT NOT NULL,
    visit_date TEXT,
    findings TEXT,
    PRIMARY KEY (referral_id, seq)
);
CREATE TRIGGER IF NOT EXISTS referral_event_no_update BEFORE UPDATE ON referral_event
BEGIN SELECT RAISE(ABORT, 'referral history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS referral_event_no_delete BEFORE DELETE ON referral_event
BEGIN SELECT RAISE(ABORT, 'referral history is append-only'); END;
"""
_COLUMNS = (
    "id, created_at, updated_at, status, person_id, outcome, model_name, model_version, "
    "index_date, band, reasons, district, practice_code, referring_org, referred_by, "
    "receiving_org, agreement, visit_date, findings"
)


class ReferralStore:
    """Referrals and their history in one SQLite file (see the module's docstring)."""

    def __init__(self, path: Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._ready = False

    @classmethod
    def in_home(cls, home: Path) -> ReferralStore:
        return cls(Home(Path(home)).referrals_path)

    # -- writing --

    def create(self, new: NewReferral, *, now: dt.datetime | None = None) -> Referral:
        """Store a referral; DuplicateReferral when the person already has an open referral
        (a home safety and falls check) to any fire service. Its message names another
        organisation's referral by nothing but that it exists."""
        when = _stamp(now)
        agreement = Agreement(**new.agreement.model_dump(), wording=AGREEMENT_WORDING)
        referral_id = "ref-" + secrets.token_hex(12)
        with self._transaction() as conn:
            existing = conn.execute(
                "SELECT id, status, referring_org, receiving_org FROM referral WHERE person_id = ?",
                (new.person_id,),
            ).fetchall()
            for other_id, status, referrer, receiver in existing:
                if status in OPEN:
                    raise DuplicateReferral(_duplicate(new, other_id, status, referrer, receiver))
            row = {
                "id": referral_id, "created_at": when, "updated_at": when, "status": "referred",
                "person_id": new.person_id, "outcome": new.outcome,
                "model_name": new.model_name, "model_version": new.model_version,
                "index_date": new.index_date.isoformat(), "band": new.band,
                "reasons": json.dumps([r.model_dump() for r in new.reasons]),
                "district": new.district, "practice_code": new.practice_code,
                "referring_org": new.referring_org, "referred_by": new.referred_by,
                "receiving_org": new.receiving_org,
                "agreement": agreement.model_dump_json(), "visit_date": None, "findings": None,
            }  # fmt: skip
            marks = ", ".join(f":{k}" for k in row)
            conn.execute(f"INSERT INTO referral ({', '.join(row)}) VALUES ({marks})", row)
            actor = Actor(new.referring_org, "gp", new.referred_by)
            _add_event(conn, referral_id, 1, when, "referred", actor)
        found = self.get(referral_id)
        assert found is not None
        return found

    def move(
        self,
        referral_id: str,
        change: StatusChange,
        actor: Actor,
        *,
        now: dt.datetime | None = None,
    ) -> Referral:
        """Apply one move of the state machine; ImpossibleMove when it is not allowed from the
        referral's current status, BadVisit when the visit is dated before the referral."""
        when = _stamp(now)
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT status, created_at FROM referral WHERE id = ?", (referral_id,)
            ).fetchone()
            if row is None:
                raise KeyError(referral_id)
            current, created = row
            if change.status not in MOVES[current]:
                allowed = ", ".join(sorted(MOVES[current])) or "none: it is closed"
                raise ImpossibleMove(
                    f"a referral that is {current} cannot become {change.status}; "
                    f"allowed next: {allowed}"
                )
            made = dt.date.fromisoformat(created[:10])
            if change.visit_date and change.visit_date < made:
                raise BadVisit(f"visit_date {change.visit_date} is before the referral ({made})")
            seq = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM referral_event WHERE referral_id = ?",
                (referral_id,),
            ).fetchone()[0]
            visit = change.visit_date.isoformat() if change.visit_date else None
            findings = change.findings.model_dump_json() if change.findings else None
            if change.status == "visited":
                conn.execute(
                    "UPDATE referral SET status = ?, updated_at = ?, visit_date = ?, findings = ? "
                    "WHERE id = ?",
                    (change.status, when, visit, findings, referral_id),
                )
            else:
                conn.execute(
                    "UPDATE referral SET status = ?, updated_at = ? WHERE id = ?",
                    (change.status, when, referral_id),
                )
            _add_event(conn, referral_id, seq, when, change.status, actor, visit, findings)
        found = self.get(referral_id)
        assert found is not None
        return found

    # -- reading --

    def get(self, referral_id: str) -> Referral | None:
        """One referral with its history, or None."""
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM referral WHERE id = ?", (referral_id,)
            ).fetchone()
            if row is None:
                return None
            events = conn.execute(
                "SELECT seq, at, status, org, role, key_id, visit_date, findings "
                "FROM referral_event WHERE referral_id = ? ORDER BY seq",
                (referral_id,),
            ).fetchall()
        return _referral(dict(row), [dict(e) for e in events])

    def find(
        self,
        *,
        receiving_org: str | None = None,
        referring_org: str | None = None,
        person_id: str | None = None,
        outcome: str | None = None,
        status: str | None = None,
        district: str | None = None,
        limit: int | None = None,
    ) -> list[Referral]:
        """Referrals matching every filter given, newest first (without their history)."""
        filters = {
            "receiving_org": receiving_org, "referring_org": referring_org,
            "person_id": person_id, "outcome": outcome, "status": status, "district": district,
        }  # fmt: skip
        where = [f"{name} = :{name}" for name, value in filters.items() if value is not None]
        query = f"SELECT {_COLUMNS} FROM referral"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY created_at DESC, id"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        params = {k: v for k, v in filters.items() if v is not None}
        with self._reading() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_referral(dict(row), []) for row in rows]

    # -- connections --

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = open_home_sqlite(self.path, self.busy_timeout, None if self._ready else _SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise ReferralStoreError(f"referral store {self.path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        self._ready = True
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with closing(self._connect()) as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise ReferralStoreError(f"referral store {self.path}: {exc}") from exc
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with closing(self._connect()) as conn:
            try:
                yield conn
            except sqlite3.Error as exc:
                raise ReferralStoreError(f"referral store {self.path}: {exc}") from exc


@lru_cache(maxsize=8)
def store_at(path: Path) -> ReferralStore:
    """One store object per file in a process (it remembers that its schema exists)."""
    return ReferralStore(path)


def _add_event(
    conn: sqlite3.Connection,
    referral_id: str,
    seq: int,
    when: str,
    status: str,
    actor: Actor,
    visit_date: str | None = None,
    findings: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO referral_event (referral_id, seq, at, status, org, role, key_id, "
        "visit_date, findings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (referral_id, seq, when, status, actor.org, actor.role, actor.key_id, visit_date, findings),
    )


def _referral(row: dict[str, Any], events: list[dict[str, Any]]) -> Referral:
    for name in ("reasons", "agreement", "findings"):
        if row[name] is not None:
            row[name] = json.loads(row[name])
    for event in events:
        if event["findings"] is not None:
            event["findings"] = json.loads(event["findings"])
    return Referral.model_validate({**row, "history": events})


def _stamp(now: dt.datetime | None) -> str:
    when = now or dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        raise ValueError("a referral time must carry a time zone")
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _duplicate(new: NewReferral, other_id: str, status: str, referrer: str, receiver: str) -> str:
    """Why a referral is refused as a duplicate: the open one named only to its own referrer."""
    if referrer != new.referring_org:
        return "this person already has an open home safety and falls check referral"
    return f"this person already has an open referral ({other_id}, {status}) to {receiver}"


def is_referral_id(value: str) -> bool:
    return re.fullmatch(ID_PATTERN, value) is not None
