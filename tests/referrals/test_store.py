"""The referral store without a server: the state machine, the history, agreements, duplicates,
and what a caller may send."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from features.home import Home
from referrals.store import (
    MOVES,
    OPEN,
    STATUSES,
    AgreementIn,
    BadVisit,
    DuplicateReferral,
    Findings,
    ImpossibleMove,
    ReferralRequest,
    ReferralStore,
    StatusChange,
)
from tests.referrals.builders import AGREED, FIRE, FOUND, NOW, new, visit

# --- agreements and requests ---------------------------------------------------------------


def test_a_referral_needs_the_whole_agreement() -> None:
    score = {"model_version": "3", "index_date": "2025-04-01", "band": "high"}
    body = {"person_id": "Pabcdef000001", "outcome": "falls", "receiving_org": "North Fire",
            "score": score}  # fmt: skip
    with pytest.raises(ValidationError, match="agreement"):
        ReferralRequest.model_validate(body)
    partial = {**AGREED, "agreed_to": ["contact_details"]}
    with pytest.raises(ValidationError, match="reason_category"):
        ReferralRequest.model_validate({**body, "agreement": partial})
    ahead = {**AGREED, "recorded_at": (NOW + dt.timedelta(hours=1)).isoformat()}
    with pytest.raises(ValidationError, match="future"):
        AgreementIn.model_validate(ahead)
    naive = {**AGREED, "recorded_at": NOW.replace(tzinfo=None).isoformat()}
    with pytest.raises(ValidationError, match="timezone"):
        AgreementIn.model_validate(naive)
    assert ReferralRequest.model_validate({**body, "agreement": AGREED}).agreement.agreed_to == [
        "contact_details", "reason_category",
    ]  # fmt: skip


def test_only_a_visit_carries_a_date_and_findings() -> None:
    with pytest.raises(ValidationError, match="visit_date and findings"):
        StatusChange(status="visited", visit_date=NOW.date())
    with pytest.raises(ValidationError, match="only a visit"):
        StatusChange(status="accepted", findings=FOUND)
    with pytest.raises(ValidationError, match="future"):
        StatusChange(status="visited", visit_date=NOW.date() + dt.timedelta(days=3), findings=FOUND)
    with pytest.raises(ValidationError):
        StatusChange(status="referred")  # not a move


# --- the state machine ---------------------------------------------------------------------


def test_a_referral_is_made_with_its_history_and_agreement_words(store: ReferralStore) -> None:
    made = store.create(new())
    assert made.id.startswith("ref-") and made.status == "referred"
    assert made.agreement.wording.startswith("The person has agreed that we may")
    assert [(e.seq, e.status, e.org, e.role) for e in made.history] == [
        (1, "referred", "Elm Surgery", "gp")
    ]
    assert store.get(made.id) == made
    assert store.get("ref-" + "0" * 24) is None


def test_the_loop_from_referred_to_closed(store: ReferralStore) -> None:
    made = store.create(new())
    store.move(made.id, StatusChange(status="accepted"), FIRE)
    store.move(made.id, StatusChange(status="no_access"), FIRE)
    store.move(made.id, StatusChange(status="accepted"), FIRE)  # another attempt
    visited = store.move(made.id, visit(), FIRE)
    assert visited.visit_date == NOW.date() and visited.findings == FOUND
    closed = store.move(made.id, StatusChange(status="closed"), FIRE)
    assert [e.status for e in closed.history] == [
        "referred", "accepted", "no_access", "accepted", "visited", "closed",
    ]  # fmt: skip
    assert closed.findings == FOUND  # kept after closing
    with pytest.raises(ImpossibleMove, match="closed cannot become accepted"):
        store.move(made.id, StatusChange(status="accepted"), FIRE)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["accepted", "visited", "declined", "no_access", "closed"]),
                max_size=8))  # fmt: skip
def test_every_move_follows_the_table(
    tmp_path_factory: pytest.TempPathFactory, moves: list[str]
) -> None:
    store = ReferralStore(Home(tmp_path_factory.mktemp("moves")).referrals_path)
    ref = store.create(new())
    status, done = "referred", ["referred"]
    for move in moves:
        change = visit() if move == "visited" else StatusChange(status=move)  # type: ignore[arg-type]
        if move in MOVES[status]:
            status = store.move(ref.id, change, FIRE).status
            assert status == move
            done.append(move)
        else:
            with pytest.raises(ImpossibleMove):
                store.move(ref.id, change, FIRE)
    final = store.get(ref.id)
    assert final is not None and final.status == status
    assert [e.status for e in final.history] == done  # one event per move made, none refused


def test_the_state_table_is_closed() -> None:
    assert set(MOVES) == set(STATUSES)
    assert all(targets <= set(STATUSES) - {"referred"} for targets in MOVES.values())
    assert MOVES["closed"] == frozenset()
    assert {"referred", "accepted", "no_access"} == OPEN


def test_a_visit_before_the_referral_is_refused(store: ReferralStore) -> None:
    made = store.create(new())
    store.move(made.id, StatusChange(status="accepted"), FIRE)
    with pytest.raises(BadVisit, match="before the referral"):
        store.move(made.id, visit(NOW.date() - dt.timedelta(days=2)), FIRE)


def test_one_open_falls_check_per_person_across_fire_services(store: ReferralStore) -> None:
    first = store.create(new())
    with pytest.raises(DuplicateReferral, match=first.id):
        store.create(new())
    with pytest.raises(DuplicateReferral, match=first.id):  # another fire service: still one
        store.create(new(receiving_org="South Fire"))
    with pytest.raises(DuplicateReferral, match=first.id):  # another outcome: the same check
        store.create(new(outcome="complex_dependency"))
    store.move(first.id, StatusChange(status="declined"), FIRE)
    again = store.create(new(receiving_org="South Fire"))  # the first is no longer open
    assert again.id != first.id


def test_a_duplicate_names_no_other_organisations_referral(store: ReferralStore) -> None:
    first = store.create(new())
    with pytest.raises(DuplicateReferral) as refused:
        store.create(new(referring_org="Oak Surgery", receiving_org="South Fire"))
    said = refused.value.message
    assert first.id not in said and "North Fire" not in said and "referred" not in said.split()
    assert said == "this person already has an open home safety and falls check referral"


def test_visit_findings_take_only_json_booleans() -> None:
    for loose in ("yes", "true", 1, 0, "1"):
        with pytest.raises(ValidationError, match="valid boolean"):
            Findings.model_validate({**FOUND.model_dump(), "smoker": loose})
    assert Findings.model_validate(FOUND.model_dump()) == FOUND


def test_the_agreement_time_rule_is_in_the_schema() -> None:
    field = AgreementIn.model_json_schema()["properties"]["recorded_at"]
    assert field["x-not-after"] == "now" and "not in the future" in field["description"]


def test_two_moves_at_once_cannot_both_win(store: ReferralStore) -> None:
    made = store.create(new())
    outcomes: list[str] = []

    def accept() -> None:
        try:
            outcomes.append(store.move(made.id, StatusChange(status="declined"), FIRE).status)
        except ImpossibleMove:
            outcomes.append("refused")

    threads = [threading.Thread(target=accept) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["declined"] + ["refused"] * 5
    assert [e.status for e in store.get(made.id).history] == ["referred", "declined"]  # type: ignore[union-attr]


def test_the_history_cannot_be_rewritten(store: ReferralStore) -> None:
    made = store.create(new())
    with (
        sqlite3.connect(store.path) as conn,
        pytest.raises(sqlite3.DatabaseError, match="append-only"),
    ):
        conn.execute(
            "UPDATE referral_event SET status = 'visited' WHERE referral_id = ?", (made.id,)
        )
    with (
        sqlite3.connect(store.path) as conn,
        pytest.raises(sqlite3.DatabaseError, match="append-only"),
    ):
        conn.execute("DELETE FROM referral_event")
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"


def test_find_filters_and_orders(store: ReferralStore) -> None:
    a = store.create(new("Pabcdef000001", district="Wyre"))
    b = store.create(new("Pabcdef000002", district="Malvern", receiving_org="South Fire"))
    store.move(a.id, StatusChange(status="accepted"), FIRE)
    assert [r.id for r in store.find()] == [b.id, a.id]  # newest first
    assert [r.id for r in store.find(receiving_org="North Fire")] == [a.id]
    assert [r.id for r in store.find(status="accepted")] == [a.id]
    assert [r.id for r in store.find(district="Malvern")] == [b.id]
    assert store.find(receiving_org="North Fire", district="Malvern") == []
    assert len(store.find(limit=1)) == 1


def test_view_hides_key_ids_but_from_the_admin(store: ReferralStore) -> None:
    made = store.create(new())
    fire = made.view("fire")
    assert "referred_by" not in fire and "key_id" not in fire["history"][0]
    assert fire["moves"] == ["accepted", "closed", "declined"]
    assert made.view("admin")["referred_by"] == "k-gp"
    assert "probability" not in json.dumps(made.view("admin"))
