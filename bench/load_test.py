"""A bounded load test of the real server on loopback: a fixed request rate with mixed roles.

    python -m bench.load_test --home H --seconds 300 --rate 20

Starts `carerisk serve` on the trained home H (adding one key per role to it), then sends
requests at a fixed rate from a thread pool of httpx clients: gp scores (one person, or a batch
of 2 to 100), fire registers, gp FHIR RiskAssessments and analyst person views. It samples the
server's memory (VmRSS summed over its process tree) after the warm-up and at the end, and
counts audit records before and after against the records the answers imply. Prints a JSON
summary; exits 1 on any error, memory growth of 10% or more, an audit count that differs, or a
rate not held (sent under 95% of the target, or answers still owed more than 10 s after the
last send).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from features.outcomes import COMPLEX_DEPENDENCY, FALLS
from serving.audit import AuditLog
from tests.live import LiveService, snapshot_people

MAX_GROWTH = 0.10
MIN_HELD = 0.95
MAX_DRAIN_S = 10.0  # after the last send, the answers still owed must arrive within this


@dataclass
class Tally:
    """What the senders saw; shared between threads under a lock."""

    sent: int = 0
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    audits_expected: int = 0
    latencies: list[float] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, error: str | None, audits: int) -> None:
        with self.lock:
            self.sent += 1
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            self.latencies.append(seconds)
            self.audits_expected += audits
            if error is None:
                self.ok += 1
            elif len(self.errors) < 20:
                self.errors.append(f"{kind}: {error}")
            else:
                self.errors.append("...")


@dataclass(frozen=True)
class Request:
    kind: str
    role: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    params: dict[str, Any] | None = None


def next_request(rng: random.Random, falls: list[str], adults: list[str]) -> Request:
    """One request of the mix: 30% single score, 25% batch, 15% each register, FHIR, person."""
    pick = rng.random()
    if pick < 0.30:
        body = {"outcome": FALLS.name, "person_ids": [rng.choice(falls)]}
        return Request("score_one", "gp", "POST", "/v1/score", body)
    if pick < 0.55:
        outcome, pool = rng.choice(((FALLS.name, falls), (COMPLEX_DEPENDENCY.name, adults)))
        body = {"outcome": outcome, "person_ids": rng.sample(pool, rng.randint(2, 100))}
        return Request("score_batch", "gp", "POST", "/v1/score", body)
    if pick < 0.70:
        params = {"outcome": rng.choice((FALLS.name, COMPLEX_DEPENDENCY.name)), "top": 50}
        return Request("register", "fire", "GET", "/v1/register", params=params)
    if pick < 0.85:
        body = {"outcome": FALLS.name, "person_id": rng.choice(falls)}
        return Request("fhir", "gp", "POST", "/v1/fhir/risk-assessment", body)
    return Request("person", "analyst", "POST", "/v1/person", {"person_id": rng.choice(adults)})


def audits_implied(request: Request, answer: dict[str, Any]) -> int:
    """Audit records a 200 answer implies: one, or one per outcome of the person view (scored
    or outside its cohort)."""
    if request.kind != "person":
        return 1
    return len(answer["outcomes"])


class Sender:
    """Thread-local httpx clients, one per role, sending requests and recording the outcome."""

    def __init__(self, service: LiveService, tally: Tally) -> None:
        self.service = service
        self.tally = tally
        self.local = threading.local()

    def client(self, role: str) -> httpx.Client:
        clients: dict[str, httpx.Client] = self.local.__dict__.setdefault("clients", {})
        if role not in clients:
            clients[role] = self.service.client(role)
        return clients[role]

    def send(self, request: Request) -> None:
        began = time.perf_counter()
        error, audits = None, 0
        try:
            response = self.client(request.role).request(
                request.method, request.path, json=request.body, params=request.params
            )
            if response.status_code == 200:
                audits = audits_implied(request, response.json())
            else:
                error = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.tally.record(request.kind, time.perf_counter() - began, error, audits)


def tree_rss_kib(pid: int) -> int:
    """VmRSS in KiB summed over a process and all its descendants (from /proc)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        todo.extend(children(current))
    return total


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def drive(
    sender: Sender,
    next_one: Callable[[], Request],
    seconds: float,
    rate: float,
    workers: int,
    at_warm: Callable[[], None],
    warmup: float,
) -> tuple[float, float]:
    """Submit requests at `rate` a second for `seconds`; returns (seconds until the last
    answer, seconds spent sending)."""
    began = time.monotonic()
    futures: list[Future[None]] = []
    warmed = False
    with ThreadPoolExecutor(workers) as pool:
        for i in range(int(seconds * rate)):
            due = began + i / rate
            if not warmed and due - began >= warmup:
                at_warm()
                warmed = True
            time.sleep(max(0.0, due - time.monotonic()))
            futures.append(pool.submit(sender.send, next_one()))
        sending = time.monotonic() - began + 1 / rate
        for future in futures:
            future.result()
    return time.monotonic() - began, sending


def run_load(
    service: LiveService, seconds: float, rate: float, *, warmup: float = 30.0,
    workers: int = 16, seed: int = 7,
) -> dict[str, Any]:  # fmt: skip
    """Drive the running `service` and return the summary (with `passed`)."""
    assert service.process is not None, "start the service first"
    people = snapshot_people(service.home)
    rng = random.Random(seed)
    audit = AuditLog.in_home(service.home)
    before = audit.count()
    tally = Tally()
    rss: dict[str, int] = {}

    def at_warm() -> None:
        rss["after_warmup_kib"] = tree_rss_kib(service.process.pid)  # type: ignore[union-attr]

    warmup = min(warmup, seconds / 4)
    elapsed, sending = drive(
        Sender(service, tally),
        lambda: next_request(rng, people[FALLS.name], people[COMPLEX_DEPENDENCY.name]),
        seconds, rate, workers, at_warm, warmup,
    )  # fmt: skip
    rss["end_kib"] = tree_rss_kib(service.process.pid)
    rss.setdefault("after_warmup_kib", rss["end_kib"])
    return summarise(tally, rss, audit.count() - before, (elapsed, sending), seconds, rate)


def summarise(
    tally: Tally,
    rss: dict[str, int],
    audited: int,
    times: tuple[float, float],
    seconds: float,
    rate: float,
) -> dict[str, Any]:
    """The rate is held when requests went out on schedule and the server kept up: the answers
    still owed after the last send all came within MAX_DRAIN_S."""
    elapsed, sending = times
    drain = elapsed - sending
    growth = (rss["end_kib"] - rss["after_warmup_kib"]) / max(rss["after_warmup_kib"], 1)
    latencies = sorted(tally.latencies) or [0.0]
    achieved = tally.sent / sending if sending else 0.0
    checks = {
        "no_errors": not tally.errors,
        "memory_growth_under_10pct": growth < MAX_GROWTH,
        "every_call_audited": audited == tally.audits_expected,
        "rate_held": achieved >= MIN_HELD * rate and drain <= MAX_DRAIN_S,
    }
    return {
        "seconds": seconds,
        "target_rate": rate,
        "achieved_rate": round(achieved, 2),
        "elapsed_s": round(elapsed, 1),
        "drain_s": round(drain, 1),
        "requests": tally.sent,
        "ok": tally.ok,
        "by_kind": tally.by_kind,
        "errors": tally.errors,
        "latency_ms": {
            "p50": round(1000 * latencies[len(latencies) // 2], 1),
            "p95": round(1000 * latencies[int(len(latencies) * 0.95)], 1),
            "max": round(1000 * latencies[-1], 1),
        },
        "rss_kib": rss,
        "rss_growth": round(growth, 4),
        "audit_records_added": audited,
        "audit_records_expected": tally.audits_expected,
        "checks": checks,
        "passed": all(checks.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="a trained carerisk home")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--rate", type=float, default=20, help="requests a second")
    parser.add_argument("--warmup", type=float, default=30, help="seconds before the first RSS")
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args(argv)
    service = LiveService(args.home.resolve())
    service.add_keys()
    service.start("--fire-sharing", "register")  # its fire calls read the register
    try:
        summary = run_load(
            service, args.seconds, args.rate, warmup=args.warmup, workers=args.workers
        )
        summary["audit_chain_ok"] = AuditLog.in_home(service.home).verify().ok
        summary["passed"] = summary["passed"] and summary["audit_chain_ok"]
    finally:
        service.stop()
    print(json.dumps(summary, indent=2))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
