"""`carerisk serve --workers 2`: two BentoML worker processes share one port and one audit log."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from carerisk.commands.serve import worker_options
from serving.audit import AuditLog
from tests import live
from tests.live import LiveService, descendants, snapshot_people

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_worker_options_keep_other_overrides() -> None:
    assert worker_options("", 2) == "services.carerisk.workers=2"
    existing = "services.carerisk.workers=4 api_server.metrics.enabled=false"
    assert worker_options(existing, 1) == (
        "api_server.metrics.enabled=false services.carerisk.workers=1"
    )


def worker_ids(service: LiveService) -> set[str]:
    assert service.process is not None
    found = set()
    for pid in descendants(service.process.pid):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--worker-id" in args:
            found.add(args[args.index(b"--worker-id") + 1].decode())
    return found


def test_two_workers_answer_and_audit_into_one_chain(trained_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    live.copy_home(trained_home, home)
    before = AuditLog.in_home(home).count("score")  # the shared home's earlier calls
    service = LiveService(home)
    service.add_keys()
    service.start("--workers", "2")
    # under one key's burst (100): the limits are per worker, and this is not a rate-limit test
    people = snapshot_people(home)["falls"][:80]
    try:
        assert worker_ids(service) == {"1", "2"}

        def call(chunk: list[str]) -> list[int]:
            with service.client("gp") as client:
                return [
                    client.post(
                        "/v1/score", json={"outcome": "falls", "person_ids": [p]}
                    ).status_code
                    for p in chunk
                ]

        with ThreadPoolExecutor(4) as pool:
            parts = list(pool.map(call, [people[k::4] for k in range(4)]))
        statuses = [s for part in parts for s in part]
        with service.client("admin") as client:
            verdict = client.get("/v1/admin/audit/verify").json()
    finally:
        service.stop()
    assert statuses == [200] * len(people)
    assert verdict["ok"], verdict
    log = AuditLog.in_home(home)
    assert log.count("score") - before == len(people)
    audited = [r for r in log.tail(len(people) + 10) if r.endpoint == "score"][-len(people) :]
    assert sorted(p for r in audited for p in r.person_ids) == sorted(people)
