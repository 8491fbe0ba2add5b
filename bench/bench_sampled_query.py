"""One training date's query on DuckDB, full and sampled, with and without the optimizer passes
that features/engines.py leaves out (DUCKDB_DISABLED_OPTIMIZERS).

python -m bench.bench_sampled_query --home H [--outcome complex-dependency] [--fraction 0.3]

For each setting of `disabled_optimizers` (the shipped one, and only `build_side_probe_side`,
the setting before projection_placement was left out), builds the rows of one index date
(features/training_sets.py `_one_date`) without and with negative sampling, `--repeats` times
each, on one read-only connection to H's store, and prints the seconds (median, min, max) and
whether every setting returned the same frame.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import print_json
from features.engines import DUCKDB_DISABLED_OPTIMIZERS, open_sources
from features.extent import data_start
from features.home import Home
from features.labels import LabelSettings
from features.outcomes import PRODUCT
from features.training_sets import NegativeSampling, _one_date

SETTINGS = {
    "shipped": ",".join(DUCKDB_DISABLED_OPTIMIZERS),
    "with projection_placement": "build_side_probe_side",
}


def timed(src: Any, args: argparse.Namespace, sampling: NegativeSampling | None) -> Any:
    outcome = PRODUCT.get(args.outcome)
    seconds, frame = [], pd.DataFrame()
    for _ in range(args.repeats):
        start = time.perf_counter()
        frame = _one_date(src, outcome, args.date, args.start, LabelSettings(), sampling)
        seconds.append(time.perf_counter() - start)
    return seconds, frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--outcome", default="complex_dependency")
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--date", type=date.fromisoformat, default=date(2023, 1, 1))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    args.outcome = args.outcome.replace("-", "_")
    store = Home(args.home).store_path
    args.start = data_start(store) or date(2021, 1, 1)
    sampling = NegativeSampling(args.fraction, 9)
    results: dict[str, Any] = {}
    frames: dict[str, list[pd.DataFrame]] = {"full": [], "sampled": []}
    with open_sources(store, "duckdb") as src:
        backend = src["person"]._find_backend()
        for name, disabled in SETTINGS.items():
            backend.raw_sql(f"SET disabled_optimizers = '{disabled}'")
            for kind, how in (("full", None), ("sampled", sampling)):
                seconds, frame = timed(src, args, how)
                frames[kind].append(frame)
                results[f"{kind}, {name}"] = {
                    "rows": len(frame),
                    "median_s": round(statistics.median(seconds), 2),
                    "min_s": round(min(seconds), 2),
                    "max_s": round(max(seconds), 2),
                }
    same = all(f.equals(group[0]) for group in frames.values() for f in group)
    print_json(
        {"store": str(store), "date": str(args.date), "outcome": args.outcome,
         "fraction": args.fraction, "identical_frames": same, "results": results}
    )  # fmt: skip


if __name__ == "__main__":
    main()
