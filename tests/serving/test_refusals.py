"""Refusals that show nothing are counted and audited in groups."""

from __future__ import annotations

import asyncio
from pathlib import Path

from features.home import Home
from serving.audit import AuditLog, AuditWriter
from serving.refusals import IDS_PER_CLIENT, Refusal, RefusalTally


def test_a_flood_becomes_a_few_grouped_records(tmp_path: Path) -> None:
    log = AuditLog(Home(tmp_path).audit_path)
    writer = AuditWriter(log)
    tally = RefusalTally(writer, interval=0.2)

    async def flood() -> None:
        for i in range(3000):  # made-up key ids, two routes, one address
            tally.add(Refusal("10.1.1.1", "score" if i % 2 else "whoami", 401, f"{i:012x}",
                              "unknown"))  # fmt: skip
        tally.add(Refusal("10.1.1.2", "whoami", 429, "none", "unchecked"))
        await asyncio.sleep(0.5)  # the flusher writes what was counted
        await tally.close()

    asyncio.run(flood())
    writer.close()
    records = log.tail(100)
    assert sum(r.count or 1 for r in records) == 3001
    assert len(records) <= 2 * (IDS_PER_CLIENT + 1) + 1
    named = {r.key_id for r in records if r.client == "10.1.1.1"}
    assert "several" in named and len(named) == IDS_PER_CLIENT + 1
    assert {(r.org, r.role, r.outcome) for r in records} == {
        ("unknown", "none", "unauthenticated"), ("unknown", "none", "rate_limited")
    }  # fmt: skip
    assert log.verify().ok


def test_nothing_counted_writes_nothing(tmp_path: Path) -> None:
    log = AuditLog(Home(tmp_path).audit_path)
    tally = RefusalTally(AuditWriter(log))
    tally.flush_now()
    asyncio.run(tally.close())
    assert log.count() == 0
