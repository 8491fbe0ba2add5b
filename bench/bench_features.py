"""`compute_features` (DuckDB via Ibis) against the plain pandas peer, same store and date.

python -m bench.bench_features --store PATH --index-date 2024-04-01

Each implementation runs in its own child process (`--only ours|pandas --out FILE`), so the
peak RSS of each is its own; the parent then asserts the two frames are equal (every one of
the 74 registry features, NaN == NaN) and reports the ratio.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import PYTHON, print_json, run_measured, shell_text

TARGET_SECONDS = 60.0
TARGET_PEAK_MIB = 4 * 1024.0
TARGET_RATIO = 5.0  # pandas seconds over ours


def _implementation(which: str, engine: str) -> Callable[[Path, date], pd.DataFrame]:
    """Import one implementation and its libraries (before the clock starts, for both)."""
    if which == "ours":
        import ibis

        from features.engines import compute_features

        getattr(ibis, engine)  # loads the Ibis backend module
        return lambda store, day: compute_features(store, day, engine)  # type: ignore[arg-type]
    from bench.pandas_features import pandas_features

    return pandas_features


def compute_one(which: str, store: Path, day: date, engine: str, out: Path) -> dict[str, Any]:
    """Compute the features with one implementation, time it and write the frame (Parquet).

    Library imports happen before the clock for both sides; the parent also reports each
    child's whole-process time, imports and interpreter start included.
    """
    implementation = _implementation(which, engine)
    start, cpu_start = time.perf_counter(), time.process_time()
    frame = implementation(store, day)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start  # every thread of this process
    frame.to_parquet(out, index=False)
    return {
        "which": which,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "rows": len(frame),
        "columns": frame.shape[1] - 1,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _child(which: str, store: Path, day: date, engine: str, out: Path) -> dict[str, Any]:
    command = [PYTHON, "-m", "bench.bench_features", "--store", str(store)]
    command += ["--index-date", day.isoformat(), "--engine", engine, "--only", which]
    command += ["--out", str(out)]
    measured = run_measured(command).check()
    result = measured.json()
    result["process_seconds"] = measured.seconds
    result["process_cpu_seconds"] = measured.cpu_seconds
    result["process_peak_rss_mib"] = measured.peak_rss_mib
    result["command"] = shell_text(command[:-2])
    return result


def run(store: Path, day: date, engine: str = "duckdb") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="carerisk-bench-") as tmp:
        ours_file, peer_file = Path(tmp) / "ours.parquet", Path(tmp) / "pandas.parquet"
        ours = _child("ours", store, day, engine, ours_file)
        peer = _child("pandas", store, day, engine, peer_file)
        left, right = pd.read_parquet(ours_file), pd.read_parquet(peer_file)
    pd.testing.assert_frame_equal(left, right, check_exact=True)  # NaN == NaN
    ratio = peer["seconds"] / ours["seconds"]
    process_ratio = peer["process_seconds"] / ours["process_seconds"]
    cpu_ratio = peer["cpu_seconds"] / ours["cpu_seconds"]
    return {
        "store": str(store),
        "index_date": day.isoformat(),
        "engine": engine,
        "people": int(len(left)),
        "features": int(left.shape[1] - 1),
        "identical": True,
        "ours": ours,
        "pandas": peer,
        "ratio_pandas_over_ours": round(ratio, 2),
        "cpu_ratio_pandas_over_ours": round(cpu_ratio, 2),
        "process_ratio_pandas_over_ours": round(process_ratio, 2),
        "target_seconds": TARGET_SECONDS,
        "target_peak_rss_mib": TARGET_PEAK_MIB,
        "target_ratio": TARGET_RATIO,
        "met": ours["seconds"] < TARGET_SECONDS
        and ours["process_peak_rss_mib"] < TARGET_PEAK_MIB
        and ratio >= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--index-date", type=date.fromisoformat, default=date(2024, 4, 1))
    parser.add_argument("--engine", default="duckdb", choices=["duckdb", "spark"])
    parser.add_argument("--only", choices=["ours", "pandas"], help="compute one side (child)")
    parser.add_argument("--out", type=Path, help="where --only writes its frame (Parquet)")
    args = parser.parse_args()
    if args.only:
        if args.out is None:
            parser.error("--only needs --out")
        print_json(compute_one(args.only, args.store, args.index_date, args.engine, args.out))
        return
    print_json(run(args.store, args.index_date, args.engine))


if __name__ == "__main__":
    main()
