"""Full against sampled training on the same home and the same validation people.

python -m bench.bench_train_sampled --home H [--outcome complex-dependency] [--fraction 0.1]

For each outcome, runs `carerisk train --no-report --json` twice in its own measured process
(bench/bench_train.py run_one): once on every row, once with `--sample-negatives FRACTION`
(every positive and that share of negative person-dates at the training dates, weighted).
Both runs register a challenger in H's MLflow (use a copy of a home: tests/live.py copy_home).
Then reads both runs' validation predictions (the same validation people: the split is a
fixed hash of the person id) and reports, for AUROC, the calibration slope and
observed/expected, each model's value and the paired bootstrap difference (sampled minus full)
with its interval: the same resamples of people for both models, as the promotion gate's
AUROC comparison (training/validation_metrics.py paired_bootstrap_auroc_difference, reused for
AUROC).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.bench_train import OUTCOMES, run_one
from bench.common import print_json
from evaluation.metrics import auroc as auroc_of
from evaluation.metrics import calibration_slope
from features.home import Home
from training.tracking import PREDICTIONS_ARTIFACT, client_for
from training.validation_metrics import paired_bootstrap_auroc_difference

REPLICATES = 500  # as the promotion gate (config/training.toml [gate])
SLOPE_REPLICATES = 200  # each is two logistic refits
CONFIDENCE = 0.95
SEED = 20250101
METRICS = ("auroc", "calibration_slope", "observed_expected")


def predictions(tracking_uri: str, run_id: str) -> pd.DataFrame:
    """A run's validation predictions (person_id, index_date, y, p, p_baseline)."""
    client = client_for(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, PREDICTIONS_ARTIFACT, tmp)
        return pd.read_parquet(path)


def paired(
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], float],
    replicates: int,
) -> tuple[float, float, float]:
    """statistic(a) - statistic(b) on the same people, with a percentile interval over
    resamples of the people (the same resample for both)."""
    rng = np.random.default_rng(SEED)
    diffs = []
    for _ in range(replicates):
        rows = rng.integers(0, len(y), len(y))
        diffs.append(statistic(y[rows], a[rows]) - statistic(y[rows], b[rows]))
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return statistic(y, a) - statistic(y, b), float(low), float(high)


def slope(y: np.ndarray, p: np.ndarray) -> float:
    return calibration_slope(y, p)[0]


def observed_expected(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sum(y) / np.sum(p))


def _entry(value_full: float, value_sampled: float, diff: tuple[float, float, float]) -> dict:
    low, high = diff[1], diff[2]
    return {
        "full": round(value_full, 4),
        "sampled": round(value_sampled, 4),
        "difference": round(diff[0], 4),
        "interval": [round(low, 4), round(high, 4)],
        "interval_holds_0": bool(low <= 0 <= high),
    }


def compare(full: pd.DataFrame, sampled: pd.DataFrame) -> dict[str, Any]:
    """Sampled minus full on the validation people both runs were measured on."""
    keys = ["person_id", "index_date"]
    both = full.merge(sampled, on=keys, suffixes=("_full", "_sampled"), validate="one_to_one")
    if len(both) != len(full) or len(both) != len(sampled):
        raise RuntimeError("the two runs were measured on different validation people")
    if not np.array_equal(both["y_full"], both["y_sampled"]):
        raise RuntimeError("the two runs disagree on the validation labels")
    y = both["y_full"].to_numpy(dtype=int)
    a, b = both["p_sampled"].to_numpy(float), both["p_full"].to_numpy(float)
    auroc = paired_bootstrap_auroc_difference(
        y, a, b, replicates=REPLICATES, confidence=CONFIDENCE, seed=SEED
    )
    return {
        "people": len(y),
        "events": int(y.sum()),
        "auroc": _entry(auroc_of(y, b), auroc_of(y, a), auroc),
        "calibration_slope": _entry(
            slope(y, b), slope(y, a), paired(y, a, b, slope, SLOPE_REPLICATES)
        ),
        "observed_expected": _entry(
            observed_expected(y, b),
            observed_expected(y, a),
            paired(y, a, b, observed_expected, REPLICATES),
        ),
    }


def _timing(run: dict[str, Any]) -> dict[str, Any]:
    keep = ("command", "seconds", "cpu_seconds", "peak_rss_mib", "run_id", "split_sizes")
    return {k: run[k] for k in keep if k in run}


def _logged(run: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(run), file=sys.stderr, flush=True)  # kept if the comparison fails
    return run


def bench_outcome(
    home: Path, outcome: str, fraction: float, config: Path | None, full_run: str | None = None
) -> dict:
    """Sampled, then full (or the earlier full run `full_run` on the same home), compared."""
    extra = ["--sample-negatives", str(fraction)]
    sampled = _logged(run_one(home, outcome, config=config, extra=extra))  # first: fails sooner
    full = {"run_id": full_run} if full_run else _logged(run_one(home, outcome, config=config))
    uri = Home(home).default_tracking_uri
    quality = compare(predictions(uri, full["run_id"]), predictions(uri, sampled["run_id"]))
    return {
        "outcome": outcome,
        "negative_fraction": fraction,
        "full": _timing(full),
        "sampled": _timing(sampled),
        "validation": quality,
        "matches": all(quality[k]["interval_holds_0"] for k in METRICS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--outcome", choices=OUTCOMES, action="append")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument(
        "--full-run", default=None, help="compare with this earlier full run (one outcome)"
    )
    args = parser.parse_args()
    outcomes = args.outcome or list(OUTCOMES)
    if args.full_run and len(outcomes) != 1:
        parser.error("--full-run needs exactly one --outcome")
    print_json(
        [bench_outcome(args.home, o, args.fraction, args.config, args.full_run) for o in outcomes]
    )


if __name__ == "__main__":
    main()
