"""TreeSHAP for 100,000 rows: LightGBM's native pred_contrib against shap.TreeExplainer.

python -m bench.bench_explain --home bench/out/home [--outcome falls] [--rows 100000]

Reads the newest trained bundle of the outcome from the home's MLflow artifacts and the
latest feature snapshot from its store (rows repeated when the county is smaller than
--rows), times ModelBundle.contributions against shap.TreeExplainer(booster).shap_values on
the same encoded rows, and checks every value (and the base value) agrees to 1e-6.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from bench.common import print_json
from features.home import Home
from features.outcomes import FALLS, PRODUCT
from models.bundle import BUNDLE_FILE, ModelBundle
from models.registered import BUNDLE_ARTIFACT

TOLERANCE = 1e-6


def newest_bundle(home: Path, outcome: str) -> Path:
    """The folder of the most recently written bundle for `outcome` under mlflow-artifacts."""
    artifacts = Home(home).artifacts_dir
    found = []
    for manifest in artifacts.glob(f"**/{BUNDLE_ARTIFACT}/{BUNDLE_FILE}"):
        if json.loads(manifest.read_text(encoding="utf-8")).get("outcome") == outcome:
            found.append(manifest)
    if not found:
        raise FileNotFoundError(f"no {outcome} bundle under {artifacts}")
    return max(found, key=lambda p: p.stat().st_mtime).parent


def snapshot_rows(store: Path, rows: int) -> pd.DataFrame:
    """`rows` rows of the latest feature snapshot (repeated if the snapshot is smaller)."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        frame = con.execute(
            "SELECT * FROM feature_snapshot WHERE index_date = "
            "(SELECT max(index_date) FROM feature_snapshot) ORDER BY person_id"
        ).df()
    finally:
        con.close()
    if frame.empty:
        raise ValueError(f"{store} has no feature snapshot; run `carerisk features` first")
    take = np.resize(np.arange(len(frame)), rows)
    return frame.iloc[take].reset_index(drop=True)


def _shap_values(bundle: ModelBundle, matrix: pd.DataFrame) -> tuple[np.ndarray, float]:
    import shap

    explainer = shap.TreeExplainer(bundle.booster)
    with warnings.catch_warnings():  # shap notes its LightGBM output format changed
        warnings.filterwarnings("ignore", message="LightGBM binary classifier")
        values = np.asarray(explainer.shap_values(matrix), dtype=float)
    base = np.asarray(explainer.expected_value, dtype=float).reshape(-1)[-1]
    return values, float(base)


def run(home: Path, outcome: str, rows: int) -> dict[str, Any]:
    outcome = PRODUCT.get(outcome).name
    bundle = ModelBundle.load(newest_bundle(home, outcome))
    frame = snapshot_rows(Home(home).store_path, rows)
    matrix = bundle.matrix(frame)
    start, cpu = time.perf_counter(), time.process_time()
    native = bundle.contributions(frame)  # encoding + pred_contrib
    native_s, native_cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    bundle.booster.predict(matrix, pred_contrib=True)
    matrix_s = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    values, base = _shap_values(bundle, matrix)
    shap_s, shap_cpu = time.perf_counter() - start, time.process_time() - cpu
    width = len(bundle.features)
    value_diff = float(np.max(np.abs(native[:, :width] - values)))
    base_diff = float(np.max(np.abs(native[:, width] - base)))
    return {
        "outcome": outcome,
        "rows": rows,
        "features": width,
        "trees": bundle.booster.num_trees(),
        "native_pred_contrib_s": round(native_s, 3),
        "native_cpu_s": round(native_cpu, 3),
        "shap_cpu_s": round(shap_cpu, 3),
        "native_on_encoded_matrix_s": round(matrix_s, 3),
        "shap_tree_explainer_s": round(shap_s, 3),
        "ratio_shap_over_native": round(shap_s / native_s, 2),
        "ratio_shap_over_native_same_matrix": round(shap_s / matrix_s, 2),
        "max_abs_difference": value_diff,
        "max_abs_base_difference": base_diff,
        "tolerance": TOLERANCE,
        "agree": value_diff <= TOLERANCE and base_diff <= TOLERANCE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument(
        "--outcome",
        default=FALLS.cli_name,
        choices=[o.cli_name for o in PRODUCT] + list(PRODUCT.names()),
    )
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    result = run(args.home, args.outcome, args.rows)
    print_json(result)
    if not result["agree"]:
        raise SystemExit(f"pred_contrib and shap disagree by {result['max_abs_difference']:.3g}")


if __name__ == "__main__":
    main()
