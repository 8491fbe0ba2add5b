"""Explanations per second: models.treeshap against LightGBM's pred_contrib, same run.

python -m bench.bench_treeshap --home bench/out/home [--outcome all] [--rows 100000]
    [--threads N] [--repeats 3]

For each outcome, the newest trained bundle of the home and the latest feature snapshot
(bench.bench_explain's helpers; rows repeated when the county is smaller than --rows) are
encoded once; then TreeExplainer.contributions and booster.predict(pred_contrib=True) run on
the same rows with the same threads (LightGBM's default unless --threads), alternately,
--repeats times each (the best and median times are reported, wall and CPU), and on batches
of 1 and 20 rows (the service explains small batches). Every value and the base value must
agree to 1e-9. The one-off costs are measured in fresh processes: building the explainer and
its first call, with an empty numba cache (compiling) and with the cache warm.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_explain import newest_bundle, snapshot_rows
from bench.common import REPO, child_env, print_json
from features.home import Home
from features.outcomes import PRODUCT
from models.bundle import ModelBundle
from models.encoding import encode_array
from models.treeshap import TreeExplainer, lightgbm_threads

TOLERANCE = 1e-9
SMALL_BATCHES = (1, 20)


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    start, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - start, time.process_time() - cpu, value


def _summary(walls: list[float], cpus: list[float], rows: int) -> dict[str, Any]:
    best = min(walls)
    return {
        "best_s": round(best, 4),
        "median_s": round(statistics.median(walls), 4),
        "best_cpu_s": round(min(cpus), 4),
        "rows_per_second": round(rows / best),
        "rows_per_cpu_second": round(rows / min(cpus)),
    }


def _per_batch(batches: list[np.ndarray], explain: Callable[[np.ndarray], Any]) -> float:
    start = time.perf_counter()
    for rows in batches:
        explain(rows)
    return time.perf_counter() - start


def _small_batches(
    explainer: TreeExplainer, bundle: ModelBundle, x: np.ndarray, threads: int
) -> dict[str, Any]:
    """Per-call latency on batches of 1 and 20 rows (mean over many calls)."""
    out: dict[str, Any] = {}
    for size in SMALL_BATCHES:
        calls = max(20, 2000 // size)
        batches = [x[i * size : (i + 1) * size] for i in range(calls)]
        fast = _per_batch(batches, partial(explainer.contributions, threads=threads))
        lgbm = _per_batch(
            batches, partial(bundle.booster.predict, pred_contrib=True, num_threads=threads)
        )
        out[f"rows_{size}"] = {
            "fast_us_per_call": round(fast / calls * 1e6, 1),
            "pred_contrib_us_per_call": round(lgbm / calls * 1e6, 1),
            "speedup": round(lgbm / fast, 2),
        }
    return out


def _one_off(home: Path, outcome: str, cache_dir: str | None) -> dict[str, Any]:
    """Build + first call of the explainer in a fresh process (numba compile or cache load)."""
    env = child_env()
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    command = [sys.executable, "-m", "bench.bench_treeshap", "--home", str(home)]
    command += ["--outcome", outcome, "--first-call"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def first_call(home: Path, outcome: str) -> dict[str, Any]:
    """What one process pays before its first explanation (run in a fresh process)."""
    bundle = ModelBundle.load(newest_bundle(home, PRODUCT.get(outcome).name))
    rows = encode_array(snapshot_rows(Home(home).store_path, 64), bundle.features)
    build, _, explainer = _timed(lambda: TreeExplainer.from_booster(bundle.booster))
    serial, _, _ = _timed(lambda: explainer.contributions(rows[:1]))
    parallel, _, _ = _timed(lambda: explainer.contributions(rows, threads=2))
    return {
        "build_s": round(build, 2),
        "first_call_one_thread_s": round(serial, 2),
        "first_call_threads_s": round(parallel, 2),
        "total_s": round(build + serial + parallel, 2),
    }


def run_one(home: Path, outcome: str, rows: int, threads: int, repeats: int) -> dict[str, Any]:
    outcome = PRODUCT.get(outcome).name
    bundle = ModelBundle.load(newest_bundle(home, outcome))
    x = encode_array(snapshot_rows(Home(home).store_path, rows), bundle.features)
    build, _, explainer = _timed(lambda: TreeExplainer.from_booster(bundle.booster))
    explainer.contributions(x[:100], threads)  # compiled (or loaded from numba's cache)
    bundle.booster.predict(x[:100], pred_contrib=True, num_threads=threads)
    walls: dict[str, list[float]] = {"fast": [], "pred_contrib": []}
    cpus: dict[str, list[float]] = {"fast": [], "pred_contrib": []}
    for _ in range(repeats):  # alternate, so both see the same machine
        wall, cpu, ours = _timed(lambda: explainer.contributions(x, threads))
        walls["fast"].append(wall)
        cpus["fast"].append(cpu)
        wall, cpu, reference = _timed(
            lambda: bundle.booster.predict(x, pred_contrib=True, num_threads=threads)
        )
        walls["pred_contrib"].append(wall)
        cpus["pred_contrib"].append(cpu)
    width = len(bundle.features)
    value_diff = float(np.max(np.abs(ours[:, :width] - reference[:, :width])))
    base_diff = float(np.max(np.abs(ours[:, width] - reference[:, width])))
    fast = _summary(walls["fast"], cpus["fast"], rows)
    native = _summary(walls["pred_contrib"], cpus["pred_contrib"], rows)
    forest = explainer.forest
    return {
        "outcome": outcome,
        "rows": rows,
        "threads": threads,
        "repeats": repeats,
        "features": width,
        "trees": len(forest.tree_node_start) - 1,
        "leaves": len(forest.leaf_value),
        "mean_distinct_features_per_leaf": round(float(np.mean(forest.leaf_slots)), 2),
        "tabled_share": explainer.tabled_share,
        "tables_mib": round(explainer.tables_bytes / 2**20, 2),
        "build_s": round(build, 3),
        "fast": fast,
        "pred_contrib": native,
        "speedup_wall": round(native["best_s"] / fast["best_s"], 2),
        "speedup_median_wall": round(native["median_s"] / fast["median_s"], 2),
        "speedup_cpu": round(native["best_cpu_s"] / fast["best_cpu_s"], 2),
        "small_batches": _small_batches(explainer, bundle, x, threads),
        "max_abs_difference": value_diff,
        "max_abs_base_difference": base_diff,
        "tolerance": TOLERANCE,
        "agree": value_diff <= TOLERANCE and base_diff <= TOLERANCE,
    }


def run(
    home: Path, outcomes: list[str], rows: int, threads: int | None = None, repeats: int = 3
) -> dict[str, Any]:
    threads = threads or lightgbm_threads()
    results = [run_one(home, o, rows, threads, repeats) for o in outcomes]
    with tempfile.TemporaryDirectory() as empty:
        cold = _one_off(home, outcomes[0], empty)  # compiles every kernel
    warm = _one_off(home, outcomes[0], None)  # the cache the runs above filled
    return {
        "outcomes": results,
        "one_off_per_process": {"numba_cache_empty": cold, "numba_cache_warm": warm},
        "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "agree": all(r["agree"] for r in results),
        "min_speedup_wall": min(r["speedup_wall"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--outcome", default="all", choices=["all", *PRODUCT.names()])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=None, help="default: LightGBM's")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--first-call", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_call:
        print_json(first_call(args.home, args.outcome))
        return
    outcomes = list(PRODUCT.names()) if args.outcome == "all" else [args.outcome]
    result = run(args.home, outcomes, args.rows, args.threads, args.repeats)
    print_json(result)
    if not result["agree"]:
        raise SystemExit("the fast explainer and pred_contrib disagree by more than 1e-9")


if __name__ == "__main__":
    main()
