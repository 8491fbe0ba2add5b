"""A keyless flood of CDS Hooks calls against a running service, as the outside review sent it:
what it costs the audit and the log.

python -m bench.bench_cds_flood --url http://127.0.0.1:3000 --home H --log SERVER.log \\
    [--clients 8] [--seconds 20] [--address 127.0.0.9]

`--clients` threads POST `/cds-services/carerisk-falls` with no Authorization and the body
`{"hook":` for `--seconds`, from the loopback address `--address`; then, two seconds later (the
refusals are audited in groups once a second), it prints the calls made, their statuses, and
how many audit records and log lines name that address, with the bytes the log grew by.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.common import print_json
from serving.audit import AuditLog

PATH = "/cds-services/carerisk-falls"


def flood(url: str, address: str, until: float) -> Counter[int]:
    statuses: Counter[int] = Counter()
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=url, transport=transport, timeout=30) as client:
        while time.monotonic() < until:
            answer = client.post(PATH, content=b'{"hook":',
                                 headers={"content-type": "application/json"})  # fmt: skip
            statuses[answer.status_code] += 1
    return statuses


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--home", type=Path, required=True, help="the served home (its audit)")
    parser.add_argument("--log", type=Path, required=True, help="the server's log file")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--address", default="127.0.0.9", help="a loopback address to send from")
    args = parser.parse_args(argv)
    audit = AuditLog.in_home(args.home)
    before, log_before = audit.count(), args.log.stat().st_size
    until = time.monotonic() + args.seconds
    with ThreadPoolExecutor(args.clients) as pool:
        counts = list(pool.map(lambda _: flood(args.url, args.address, until),
                               range(args.clients)))  # fmt: skip
    time.sleep(2.0)
    statuses = sum(counts, Counter())
    records = [r for r in audit.since(before) if r.client == args.address]
    with args.log.open("rb") as handle:
        handle.seek(log_before)
        grown = handle.read().decode("utf-8", "replace")
    lines = [line for line in grown.splitlines() if args.address in line]
    print_json({
        "clients": args.clients, "seconds": args.seconds, "calls": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "audit_records": len(records), "calls_in_audit": sum(r.count or 1 for r in records),
        "log_lines": len(lines), "log_bytes": len(grown.encode()),
    })  # fmt: skip


if __name__ == "__main__":
    main()
