"""Session fixtures shared across packages: a trained home and a live served instance."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import LiveService, build_home, shared_home
from tests.quick import LONG_MARKERS, heavy_requests

# Telemetry off for everything the tests start, in this process and its children.
for _name, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_name, _value)


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A home where `carerisk demo --no-serve` ran on a 4,000-person county: store, snapshot,
    both outcomes trained, evaluated and promoted, registers written. Under xdist one worker
    builds it and every worker gets its own copy (tests.live.shared_home)."""
    own = tmp_path_factory.mktemp("trained-home")
    if worker_id == "master":
        return build_home(own)
    shared = tmp_path_factory.getbasetemp().parent / "trained-home-shared"
    return shared_home(shared, own / "home")


@pytest.fixture(scope="session")
def live_service(trained_home: Path) -> Iterator[LiveService]:
    """`carerisk serve` (a real BentoML server) on a free loopback port, with a key per role.
    It shares the register with the fire role (`--fire-sharing register`, an area with a
    data-sharing agreement), which the tests of the fire role's register and person views use;
    the default, referrals only, is served in tests/serving/test_referrals_e2e.py.
    Every test calls from 127.0.0.1, and several send many keyless or wrong keys on purpose, so
    the failed authentications an address may make are raised from 20 at once (2 a second) to
    300 (20 a second); tests/serving/test_hardening.py floods from another loopback address."""
    sharing = ("--fire-sharing", "register")
    with LiveService(trained_home).running(*UNAUTHENTICATED_LIMITS, *sharing) as service:
        yield service


UNAUTHENTICATED_LIMITS = ("--unauthenticated-burst", "300", "--unauthenticated-rate", "20")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a quick test (no long marker) that requests a heavy fixture, before it is built."""
    fixture_names = getattr(item, "fixturenames", ())
    heavy = heavy_requests(fixture_names, (marker.name for marker in item.iter_markers()))
    if heavy:
        pytest.fail(
            f"{item.nodeid} requests {', '.join(heavy)} but has none of the markers "
            f"{', '.join(LONG_MARKERS)}: mark it (make check would build it otherwise)",
            pytrace=False,
        )
