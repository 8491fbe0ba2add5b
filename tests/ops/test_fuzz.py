"""Bad input at scale: schemathesis against the live service's OpenAPI, every check enabled.

`st run` (schemathesis's own runner) goes through all its phases (the schema's examples,
coverage of each parameter's edge cases, generated requests valid and invalid, and stateful
sequences through the document's links) with a valid key, and applies every check it has:
no 5xx, status codes, content types, headers and bodies as declared, invalid data refused,
valid data accepted, authentication enforced (it also calls without the key, and with a wrong
one), 405 with `Allow` for undeclared methods, and the rest. Its warnings fail the run too, so a
pass means it reported nothing. Real person ids from the snapshot are offered for the id fields
(a schemathesis dictionary), so generated requests reach the scoring code and not only 404. The
calls keep under the key's rate limit.
`make test` runs a few examples per operation; `make fuzz` runs 500:

    CARERISK_FUZZ_EXAMPLES=500 pytest tests/ops/test_fuzz.py
    python -m tests.ops.test_fuzz --home H --examples 500      # serves H itself
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.live import LiveService, child_env, snapshot_people

EXAMPLES_ENV = "CARERISK_FUZZ_EXAMPLES"
DEFAULT_EXAMPLES = 15
SCHEMATHESIS = Path(sys.executable).with_name("st")
RATE = "40/s"  # under the key's limit (50 a second), so the answers are not 429s


def config_text(people: list[str], referrals: list[str], keys: dict[str, str]) -> str:
    """schemathesis.toml: real ids for the id fields half the time, warnings fail the run; a
    referral is made with a GP's key and moved on with the receiving fire service's (the admin
    may do neither). Those two operations may also answer valid data with 422: a date in the
    future (the agreement's, the visit's) or a visit before the referral, and a receiving
    organisation that holds no fire key, are rules JSON Schema cannot state."""
    writes = [("/referrals", keys["gp"], WRITE_WARNINGS),
              ("/referrals/{referral_id}/status", keys["fire"], WRITE_WARNINGS)]  # fmt: skip
    operations = "".join(f"""
[[operations]]
include-name = "POST {path}"
headers = {{ Authorization = "Bearer {key}" }}
checks.positive_data_acceptance.expected-statuses = [{ACCEPTED}]
{warnings}""" for path, key, warnings in writes)  # fmt: skip
    return f"""
[warnings]
fail-on = true

[dictionaries.people]
values = {json.dumps(people)}

[dictionaries.referrals]
values = {json.dumps(referrals)}

[parameters]
"body.person_id" = {{ dictionary = "people", probability = 0.5 }}
"body.person_ids[*]" = {{ dictionary = "people", probability = 0.5 }}
"path.referral_id" = {{ dictionary = "referrals", probability = 0.5 }}
{operations}"""


# schemathesis's own list for valid data, and 422 (see config_text)
ACCEPTED = '"2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"'
# A referral is accepted only when made from the score served now (the person's model version,
# snapshot date and band) with an agreement recorded in the past, and a move only for a referral
# of the fire organisation in a state that allows it (a visit dated between the referral and
# today), which generated data almost never is: nearly every valid request the two get is
# refused (404, 409, 422), so the two warnings about such operations (no test data; validation
# stricter than the schema) are not shown for them; every other warning is, and every check runs.
# tests/serving/test_referrals_live.py makes referrals, moves them and tests each refusal.
WRITE_WARNINGS = """warnings = { display = ["missing_auth", "base_url_mismatch",
  "missing_deserializer", "unused_openapi_auth", "unsupported_regex", "method_not_allowed",
  "constants_extraction", "unmatched_filter", "unresolvable_reference", "rate_limited",
  "dictionary_mismatch", "timeout_units"], fail-on = true }
"""


def fuzz(
    url: str, keys: dict[str, str], examples: int, people: list[str], folder: Path
) -> tuple[int, str]:
    """Run schemathesis against the service at `url` with the admin's key (a GP's and a fire
    service's for the referral writes); (exit code, what it printed)."""
    config = folder / "schemathesis.toml"
    referrals = make_referrals(url, keys, people[1:11])
    config.write_text(config_text(people, referrals, keys), encoding="utf-8")
    command = [
        str(SCHEMATHESIS), "--config-file", str(config), "run", f"{url}/v1/openapi.json",
        "--checks", "all", "--header", f"Authorization: Bearer {keys['admin']}",
        "--max-examples", str(examples), "--seed", "20261129", "--workers", "1",
        "--rate-limit", RATE,
        "--no-color", "--report-dir", str(folder / "report"),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=folder, env=child_env(), timeout=3600
    )
    return done.returncode, done.stdout + done.stderr


def make_referrals(url: str, keys: dict[str, str], people: list[str]) -> list[str]:
    """Referrals of `people` to the first fire organisation, made as a GP would (from the score
    served now, with the agreement), so that the referral routes have real ids to reach; the
    ids of every referral in the home (the admin's queue)."""
    with client(url, keys["gp"]) as gp:
        org = gp.get("/v1/referrals/form").json()["organisations"][0]
        for person in people:
            score = gp.post("/v1/score", json={"outcome": "falls", "person_ids": [person]})
            basis = {k: score.json()["results"][0][k] for k in ("model_version", "index_date",
                                                               "band")}  # fmt: skip
            answer = gp.post("/v1/referrals", json={
                "person_id": person, "outcome": "falls", "receiving_org": org, "score": basis,
                "agreement": {"recorded_by": "Dr Fuzz", "recorded_at": "2025-01-01T00:00:00Z",
                              "agreed_to": ["contact_details", "reason_category"]},
            })  # fmt: skip
            assert answer.status_code in (201, 409), answer.text  # 409: referred already
    with client(url, keys["admin"]) as admin:
        queue = admin.get("/v1/referrals", params={"limit": 20}).json()["referrals"]
    assert queue
    return [r["id"] for r in queue]


def client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def examples_wanted() -> int:
    return int(os.environ.get(EXAMPLES_ENV, DEFAULT_EXAMPLES))


def sample_people(home: Path) -> list[str]:
    """Ids of people in every cohort (the falls cohort's are in both), so that a request the
    schema allows is one the service can score. The answer for someone outside a cohort (422
    with its definition) is a refusal the schema cannot express for an id; it is tested in
    tests/serving/test_cohorts.py and test_hardening.py."""
    falls = snapshot_people(home)["falls"]
    return sorted(falls[:: max(1, len(falls) // 20)][:20])


@pytest.mark.server
@pytest.mark.slow
def test_fuzz_the_api(live_service: LiveService, tmp_path: Path) -> None:
    people = sample_people(live_service.home)
    code, said = fuzz(live_service.url, live_service.keys, examples_wanted(), people, tmp_path)
    assert "Operations:       15 selected / 15 total" in said, said[-3000:]
    assert code == 0, said[-8000:]
    assert "WARNINGS" not in said and "FAILURES" not in said, said[-8000:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="a trained home; built when omitted")
    parser.add_argument("--examples", type=int, default=500, help="examples per operation")
    args = parser.parse_args(argv)
    home = args.home or build_fresh_home()
    service = LiveService(home)
    service.add_keys()
    service.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            code, said = fuzz(service.url, service.keys, args.examples, sample_people(home),
                              Path(folder))  # fmt: skip
    finally:
        service.stop()
    print(said)
    return code


def build_fresh_home() -> Path:
    from tests.live import build_home

    home = Path(tempfile.mkdtemp(prefix="carerisk-fuzz-")) / "home"
    print(f"building a trained home in {home} (a few minutes)")
    return build_home(home)


if __name__ == "__main__":
    sys.exit(main())
