"""The referral loop end to end, on a real server with the default sharing (referrals only), on
a copy of the suite's trained home (the loop changes its store):

a GP key reads a score and refers the person with their agreement; the receiving fire service
sees the referral, another does not; the fire role cannot read the register or anyone's score;
the visit is recorded with its findings; `carerisk referrals export` writes rows that
`carerisk load` accepts, and the next `carerisk features` sees the visit (the person's
``fire_visited`` changes); `carerisk referrals report` counts it. CORS for CDS clients follows
the allowed origins.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from features.home import Home
from serving.audit import AuditLog
from serving.keys import KeyStore
from tests import live
from tests.live import LiveService, carerisk

pytestmark = [pytest.mark.server, pytest.mark.slow]

ORIGIN = "https://ehr.example.org"
FINDINGS = {"trip_hazards": True, "smoke_alarm_working": False, "smoker": False,
            "mobility_concern": True, "referral_made": False}  # fmt: skip
# state the copy must not share with the suite's running server
NOT_COPIED = ("audit.*", "referrals.sqlite*", "keys.json*", "cds_clients.json*", "server-*.log")


@pytest.fixture(scope="module")
def loop_home(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("loop") / "home"
    return live.copy_home(trained_home, home, *NOT_COPIED)


@pytest.fixture(scope="module")
def served(loop_home: Path) -> Iterator[LiveService]:
    """The default deployment: no --fire-sharing, so referrals only; one CDS origin allowed."""
    with LiveService(loop_home).running("--cds-cors-origin", ORIGIN) as service:
        _, service.keys["other_fire"] = KeyStore.in_home(loop_home).add("Other fire org", "fire")
        yield service


def never_visited(home: Path) -> str:
    """A falls-cohort person with no home visit in the snapshot."""
    with duckdb.connect(str(Home(home).store_path), read_only=True) as con:
        row = con.execute(
            "SELECT person_id FROM feature_snapshot WHERE cohort_falls AND fire_visited = 0 "
            "ORDER BY age_years DESC, person_id LIMIT 1"
        ).fetchone()
    assert row is not None
    return str(row[0])


def snapshot_row(home: Path, person: str) -> dict[str, Any]:
    with duckdb.connect(str(Home(home).store_path), read_only=True) as con:
        frame = con.execute(
            "SELECT index_date, fire_visited, fire_trip_hazards, fire_smoke_alarm_working "
            "FROM feature_snapshot WHERE person_id = ?",
            [person],
        ).df()
    return dict(frame.iloc[0])


def run(home: Path, *args: str) -> Any:
    done = carerisk(home, *args, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_the_loop_closes_in_the_data(served: LiveService, loop_home: Path, tmp_path: Path) -> None:
    person = never_visited(loop_home)
    assert snapshot_row(loop_home, person)["fire_visited"] == 0
    with served.client("gp") as gp:
        score = gp.post("/v1/person", json={"person_id": person}).json()["outcomes"]["falls"]
        made = gp.post("/v1/referrals", json={
            "person_id": person, "outcome": "falls", "receiving_org": "Test fire org",
            "score": {k: score[k] for k in ("model_version", "index_date", "band")},
            "agreement": {"recorded_by": "Dr A Patel, GP",
                          "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
                          "agreed_to": ["contact_details", "reason_category"]},
        })  # fmt: skip
    assert made.status_code == 201, made.text
    rid = made.json()["referral"]["id"]

    with served.client("fire") as fire, served.client("other_fire") as other:
        queue = fire.get("/v1/referrals").json()
        assert queue["sharing"] == "referrals"
        assert [(r["id"], r["person_id"], r["band"]) for r in queue["referrals"]] == [
            (rid, person, score["band"])
        ]
        assert '"probability"' not in json.dumps(queue)
        assert other.get("/v1/referrals").json()["referrals"] == []
        assert other.get(f"/v1/referrals/{rid}").status_code == 404
        # referrals only: the fire role reads no register and no one's score
        for refused in (fire.get("/v1/register", params={"outcome": "falls", "top": 5}),
                        fire.post("/v1/person", json={"person_id": person})):  # fmt: skip
            assert refused.status_code == 403 and refused.json()["error"] == "not_shared"
        assert fire.post(f"/v1/referrals/{rid}/status", json={"status": "accepted"}).is_success
        visited = fire.post(f"/v1/referrals/{rid}/status", json={
            "status": "visited", "visit_date": dt.date.today().isoformat(), "findings": FINDINGS,
        })  # fmt: skip
    assert visited.status_code == 200, visited.text
    assert visited.json()["referral"]["findings"] == FINDINGS

    audit = AuditLog.in_home(loop_home)
    mine = [r for r in audit.tail(30) if r.role == "fire" and r.org == "Test fire org"]
    refused = "not_shared_referrals_only"
    assert [r.outcome for r in mine] == [
        "ok_referrals", refused, refused, "to_accepted", "to_visited"
    ]  # fmt: skip
    assert audit.verify().ok

    report = run(loop_home, "referrals", "report")
    assert report["visits"]["total"] == 1 and report["findings"]["trip_hazards"]["total"] == 1
    assert report["capacity"]["people_at_risk"] > 0
    assert report["capacity"]["visits_available_a_month"] == 100  # the falls outcome's capacity

    export = run(loop_home, "referrals", "export", str(tmp_path / "visits"))
    assert export["visits"] == 1
    loaded = run(loop_home, "load", str(tmp_path / "visits"))
    visits = next(t for t in loaded["tables"] if t["table"] == "fire_home_visit")
    assert (visits["rows_read"], visits["rows_loaded"], visits["rows_quarantined"]) == (1, 1, 0)
    run(loop_home, "features")
    after = snapshot_row(loop_home, person)
    assert after["fire_visited"] == 1 and after["fire_trip_hazards"] == 1
    assert after["fire_smoke_alarm_working"] == 0
    again = run(loop_home, "load", str(run(loop_home, "referrals", "export",
                                           str(tmp_path / "visits"))["folder"]))  # fmt: skip
    visits = next(t for t in again["tables"] if t["table"] == "fire_home_visit")
    assert (visits["rows_loaded"], visits["rows_unchanged"]) == (0, 1)  # nothing added twice


def test_cors_for_cds_clients_follows_the_allowed_origins(served: LiveService) -> None:
    url = f"{served.url}/cds-services"
    asked = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
    allowed = httpx.options(url, headers={"Origin": ORIGIN, **asked})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers
    stranger = httpx.options(url, headers={"Origin": "https://evil.example", **asked})
    assert "access-control-allow-origin" not in stranger.headers
    refused = httpx.get(url, headers={"Origin": ORIGIN})  # no token: 401, still readable
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ORIGIN
