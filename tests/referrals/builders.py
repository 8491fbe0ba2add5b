"""Referrals to store in tests: an agreement, a new referral, a visit."""

from __future__ import annotations

import datetime as dt

from referrals.store import Actor, AgreementIn, Findings, NewReferral, SharedReason, StatusChange

NOW = dt.datetime.now(dt.UTC)
FIRE = Actor("North Fire", "fire", "k-fire")
AGREED = {
    "recorded_by": "Dr A Patel",
    "recorded_at": NOW.isoformat(),
    "agreed_to": ["contact_details", "reason_category"],
}
FOUND = Findings(trip_hazards=True, smoke_alarm_working=False, smoker=False,
                 mobility_concern=True, referral_made=False)  # fmt: skip


def new(person: str = "Pabcdef000001", band: str = "high", district: str = "Wyre", **kw: str):
    reason = SharedReason(
        feature="lives_alone", label="lives alone: yes", direction="raises", modifiable=False
    )
    base: dict[str, object] = {
        "person_id": person, "outcome": "falls", "model_name": "carerisk-falls",
        "model_version": "3", "index_date": dt.date(2025, 4, 1), "band": band,
        "reasons": [reason], "district": district, "practice_code": "M81010",
        "referring_org": "Elm Surgery", "referred_by": "k-gp", "receiving_org": "North Fire",
        "agreement": AgreementIn(**AGREED),
    }  # fmt: skip
    return NewReferral(**{**base, **kw})  # type: ignore[arg-type]


def visit(day: dt.date | None = None) -> StatusChange:
    return StatusChange(status="visited", visit_date=day or NOW.date(), findings=FOUND)
