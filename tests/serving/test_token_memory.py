"""The CDS token memory: a used token id is refused, per issuer, until well after it expired; a
referral file written before the memory had its own class opens unchanged."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from features.home import Home
from referrals.store import ReferralStore
from serving.token_memory import KEPT_AFTER_EXPIRY, UsedTokens
from tests.referrals.builders import new

NOW = int(dt.datetime.now(dt.UTC).timestamp())
EHR = "https://ehr.example/"

# The referral file as the version before wrote it: the referral tables and the token table made
# by one store, with a referral and a used token id in it.
EARLIER_FILE = """
PRAGMA journal_mode=WAL;
CREATE TABLE referral (
    id TEXT PRIMARY KEY, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    status TEXT NOT NULL, person_id TEXT NOT NULL, outcome TEXT NOT NULL,
    model_name TEXT NOT NULL, model_version TEXT NOT NULL, index_date TEXT NOT NULL,
    band TEXT NOT NULL, reasons TEXT NOT NULL, district TEXT NOT NULL,
    practice_code TEXT NOT NULL, referring_org TEXT NOT NULL, referred_by TEXT NOT NULL,
    receiving_org TEXT NOT NULL, agreement TEXT NOT NULL, visit_date TEXT, findings TEXT
);
CREATE INDEX referral_queue ON referral (receiving_org, status);
CREATE INDEX referral_person ON referral (person_id, outcome);
CREATE TABLE referral_event (
    referral_id TEXT NOT NULL REFERENCES referral (id), seq INTEGER NOT NULL, at TEXT NOT NULL,
    status TEXT NOT NULL, org TEXT NOT NULL, role TEXT NOT NULL, key_id TEXT NOT NULL,
    visit_date TEXT, findings TEXT, PRIMARY KEY (referral_id, seq)
);
CREATE TRIGGER referral_event_no_update BEFORE UPDATE ON referral_event
BEGIN SELECT RAISE(ABORT, 'referral history is append-only'); END;
CREATE TRIGGER referral_event_no_delete BEFORE DELETE ON referral_event
BEGIN SELECT RAISE(ABORT, 'referral history is append-only'); END;
CREATE TABLE cds_token (
    issuer TEXT NOT NULL, jti TEXT NOT NULL, expires INTEGER NOT NULL, PRIMARY KEY (issuer, jti)
);
CREATE INDEX cds_token_expiry ON cds_token (expires);
"""


def test_a_used_token_id_is_refused_until_long_after_it_expired(tmp_path: Path) -> None:
    tokens = UsedTokens(Home(tmp_path).referrals_path)
    assert tokens.first_use(EHR, "jti-1", NOW + 60, now=NOW)
    assert not tokens.first_use(EHR, "jti-1", NOW + 60, now=NOW + 30)
    assert tokens.first_use("https://other.example/", "jti-1", NOW + 60, now=NOW)  # per issuer
    # within the clock leeway after expiry the id is still remembered
    assert not tokens.first_use(EHR, "jti-1", NOW + 60, now=NOW + 90)
    assert tokens.first_use(EHR, "jti-1", NOW + 60, now=NOW + 60 + KEPT_AFTER_EXPIRY + 1)


def test_a_referral_file_written_by_the_earlier_version_opens_unchanged(tmp_path: Path) -> None:
    path = Home(tmp_path).referrals_path
    with sqlite3.connect(path) as conn:
        conn.executescript(EARLIER_FILE)
    made = ReferralStore(path).create(new())  # the earlier version's tables take a referral
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO cds_token VALUES (?, ?, ?)", (EHR, "jti-old", NOW + 60))
    reopened = ReferralStore(path)
    assert reopened.get(made.id) == made
    assert [r.id for r in reopened.find()] == [made.id]
    tokens = UsedTokens(path)
    assert not tokens.first_use(EHR, "jti-old", NOW + 60, now=NOW)  # used before the upgrade
    assert tokens.first_use(EHR, "jti-new", NOW + 60, now=NOW)
