"""Time training one outcome from a store: wall time and peak memory.

.venv/bin/python -m bench.bench_train --store .carerisk/store.duckdb --outcome falls
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path


def run(store: Path, outcome: str, config_path: Path | None, home: Path) -> dict[str, object]:
    from training.config import TrainingConfig
    from training.pipeline import train_outcome

    config = TrainingConfig.load(config_path)
    start = time.perf_counter()
    result = train_outcome(
        store,
        outcome,
        config=config,
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        artifact_root=home / "mlflow-artifacts",
    )
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "outcome": result.outcome,
        "wall_seconds": round(seconds, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "rows": result.split_sizes,
        "best_iteration": result.best_iteration,
        "auroc": round(result.metrics["model"]["auroc"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--outcome", default="falls")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--home", type=Path, default=None, help="MLflow home (default: temp)")
    args = parser.parse_args()
    if args.home:
        print(json.dumps(run(args.store, args.outcome, args.config, args.home), indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(args.store, args.outcome, args.config, Path(tmp)), indent=2))


if __name__ == "__main__":
    main()
