"""Serving benchmark: the carerisk service against `mlflow models serve` on the same champion.

.venv/bin/python -m bench.bench_serving --home H [--seconds 20]

Works on a copy of a trained home (it adds keys and audit records). In one run, on one machine:
(a) p50/p99 latency of single-person falls scoring with reasons at 1, 8 and 32 concurrent
clients; (b) people scored with reasons per second in 1,000-person batches; (c) the same
champion served by `mlflow models serve` (no reasons) with the same people and batch sizes.
Both servers run the same number of worker processes (--workers, default 2: one per core).
Prints a markdown table and writes JSON to bench/out/serving.json.

The service allows each key 50 requests a second (burst 100), so the clients share a pool of
analyst keys, one per request in turn, as many organisations would. Every scoring request is
audited (an fsynced SQLite commit), as in production. The clients (stdlib http.client, bodies
encoded in advance) share the machine with the servers; their CPU per request is reported.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features.home import Home
from features.outcomes import FALLS
from models.registered import CHAMPION

OUTCOME = FALLS  # the outcome measured
CONCURRENCY = (1, 8, 32)
BATCH = 1000
OUT = Path(__file__).resolve().parent / "out" / "serving.json"
TARGETS = {"p99_ms_at_8": 20.0, "batch_people_per_s": 5000.0}
# serve options that keep the per-key rate limits out of a load test
FAST = ("--rate-per-second", "5000", "--burst", "5000")


@dataclass
class Result:
    server: str  # carerisk or mlflow
    test: str  # single or batch
    clients: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    requests_per_s: float
    people_per_s: float
    client_cpu_ms: float  # the load generator's own CPU per request (it shares the cores)


# --- load generation ------------------------------------------------------------------------
# A lean client: stdlib http.client on keep-alive connections, request bodies encoded before the
# clock starts. The load generator runs on the same two cores as the server, so every
# millisecond of client CPU is taken from the server (httpx cost 0.7 ms a request, this 0.2).

BODIES = 64  # distinct request bodies per test, cycled


@dataclass(frozen=True)
class Calls:
    """What one test sends: a path, headers per request (cycled) and bodies (cycled)."""

    url: str
    path: str
    bodies: list[bytes]
    headers: list[dict[str, str]]
    check: Callable[[bytes], bool] = lambda body: True  # does a 200 answer count?
    method: str = "POST"  # GET sends no body


def send_until(
    conn: http.client.HTTPConnection, calls: Calls, done: Callable[[], bool], first: int, step: int
) -> tuple[list[float], int]:
    """Send `calls` on one keep-alive connection (bodies `first`, `first + step`, ...) until
    `done()`, then close it. Returns the latencies (s) and the number of failed answers."""
    mine, bad, i = [], 0, first
    try:
        while not done():
            start = time.perf_counter()
            body = calls.bodies[i % len(calls.bodies)] if calls.method == "POST" else None
            conn.request(calls.method, calls.path, body,
                         calls.headers[i % len(calls.headers)])  # fmt: skip
            response = conn.getresponse()
            answer = response.read()
            mine.append(time.perf_counter() - start)
            bad += response.status != 200 or not calls.check(answer)
            i += step
    finally:
        conn.close()
    return mine, bad


def run_load(calls: Calls, clients: int, seconds: float) -> tuple[list[float], int, float, float]:
    """`clients` threads, each with its own keep-alive connection, send until time is up.
    Returns latencies (s), the number of failed answers, the wall time and client CPU (s)."""
    stop = time.perf_counter() + seconds
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    host, port = calls.url.removeprefix("http://").rsplit(":", 1)

    def worker(seed: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        mine, bad = send_until(conn, calls, lambda: time.perf_counter() >= stop, seed, clients)
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    began, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return latencies, errors[0], time.perf_counter() - began, time.process_time() - cpu


def summarise(
    server: str, test: str, clients: int, run: tuple[list[float], int, float, float], people: int
) -> Result:
    latencies, errors, wall, cpu = run
    ms = np.asarray(latencies) * 1000
    ok = len(latencies) - errors
    return Result(
        server=server, test=test, clients=clients, requests=len(latencies), errors=errors,
        seconds=round(wall, 2), p50_ms=round(float(np.percentile(ms, 50)), 2),
        p99_ms=round(float(np.percentile(ms, 99)), 2),
        requests_per_s=round(len(latencies) / wall, 1),
        people_per_s=round(ok * people / wall, 1),
        client_cpu_ms=round(1000 * cpu / max(len(latencies), 1), 2),
    )  # fmt: skip


def batches(items: list[Any], size: int) -> list[list[Any]]:
    """BODIES consecutive batches of `size`, wrapping round the list."""
    return [[items[(b * size + j) % len(items)] for j in range(size)] for b in range(BODIES)]


# --- the carerisk service -------------------------------------------------------------------


def carerisk_calls(url: str, keys: list[str], ids: list[str], batch: int) -> Calls:
    """The same requests as a client sends: people by id, analyst keys taken in turn (one
    per organisation); an answer without reasons does not count (the body is not parsed)."""
    bodies = [
        json.dumps({"outcome": OUTCOME.name, "person_ids": chosen}).encode()
        for chosen in batches(ids, batch)
    ]
    headers = [
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json"} for key in keys
    ]
    return Calls(url, "/v1/score", bodies, headers, check=lambda body: b'"reasons":[{' in body)


def add_keys(home: Path, count: int) -> list[str]:
    from serving.keys import KeyStore

    store = KeyStore.in_home(home)
    return [store.add(f"Bench client {i}", "analyst")[1] for i in range(count)]


@contextmanager
def carerisk_service(
    home: Path, start_timeout: float, workers: int
) -> Iterator[tuple[str, dict[str, float]]]:
    from tests.live import LiveService

    began = time.perf_counter()
    service = LiveService(home).start("--workers", str(workers), timeout=start_timeout)
    ready = round(time.perf_counter() - began, 1)  # reads stored scores: nothing to warm
    print(f"carerisk service ready in {ready} s", flush=True)
    try:
        yield service.url, {"service_ready_s": ready}
    finally:
        service.stop()


# --- the peer: mlflow models serve ----------------------------------------------------------


def model_matrix(home: Path, ids: list[str]) -> tuple[list[str], np.ndarray]:
    """The champion's encoded model matrix for these people (as the peer is fed)."""
    layout = Home(home)
    os.environ["BENTOML_HOME"] = str(layout.bentoml_home)
    from features.snapshot import read_snapshot
    from serving.model_store import load_champions

    bundle = load_champions(layout, [OUTCOME])[OUTCOME.name].bundle
    rows = read_snapshot(layout.store_path, ids).set_index("person_id", drop=False)
    matrix = bundle.matrix(rows.loc[ids].reset_index(drop=True))
    return list(matrix.columns), matrix.to_numpy(dtype=float)


def mlflow_calls(url: str, columns: list[str], matrix: np.ndarray, batch: int) -> Calls:
    data = [[None if np.isnan(v) else float(v) for v in row] for row in matrix]
    bodies = [
        json.dumps({"dataframe_split": {"columns": columns, "data": chosen}}).encode()
        for chosen in batches(data, batch)
    ]
    return Calls(url, "/invocations", bodies, [{"Content-Type": "application/json"}])


@contextmanager
def mlflow_service(home: Path, port: int, workers: int) -> Iterator[str]:
    from tests.live import child_env, wait_for_200

    env = {**child_env(), "MLFLOW_TRACKING_URI": Home(home).default_tracking_uri}
    # mlflow execs `uvicorn` by name: the venv's bin folder must be on PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m",
        f"models:/{OUTCOME.model_name}@{CHAMPION}", "--env-manager", "local",
        "-p", str(port), "-h", "127.0.0.1", "--workers", str(workers),
    ]  # fmt: skip
    log = open(home / f"mlflow-serve-{port}.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_200(f"{url}/ping", process, 180)
        yield url
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


# --- the run --------------------------------------------------------------------------------


def measure(server: str, make: Callable[[int], Calls], seconds: float) -> list[Result]:
    results = []
    single, batched = make(1), make(BATCH)
    run_load(single, 2, 2.0)  # warm up
    for clients in CONCURRENCY:
        run = run_load(single, clients, seconds)
        results.append(summarise(server, "single", clients, run, 1))
        print(table_row(results[-1]), flush=True)
    for clients in (1, 2):
        run = run_load(batched, clients, seconds)
        results.append(summarise(server, f"batch {BATCH}", clients, run, BATCH))
        print(table_row(results[-1]), flush=True)
    return results


def falls_people(home: Path) -> list[str]:
    from tests.live import snapshot_people

    return snapshot_people(home, [OUTCOME])[OUTCOME.name]


def verdict(results: list[Result]) -> dict[str, Any]:
    def pick(server: str, test: str, clients: int) -> Result:
        return next(r for r in results if (r.server, r.test, r.clients) == (server, test, clients))

    def best_batch(server: str) -> float:
        return max(r.people_per_s for r in results if r.server == server and r.test != "single")

    p99 = pick("carerisk", "single", 8).p99_ms
    ours, peer = (
        best_batch("carerisk"),
        best_batch("mlflow") if any(r.server == "mlflow" for r in results) else None,
    )
    return {
        "p99_ms_at_8_clients": p99,
        "p99_under_20ms": p99 < TARGETS["p99_ms_at_8"],
        "batch_people_per_s": ours,
        "batch_at_least_5000": ours >= TARGETS["batch_people_per_s"],
        "peer_batch_people_per_s": peer,
        "at_least_peer": None if peer is None else ours >= peer,
    }


HEADER = (
    "| server | test | clients | requests | errors | p50 ms | p99 ms | requests/s | people/s "
    "| client CPU ms |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def table_row(r: Result) -> str:
    return (
        f"| {r.server} | {r.test} | {r.clients} | {r.requests} | {r.errors} | {r.p50_ms} | "
        f"{r.p99_ms} | {r.requests_per_s} | {r.people_per_s} | {r.client_cpu_ms} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True, help="a trained home (a copy)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--keys", type=int, default=64, help="analyst keys shared by clients")
    parser.add_argument("--peer-port", type=int, default=0, help="0: a free port")
    parser.add_argument(
        "--start-timeout", type=float, default=900.0, help="seconds to wait for the service"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip mlflow models serve")
    parser.add_argument(
        "--workers", type=int, default=2, help="server processes, the same for both servers"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    for name, value in {"MLFLOW_DISABLE_TELEMETRY": "true", "BENTOML_DO_NOT_TRACK": "true",
                        "DO_NOT_TRACK": "1"}.items():  # fmt: skip
        os.environ.setdefault(name, value)

    home = args.home.resolve()
    ids = falls_people(home)
    keys = add_keys(home, args.keys)
    print(f"{len(ids)} people in the {OUTCOME.name} cohort; {os.cpu_count()} cores\n\n{HEADER}")
    with carerisk_service(home, args.start_timeout, args.workers) as (url, ready_s):
        results = measure("carerisk", lambda b: carerisk_calls(url, keys, ids, b), args.seconds)
    if not args.no_peer:
        from tests.live import free_port

        columns, matrix = model_matrix(home, ids)
        with mlflow_service(home, args.peer_port or free_port(), args.workers) as url:
            results += measure(
                "mlflow", lambda b: mlflow_calls(url, columns, matrix, b), args.seconds
            )
    summary = verdict(results)
    print("\n" + json.dumps(summary, indent=2))
    report = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },  # fmt: skip
        "home": str(home),
        "people_in_cohort": len(ids),
        "seconds_each": args.seconds,
        "workers_each": args.workers,
        **ready_s,
        "results": [asdict(r) for r in results],
        "verdict": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
