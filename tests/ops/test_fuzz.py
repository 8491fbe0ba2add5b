"""Bad input at scale: schemathesis against the live service's OpenAPI with a valid key.

Each operation gets generated requests (valid ones and, in negative mode, ones that break the
schema); every answer must be a non-5xx that fits its own declared schema. `make test` runs a
few examples per operation; `make fuzz` runs many more:

    CARERISK_FUZZ_EXAMPLES=500 pytest tests/ops/test_fuzz.py
    python -m tests.ops.test_fuzz --home H --examples 500      # serves H itself
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.live import LiveService

EXAMPLES_ENV = "CARERISK_FUZZ_EXAMPLES"
DEFAULT_EXAMPLES = 15
CHECKS = [not_a_server_error, response_schema_conformance]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def fuzz(url: str, key: str, examples: int, say: Callable[[str], None] = print) -> list[str]:
    """Fuzz every operation of the service at `url`; returns one line per failing operation."""
    auth = {"Authorization": f"Bearer {key}"}
    schema = schemathesis.openapi.from_url(f"{url}/v1/openapi.json", timeout=30)
    failures: list[str] = []
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Ok):
            operations.append(result.ok())
        else:
            failures.append(f"the schema has an invalid operation: {result.err()}")
    for operation in operations:
        for mode in MODES:
            label = f"{operation.label} ({mode.value})"
            problem = fuzz_operation(operation, mode, f"{url}/v1", auth, examples)
            say(f"{label}: {problem or 'ok'}")
            if problem:
                failures.append(f"{label}: {problem}")
    return failures


def fuzz_operation(
    operation: Any, mode: GenerationMode, base_url: str, auth: dict[str, str], examples: int
) -> str | None:
    strategy = operation.as_strategy(generation_mode=mode, headers=auth)

    @settings(
        max_examples=examples, deadline=None, database=None, derandomize=True,
        suppress_health_check=list(HealthCheck), print_blob=False,
    )  # fmt: skip
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, headers=auth, timeout=60)
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:  # no parameters and no body: nothing to break in negative mode
        if mode is GenerationMode.POSITIVE:
            return "no request could be generated"
    except (Exception, BaseExceptionGroup) as error:  # a failed check (schemathesis raises a
        # group of failures): report it and go on with the next operation
        return f"{type(error).__name__}: {str(error)[:1500]}"
    return None


def examples_wanted() -> int:
    return int(os.environ.get(EXAMPLES_ENV, DEFAULT_EXAMPLES))


# Failures already reported, by operation: the test expects them (like a strict xfail) and
# fails once one is fixed, so the entry gets removed.
KNOWN: dict[str, str] = {}


@pytest.mark.server
@pytest.mark.slow
def test_fuzz_the_api(live_service: LiveService) -> None:
    failures = fuzz(live_service.url, live_service.keys["admin"], examples_wanted(), say=noop)
    known = {op for op in KNOWN if any(f.startswith(op + " (") for f in failures)}
    new = [f for f in failures if not any(f.startswith(op + " (") for op in KNOWN)]
    assert not new, "\n\n".join(new)
    fixed = sorted(set(KNOWN) - known)
    assert not fixed, f"no longer failing, remove from KNOWN: {fixed}"
    if known:
        pytest.xfail("; ".join(f"{op}: {KNOWN[op]}" for op in sorted(known)))


def noop(_: str) -> None:
    pass


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
        failures = fuzz(service.url, service.keys["admin"], args.examples)
    finally:
        service.stop()
    print(f"{len(failures)} operation(s) failed" if failures else "no failures")
    for line in failures:
        print(line)
    return 1 if failures else 0


def build_fresh_home() -> Path:
    import tempfile

    from tests.live import build_home

    home = Path(tempfile.mkdtemp(prefix="carerisk-fuzz-")) / "home"
    print(f"building a trained home in {home} (a few minutes)")
    return build_home(home)


if __name__ == "__main__":
    sys.exit(main())
