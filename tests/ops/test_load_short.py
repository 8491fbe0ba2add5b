"""The load test, shortened for `make test`: ~20 s at a modest rate against the shared server.
The 5-minute run is `python -m bench.load_test --home H --seconds 300 --rate 20`."""

from __future__ import annotations

import pytest

from bench.load_test import run_load
from serving.audit import AuditLog
from tests.live import LiveService

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_short_load(live_service: LiveService) -> None:
    summary = run_load(live_service, seconds=20, rate=8, warmup=5, workers=8)
    assert summary["requests"] == 160
    assert set(summary["by_kind"]) == {"score_one", "score_batch", "register", "fhir", "person"}
    assert summary["checks"] == {
        "no_errors": True,
        "memory_growth_under_10pct": True,
        "every_call_audited": True,
        "rate_held": True,
    }, summary
    assert AuditLog.in_home(live_service.home).verify().ok
