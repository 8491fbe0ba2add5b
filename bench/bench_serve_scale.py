"""Serving at two population sizes: RSS per worker and p99 at 8 clients.

.venv/bin/python -m bench.bench_serve_scale --home H1 --home H2 [--seconds 20] [--workers 2]

Each H is an already-built trained home (`carerisk demo --no-serve --people N`, or /tmp/m600s);
it is copied first (the run adds keys and audit records). On each copy: `carerisk score-all`
writes the scores exports when the copy has none for its champions (timed), then the service
starts (timed: it opens the exports, it scores nothing), and 8 clients send single-person falls
scoring requests (with reasons) for `--seconds`, then 8 clients ask for a district's register
(top 200). Reported per home: people in the snapshot, the export files' size, start time, p50 /
p99 of both, and the RSS of each worker process once loaded (VmRSS from /proc). Target: RSS per
worker flat within 20% across sizes, p99 under 20 ms at both. Prints a markdown table; writes
JSON to bench/out/serve-scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from bench.bench_serving import (
    FAST,
    Calls,
    add_keys,
    carerisk_calls,
    falls_people,
    run_load,
)
from bench.common import REPO, machine

OUT = REPO / "bench" / "out"
CLIENTS = 8
TARGETS = {"rss_flat_within": 0.20, "p99_ms": 20.0}


def rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def workers_rss(root_pid: int) -> list[float]:
    """The RSS (MiB) of each BentoML API worker below the service's process."""
    from tests.live import descendants

    found = []
    for pid in descendants(root_pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "worker" in command:
                found.append(rss_of(pid))
        except OSError:
            continue
    return sorted(found)


def people_in(home: Path) -> int:
    from features.home import Home

    with duckdb.connect(str(Home(home).store_path), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM feature_snapshot").fetchone()
    return int(row[0]) if row else 0


def ensure_exports(home: Path) -> float | None:
    """`carerisk score-all` when the home has no exports; its seconds (None: not needed)."""
    from features.home import Home
    from tests.live import carerisk

    if any(Home(home).scores_dir.glob("scores-*.duckdb")):
        return None
    began = time.perf_counter()
    result = carerisk(home, "score-all", timeout=7200)
    if result.returncode != 0:
        raise RuntimeError(f"score-all failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return round(time.perf_counter() - began, 1)


def register_calls(url: str, keys: list[str], district: str) -> Calls:
    """A district's register, top 200, as an analyst asks for it (POST-free: a GET)."""
    path = f"/v1/register?outcome=falls&top=200&district={district.replace(' ', '%20')}"
    headers = [{"Authorization": f"Bearer {key}"} for key in keys]
    return Calls(url, path, [b""], headers, method="GET")


def a_district(home: Path) -> str:
    from features.home import Home

    with duckdb.connect(str(Home(home).store_path), read_only=True) as con:
        row = con.execute(
            "SELECT district FROM feature_snapshot GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
    return str(row[0]) if row else ""


def latency(run: tuple[list[float], int, float, float]) -> dict[str, Any]:
    ms = np.asarray(run[0]) * 1000
    return {
        "requests": len(ms), "errors": run[1],
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "requests_per_s": round(len(ms) / run[2], 1),
    }  # fmt: skip


def measure(source: Path, index: int, seconds: float, workers: int) -> dict[str, Any]:
    from tests.live import LiveService, copy_home

    copy = OUT / f"serve-scale-home-{index}"
    shutil.rmtree(copy, ignore_errors=True)
    home = copy_home(source, copy, "*.log")
    score_all_s = ensure_exports(home)
    from features.home import Home

    sizes = sum(p.stat().st_size for p in Home(home).scores_dir.glob("scores-*"))
    ids, keys, district = falls_people(home), add_keys(home, 64), a_district(home)
    service = LiveService(home)
    began = time.perf_counter()
    service.start("--workers", str(workers), *FAST, timeout=3600)
    ready = round(time.perf_counter() - began, 1)
    try:
        assert service.process is not None
        score = carerisk_calls(service.url, keys, ids, 1)
        register = register_calls(service.url, keys, district)
        run_load(score, 2, 2.0)  # warm up
        run_load(register, 2, 2.0)
        result = {
            "home": str(source), "people": people_in(home), "falls_cohort": len(ids),
            "exports_mib": round(sizes / 2**20, 1), "score_all_s": score_all_s,
            "service_ready_s": ready,
            "score_1_person_at_8": latency(run_load(score, CLIENTS, seconds)),
            "register_district_top200_at_8": latency(run_load(register, CLIENTS, seconds)),
            "worker_rss_mib": workers_rss(service.process.pid),
        }  # fmt: skip
    finally:
        service.stop()
        shutil.rmtree(copy, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return result


def verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    rss = [max(r["worker_rss_mib"]) for r in results if r["worker_rss_mib"]]
    p99 = [r["score_1_person_at_8"]["p99_ms"] for r in results]
    spread = (max(rss) - min(rss)) / min(rss) if rss else None
    return {
        "max_worker_rss_mib": rss,
        "rss_spread": None if spread is None else round(spread, 3),
        "rss_flat_within_20pct": spread is not None and spread <= TARGETS["rss_flat_within"],
        "p99_ms_at_8": p99,
        "p99_under_20ms": all(p < TARGETS["p99_ms"] for p in p99),
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| people | exports MiB | ready s | score p50/p99 ms | register p50/p99 ms "
        "| RSS per worker MiB |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        s, g = r["score_1_person_at_8"], r["register_district_top200_at_8"]
        lines.append(
            f"| {r['people']:,} | {r['exports_mib']} | {r['service_ready_s']} | "
            f"{s['p50_ms']} / {s['p99_ms']} | {g['p50_ms']} / {g['p99_ms']} | "
            f"{', '.join(str(x) for x in r['worker_rss_mib'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, action="append", required=True,
                        help="a trained home (copied first); give two or more")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes")
    parser.add_argument("--out", type=Path, default=OUT / "serve-scale.json")
    args = parser.parse_args()
    for name, value in {"MLFLOW_DISABLE_TELEMETRY": "true", "BENTOML_DO_NOT_TRACK": "true",
                        "DO_NOT_TRACK": "1"}.items():  # fmt: skip
        os.environ.setdefault(name, value)
    OUT.mkdir(parents=True, exist_ok=True)
    results = [
        measure(home.resolve(), i, args.seconds, args.workers) for i, home in enumerate(args.home)
    ]
    summary = verdict(results)
    print("\n" + table(results) + "\n\n" + json.dumps(summary, indent=2))
    report = {"machine": machine(), "clients": CLIENTS, "seconds_each": args.seconds,
              "workers": args.workers, "results": results, "verdict": summary}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
