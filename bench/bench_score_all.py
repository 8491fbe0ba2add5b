"""`carerisk score-all` on DuckDB and on Spark local, wall time and peak memory.

python -m bench.bench_score_all --people 600000        # builds bench/out/home-score-600000
python -m bench.bench_score_all --home bench/out/home-600000 [--engine duckdb --engine spark]

A trained home is needed (champions in its registry and a feature snapshot): `--home` names
one; with `--people N` alone, `carerisk demo --no-serve --people N` builds bench/out/home-
score-N first (once; timed but not part of the figures). For each engine the home's scores
history is dropped (the bench replaces it: use a bench home) and `carerisk score-all
--engine E --json` runs as a child process: wall and CPU time (bench.common.run_measured)
and peak RSS, both the largest single process (`ru_maxrss`, what farm-bench reports) and
the largest sum over the process tree sampled every 0.2 s (Spark's JVM and Python workers
are separate processes). Then the engines' stored tables must be identical.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any, Self

import duckdb
import pandas as pd
import psutil

from bench.common import PYTHON, REPO, load_average, machine, print_json, run_measured, shell_text
from features.home import Home
from features.outcomes import PRODUCT
from features.scores_history import read_scores

OUT = REPO / "bench" / "out"
ENGINES = ("duckdb", "spark")


class TreeSampler:
    """The largest summed RSS of a process and its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._me = psutil.Process()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            family = self._me.children(recursive=True)
            total = 0
            for proc in family:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue  # it ended between the listing and the reading
            self.peak_bytes = max(self.peak_bytes, total)
            if self.after_sample(family, total):
                return

    def after_sample(self, family: list[psutil.Process], total: int) -> bool:
        """Called after each sample; True ends the sampling."""
        return False


def build_home(home: Path, people: int, seed: int) -> dict[str, Any]:
    """`carerisk demo --no-serve` on a fresh county of `people`, unless the home has a store."""
    if Home(home).store_path.exists():
        return {"built": False}
    home.mkdir(parents=True, exist_ok=True)
    command = [PYTHON, "-m", "carerisk", "--home", str(home), "demo", "--no-serve",
               "--people", str(people), "--seed", str(seed)]  # fmt: skip
    measured = run_measured(command).check()
    return {"built": True, "command": shell_text(command), "seconds": measured.seconds}


def drop_scores(home: Path) -> None:
    with duckdb.connect(str(Home(home).store_path)) as con:
        con.execute("DROP TABLE IF EXISTS scores_history")


def stored(home: Path) -> pd.DataFrame:
    """The whole scores history, without scored_at (the time of writing differs)."""
    parts = [read_scores(Home(home).store_path, o.name) for o in PRODUCT]
    return pd.concat(parts, ignore_index=True).drop(columns="scored_at")


def run_engine(home: Path, engine: str) -> tuple[dict[str, Any], pd.DataFrame]:
    drop_scores(home)
    command = [PYTHON, "-m", "carerisk", "--home", str(home), "score-all",
               "--engine", engine, "--json"]  # fmt: skip
    before = load_average()
    with TreeSampler() as sampler:
        measured = run_measured(command).check()
    written = measured.json()["written"]
    rows = sum(int(w["rows"]) for w in written)
    result: dict[str, Any] = {
        "engine": engine,
        "command": shell_text(command),
        "seconds": measured.seconds,
        "cpu_seconds": measured.cpu_seconds,
        "peak_rss_mib": measured.peak_rss_mib,
        "peak_tree_rss_mib": round(sampler.peak_bytes / 2**20, 1),
        "rows": rows,
        "rows_per_second": round(rows / max(measured.seconds, 1e-9)),
        "load_average_before": before,
        "load_average_after": load_average(),
    }
    return result, stored(home)


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(["outcome", "snapshot_date", "person_id"]).reset_index(drop=True)


def run(home: Path, engines: list[str]) -> dict[str, Any]:
    results, tables = [], {}
    for engine in engines:
        result, tables[engine] = run_engine(home, engine)
        results.append(result)
        time.sleep(1.0)
    first = _sorted(tables[engines[0]])
    identical = all(_sorted(t).equals(first) for t in tables.values())
    return {"home": str(home), "runs": results, "identical": identical, "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=None, help="a trained home to score")
    parser.add_argument("--people", type=int, default=20_000, help="county size to build")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--engine", action="append", choices=ENGINES, default=None)
    args = parser.parse_args()
    home = args.home or OUT / f"home-score-{args.people}"
    built = {"built": False} if args.home else build_home(home, args.people, args.seed)
    result = {"build": built, **run(home, args.engine or list(ENGINES))}
    print_json(result)
    if not result["identical"]:
        raise SystemExit("the engines' scores tables differ")


if __name__ == "__main__":
    main()
