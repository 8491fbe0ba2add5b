"""Reload benchmark: swapping champions without downtime, on a served home.

.venv/bin/python -m bench.bench_reload --people N [--home H] [--seconds 20] [--reloads 3]

Works on a fresh copy of a trained home (default bench/out/home-N, as `bench.run_all --people N`
leaves it; built with `carerisk demo --no-serve --people N` when absent), because it registers
new champion versions and adds keys and audit records. In one run, on one machine:
(a) p50/p99 latency of single-person falls scoring with 8 clients, steady, before any reload;
(b) the same while a reload (POST /v1/admin/reload, both champions re-registered as new
versions) builds and swaps a new state, the load running from before the reload is asked until
it has answered; (c) the reload's time (the build, as the route reports it, and the request's
wall time); (d) the service's RSS (all its processes) before the first reload, at its peak
during each reload (two states held) and after each of `--reloads` reloads (a reload to a new
champion scores the snapshot and writes its export, then opens it: serving/scores_file.py).
Target: no growth beyond one state, i.e. RSS after the last reload less than before plus
(peak - before). Prints a markdown table and
the command; writes JSON to bench/out/reload-N.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.bench_serving import (
    FAST,
    Calls,
    add_keys,
    carerisk_calls,
    falls_people,
    send_until,
)
from bench.common import REPO, machine, markdown_table, shell_text
from features.home import Home

OUT = REPO / "bench" / "out"
CLIENTS = 8


def fresh_copy(source: Path, people: int) -> Path:
    """A copy of the trained home to change (built first when `source` does not exist)."""
    from tests.live import build_home, copy_home

    if not Home(source).store_path.is_file():
        print(f"building a {people:,}-person home in {source}", flush=True)
        source.mkdir(parents=True, exist_ok=True)
        build_home(source, people)
    copy = OUT / f"reload-home-{people}"
    shutil.rmtree(copy, ignore_errors=True)
    return copy_home(source, copy, "*.log")


def rss_mib(root_pid: int) -> float:
    """Resident memory of the service: the server process and everything below it."""
    from tests.live import descendants

    total = 0
    for pid in [root_pid, *descendants(root_pid)]:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def reregister_champions(home: Path) -> dict[str, str]:
    """Each champion's run registered again as a new version, moved to champion."""
    from mlflow import MlflowClient

    from features.home import Home
    from features.outcomes import PRODUCT
    from models.registered import BUNDLE_ARTIFACT, CHAMPION

    uri = Home(home).default_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = {}
    for outcome in PRODUCT:
        champion = client.get_model_version_by_alias(outcome.model_name, CHAMPION)
        source = f"{client.get_run(str(champion.run_id)).info.artifact_uri}/{BUNDLE_ARTIFACT}"
        new = client.create_model_version(outcome.model_name, source, run_id=champion.run_id)
        client.set_registered_model_alias(outcome.model_name, CHAMPION, new.version)
        versions[outcome.name] = str(new.version)
    return versions


def load(calls: Calls, stop: threading.Event, latencies: list[float], errors: list[int]) -> None:
    """One client on its own keep-alive connection until `stop` is set."""
    import http.client

    host, port = calls.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    mine, bad = send_until(conn, calls, stop.is_set, threading.get_ident(), 1)
    latencies.extend(mine)
    errors.append(bad)


class Clients:
    """CLIENTS threads of `load` from `with` to its end."""

    def __init__(self, calls: Calls) -> None:
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.errors: list[int] = []
        self.threads = [
            threading.Thread(target=load, args=(calls, self.stop, self.latencies, self.errors))
            for _ in range(CLIENTS)
        ]

    def __enter__(self) -> Clients:
        self.began = time.perf_counter()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)
        self.seconds = time.perf_counter() - self.began

    def summary(self, what: str) -> dict[str, Any]:
        ms = np.asarray(self.latencies) * 1000
        return {
            "phase": what, "clients": CLIENTS, "requests": len(ms), "errors": sum(self.errors),
            "seconds": round(self.seconds, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 1),
        }  # fmt: skip


def reload_once(service: Any, key: str, pid: int) -> dict[str, Any]:
    """Ask for a reload, sampling the service's RSS until it answers."""
    peak, done = [rss_mib(pid)], threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak.append(rss_mib(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    began = time.perf_counter()
    try:
        with httpx.Client(base_url=service.url, timeout=3600) as client:
            response = client.post("/v1/admin/reload", headers={"Authorization": f"Bearer {key}"})
    finally:
        done.set()
        sampler.join()
    if response.status_code != 200:
        raise RuntimeError(f"reload answered {response.status_code}: {response.text[:500]}")
    answer = response.json()
    return {
        "build_s": answer["seconds"], "request_s": round(time.perf_counter() - began, 2),
        "peak_rss_mib": max(peak), "after": answer["after"],
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.live import LiveService

    home = fresh_copy(args.home or OUT / f"home-{args.people}", args.people)
    ids = falls_people(home)
    keys = add_keys(home, 64)
    service = LiveService(home)
    service.add_keys()
    service.start("--workers", str(args.workers), *FAST, timeout=args.start_timeout)
    try:
        assert service.process is not None
        pid = service.process.pid
        calls = carerisk_calls(service.url, keys, ids, 1)
        with Clients(calls):  # warm up
            time.sleep(2)
        with Clients(calls) as steady:
            time.sleep(args.seconds)
        rss_before = rss_mib(pid)
        reloads = []
        for n in range(1, args.reloads + 1):
            versions = reregister_champions(home)
            with Clients(calls) as during:
                time.sleep(1)
                reloaded = reload_once(service, service.keys["admin"], pid)
                time.sleep(1)
            reloaded["load"] = during.summary(f"during reload {n}")
            reloaded["versions"] = versions
            time.sleep(3)  # the old state's release
            reloaded["rss_after_mib"] = rss_mib(pid)
            reloads.append(reloaded)
            print(f"reload {n}: {json.dumps(reloaded, default=str)}", flush=True)
    finally:
        service.stop()
    peak = max(r["peak_rss_mib"] for r in reloads)
    growth = round(reloads[-1]["rss_after_mib"] - rss_before, 1)
    return {
        "people_in_cohort": len(ids), "workers": args.workers, "seconds": args.seconds,
        "steady": steady.summary("steady"), "reloads": reloads,
        "rss_before_mib": rss_before, "rss_peak_mib": peak, "rss_growth_mib": growth,
        "no_growth_beyond_one_state": growth < peak - rss_before,
    }  # fmt: skip


def table(result: dict[str, Any]) -> str:
    steady = result["steady"]
    rows = [[steady["phase"], steady["requests"], steady["errors"], steady["p50_ms"],
             steady["p99_ms"], "", "", result["rss_before_mib"], ""]]  # fmt: skip
    for r in result["reloads"]:
        load = r["load"]
        rows.append([load["phase"], load["requests"], load["errors"], load["p50_ms"],
                     load["p99_ms"], r["build_s"], r["request_s"], r["rss_after_mib"],
                     r["peak_rss_mib"]])  # fmt: skip
    headers = ["phase", "requests", "errors", "p50 ms", "p99 ms", "build s", "reload request s",
               "RSS after MiB", "RSS peak MiB"]  # fmt: skip
    return markdown_table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, required=True, help="the county's size")
    parser.add_argument("--home", type=Path, help="a trained home (default bench/out/home-N)")
    parser.add_argument("--seconds", type=float, default=20.0, help="the steady measurement")
    parser.add_argument("--reloads", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--start-timeout", type=float, default=1800.0)
    args = parser.parse_args()
    for name, value in {"MLFLOW_DISABLE_TELEMETRY": "true", "BENTOML_DO_NOT_TRACK": "true",
                        "DO_NOT_TRACK": "1"}.items():  # fmt: skip
        os.environ.setdefault(name, value)
    command = ["python", "-m", "bench.bench_reload", *sys.argv[1:]]
    started = machine()
    result = run(args)
    report = {"command": shell_text(command), "machine": started, **result}
    summary = {k: v for k, v in report.items() if k != "reloads"}
    print(f"\n{table(result)}\n\n{json.dumps(summary, indent=2, default=str)}")
    out = OUT / f"reload-{args.people}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\n{report['command']}\nwrote {out}")


if __name__ == "__main__":
    main()
