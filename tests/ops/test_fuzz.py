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

import pytest

from tests.live import LiveService, child_env, snapshot_people

EXAMPLES_ENV = "CARERISK_FUZZ_EXAMPLES"
DEFAULT_EXAMPLES = 15
SCHEMATHESIS = Path(sys.executable).with_name("st")
RATE = "40/s"  # under the key's limit (50 a second), so the answers are not 429s


def config_text(people: list[str]) -> str:
    """schemathesis.toml: real ids for the id fields half the time, warnings fail the run."""
    values = json.dumps(people)
    return f"""
[warnings]
fail-on = true

[dictionaries.people]
values = {values}

[parameters]
"body.person_id" = {{ dictionary = "people", probability = 0.5 }}
"body.person_ids[*]" = {{ dictionary = "people", probability = 0.5 }}
"""


def fuzz(url: str, key: str, examples: int, people: list[str], folder: Path) -> tuple[int, str]:
    """Run schemathesis against the service at `url`; (exit code, what it printed)."""
    config = folder / "schemathesis.toml"
    config.write_text(config_text(people), encoding="utf-8")
    command = [
        str(SCHEMATHESIS), "--config-file", str(config), "run", f"{url}/v1/openapi.json",
        "--checks", "all", "--header", f"Authorization: Bearer {key}",
        "--max-examples", str(examples), "--seed", "20261129", "--workers", "1",
        "--rate-limit", RATE,
        "--no-color", "--report-dir", str(folder / "report"),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=folder, env=child_env(), timeout=3600
    )
    return done.returncode, done.stdout + done.stderr


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
    code, said = fuzz(live_service.url, live_service.keys["admin"], examples_wanted(), people,
                      tmp_path)  # fmt: skip
    assert "Operations:       9 selected / 9 total" in said, said[-3000:]
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
            code, said = fuzz(service.url, service.keys["admin"], args.examples,
                              sample_people(home), Path(folder))  # fmt: skip
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
