"""Time compute_features at one index date against the pandas peer on the same store.

python -m bench.bench_features --store PATH --index-date 2024-04-01 [--engine duckdb]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from datetime import date
from pathlib import Path

import pandas as pd

from bench.pandas_features import COLUMNS, pandas_features
from features.engines import compute_features


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(store: Path, day: date, engine: str = "duckdb") -> dict[str, float | int | str]:
    start = time.perf_counter()
    ours = compute_features(store, day, engine)  # type: ignore[arg-type]
    ours_s = time.perf_counter() - start
    peak_after_ours = _peak_mib()
    start = time.perf_counter()
    peer = pandas_features(store, day)
    peer_s = time.perf_counter() - start
    pd.testing.assert_frame_equal(
        ours[["person_id", *COLUMNS]].reset_index(drop=True), peer, check_dtype=False
    )
    return {
        "store": str(store),
        "index_date": day.isoformat(),
        "engine": engine,
        "people": int(len(ours)),
        "features": int(ours.shape[1] - 1),
        "compute_features_s": round(ours_s, 2),
        "pandas_peer_s": round(peer_s, 2),
        "pandas_peer_columns": len(COLUMNS),
        "ratio_pandas_over_ours": round(peer_s / ours_s, 2),
        "peak_rss_mib_after_ours": round(peak_after_ours, 1),
        "peak_rss_mib": round(_peak_mib(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--index-date", type=date.fromisoformat, required=True)
    parser.add_argument("--engine", default="duckdb", choices=["duckdb", "spark"])
    args = parser.parse_args()
    print(json.dumps(run(args.store, args.index_date, args.engine), indent=2))


if __name__ == "__main__":
    main()
