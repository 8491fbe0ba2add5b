"""Refusals that disclose nothing (401, 429, 408) are audited in groups, so that flooding the
service cannot grow the audit log, or its disk writes, at the rate of the flood.

The request guard counts each such refusal here, on the event loop, by (client address, route,
status, key id presented, how the key was judged, organisation and role when the key was valid), and
answers at once. Once a second the counts are written as one audit record per group, with
`count` saying how many requests it stands for. A client is named with at most
`IDS_PER_CLIENT` distinct presented key ids a second; more are counted under the key id
"several", so made-up key ids cannot add records either. The records are written through the
service's one audit writer (one group commit); what is counted when the service stops is written
by its shutdown hook. A refusal's record can therefore trail its answer by up to a second, and
the counts of the last second are lost if the process is killed; an answer that shows data is
always audited before it leaves (serving/api.py).

The log follows the audit: each group written is one log line, and the server's access log
leaves out the requests counted here (`GroupedAccessLines`, installed by the service), so a
flood grows neither by a line a request.
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from dataclasses import dataclass

from serving.audit import AuditEntry, AuditUnavailable, AuditWriter

log = logging.getLogger("carerisk.serving")

IDS_PER_CLIENT = 8
MAX_GROUPS = 10_000  # groups held before an early flush
OUTCOMES = {401: "unauthenticated", 408: "timeout", 429: "rate_limited"}
ACCESS_LOG = "bentoml.access"  # the server's line-a-request log
# set in a request's context once its refusal is counted here (the access log then skips it)
GROUPED: ContextVar[bool] = ContextVar("carerisk_grouped_refusal", default=False)


@dataclass(frozen=True)
class Refusal:
    client: str
    endpoint: str
    status: int
    key_id: str
    key_check: str
    org: str = "unknown"
    role: str = "none"

    def entry(self, count: int) -> AuditEntry:
        return AuditEntry(
            org=self.org,
            key_id=self.key_id,
            role=self.role,
            endpoint=self.endpoint,
            outcome=OUTCOMES.get(self.status, "refused"),
            status=self.status,
            client=self.client,
            key_check=self.key_check,
            count=count if count > 1 else None,
        )


class RefusalTally:
    """Counts refusals and writes them as grouped audit records once every `interval` s."""

    def __init__(self, writer: AuditWriter, interval: float = 1.0) -> None:
        self.writer = writer
        self.interval = interval
        self._counts: dict[Refusal, int] = {}
        self._ids: dict[str, set[str]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, refusal: Refusal) -> None:
        """Count one refusal (on the event loop); the flusher starts with the first."""
        GROUPED.set(True)
        ids = self._ids.setdefault(refusal.client, set())
        if refusal.key_id not in ids:
            if len(ids) >= IDS_PER_CLIENT:
                refusal = Refusal(**{**refusal.__dict__, "key_id": "several"})
            ids.add(refusal.key_id)
        self._counts[refusal] = self._counts.get(refusal, 0) + 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        if len(self._counts) >= MAX_GROUPS:
            asyncio.get_running_loop().create_task(self.flush())

    def drain(self) -> list[AuditEntry]:
        """The counted groups as audit entries, each said in one log line; the counts start
        again from nothing."""
        counts, self._counts, self._ids = self._counts, {}, {}
        for refusal, n in counts.items():
            log.info("refused %d request(s) %d %s from %s (key %s: %s, role %s)", n,
                     refusal.status, refusal.endpoint, refusal.client, refusal.key_id,
                     refusal.key_check, refusal.role)  # fmt: skip
        return [refusal.entry(n) for refusal, n in counts.items()]

    async def flush(self) -> None:
        entries = self.drain()
        if not entries:
            return
        done = await asyncio.gather(
            *(self.writer.append_async(e) for e in entries), return_exceptions=True
        )
        failed = [e for e, d in zip(entries, done, strict=True) if isinstance(d, BaseException)]
        if failed:
            lost = sum(e.count or 1 for e in failed)
            log.error("audit unavailable: %d grouped refusals (%d requests) not recorded",
                      len(failed), lost)  # fmt: skip

    def flush_now(self) -> None:
        """Write what is counted, from a thread or at shutdown (blocks until durable)."""
        for entry in self.drain():
            try:
                self.writer.append(entry)
            except AuditUnavailable:
                log.error("audit unavailable: a grouped refusal (%d requests) not recorded",
                          entry.count or 1)  # fmt: skip

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self._counts:
                return  # started again by the next refusal
            await self.flush()

    async def close(self) -> None:
        """Stop the flusher and write what is counted."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.flush()


class GroupedAccessLines(logging.Filter):
    """Leaves out of the access log the requests whose refusal was counted in a group."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not GROUPED.get()


def group_access_lines() -> None:
    """Install `GroupedAccessLines` on the server's access log (once)."""
    access = logging.getLogger(ACCESS_LOG)
    if not any(isinstance(f, GroupedAccessLines) for f in access.filters):
        access.addFilter(GroupedAccessLines())
