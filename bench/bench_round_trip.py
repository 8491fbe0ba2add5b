"""Falls trained on one county loaded directly and loaded through OMOP (`synth`'s county
written as a CDM 5.4 DuckDB, imported back and loaded): the paired AUROC difference of the
two LightGBM models and of the two logistic baselines, on the same validation people, against
each store's labels.

python -m bench.bench_round_trip --out bench/out/round_trip --people 20000

The county is generated once; its OMOP form is written from the same extract. Training is
`carerisk train`'s: the default config, index dates and features (no MLflow logging).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import machine, print_json
from features.feature_list import FEATURES
from features.outcomes import FALLS
from features.store import load_extract
from features.training_sets import build_training_set, split_temporal
from importers.omop import import_omop
from synthetic.config import CountyConfig
from synthetic.generate import generate
from synthetic.omop import OMOP_FILE, write_omop
from training.config import TrainingConfig
from training.fit import fit
from training.pipeline import default_index_dates
from training.validation_metrics import paired_bootstrap_auroc_difference


def validation_predictions(store: Path, config: TrainingConfig) -> pd.DataFrame:
    """Falls trained on a store: the validation people's labels and both models' risks."""
    frame = build_training_set(store, FALLS, default_index_dates(store, FALLS))
    train, validation = split_temporal(frame)
    return fit(train, validation, FEATURES, FALLS, config).validation_predictions


def stores(out: Path, people: int, seed: int) -> tuple[Path, Path]:
    """The county loaded directly, and through OMOP (import, then load)."""
    generate(CountyConfig(people=people, seed=seed), out / "direct")
    county = json.loads((out / "direct" / "manifest.json").read_text())
    write_omop(out / "direct", out / OMOP_FILE, county["extract_date"], county["start"])
    import_omop(str(out / OMOP_FILE), out / "back", person_ids="person_source_value")
    for name in ("direct", "back"):
        load_extract(out / name, out / f"{name}.duckdb")
    return out / "direct.duckdb", out / "back.duckdb"


def compare(shared: pd.DataFrame, config: TrainingConfig) -> list[dict[str, Any]]:
    gate = config.gate
    out = []
    for labels, model in itertools.product(("y_direct", "y_back"), ("p", "p_baseline")):
        diff, low, high = paired_bootstrap_auroc_difference(
            shared[labels].to_numpy(),
            shared[f"{model}_back"].to_numpy(),
            shared[f"{model}_direct"].to_numpy(),
            replicates=gate.bootstrap_replicates,
            confidence=gate.confidence,
            seed=config.seed,
        )
        out.append({"labels": labels, "model": "lightgbm" if model == "p" else "baseline",
                    "auroc_back_minus_direct": round(diff, 4), "interval": [round(low, 4),
                    round(high, 4)], "agree": low <= 0 <= high})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    clock = time.perf_counter()
    direct, back = stores(args.out, args.people, args.seed)
    config = TrainingConfig.load()
    shared = validation_predictions(direct, config).merge(
        validation_predictions(back, config), on=["person_id", "index_date"],
        suffixes=("_direct", "_back"), validate="one_to_one",
    )  # fmt: skip
    print_json({
        "people": args.people,
        "validation_person_dates": len(shared),
        "events": {"direct": int(shared["y_direct"].sum()), "back": int(shared["y_back"].sum())},
        "comparisons": compare(shared, config),
        "seconds": round(time.perf_counter() - clock, 1),
        "machine": machine(),
    })  # fmt: skip


if __name__ == "__main__":
    main()
