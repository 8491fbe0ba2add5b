"""Issue 4: how close to the truth can a falls model get from the records at all?

python -m bench.falls_ceiling --home H

H holds a synthetic county (H/extract, made by `carerisk synth`) and a trained falls
challenger. The generator's falls hazard carries a latent fall-proneness z (0.55 on the
log-hazard scale, N(0, 1)) that no record shows except through the falls it causes. This
re-runs the county's monthly process with the same random numbers, so every event path is
the same, and computes a second truth with z = 0: the probability for someone whose every
other latent state (frailty, conditions, medicines, home hazards, earlier falls) is known
exactly. Its AUROC on the run's validation people is a reference for what the records can
reach; a model that infers some of z from earlier falls can beat it a little. Prints the
AUROC of the model, the logistic baseline, the truth and this reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.metrics import roc_auc_score

from bench.common import print_json
from features.home import Home
from features.outcomes import FALLS
from synthetic.truth_files import true_risk_path


def reference_truth(extract: Path) -> pd.DataFrame:
    """person_id, index_date, reference probability (z = 0) of falls for the extract's county."""
    from synthetic import process
    from synthetic.config import CountyConfig

    # the module (synthetic/__init__ exports a function of the same name)
    gen = importlib.import_module("synthetic.generate")
    manifest = json.loads((extract / "manifest.json").read_text())
    config = CountyConfig(people=int(manifest["people"]), seed=int(manifest["seed"]))

    def simulate(p, base, start_abs, months, index_months, resident0, rng):  # type: ignore[no-untyped-def]
        known = dataclasses.replace(p, z_fall=np.zeros_like(p.z_fall))
        alive, resident = np.ones(p.n, dtype=bool), resident0.copy()
        fallen, death_month = np.zeros(p.n, dtype=bool), np.full(p.n, -1, dtype=np.int64)
        events, truth, windows = process.Events(death_month=death_month), process.TruthRows(), []
        for t in range(max(index_months) + 12):
            if t in index_months:
                windows.append(process.Window.open(t, alive, resident, fallen))
            rates = process.month_rates(p, base, start_abs, t)
            reference = process.month_rates(known, base, start_abs, t)
            for w in windows:
                if w.month <= t < w.month + 12:
                    w.step(reference)
            for w in [w for w in windows if t == w.month + 11]:
                process._close(w, p, start_abs, truth)
            if t < months:
                process._step(t, rates, rng, alive, resident, fallen, death_month, events)
        return events, truth

    gen.simulate = simulate
    _, truth = gen.simulate_county(config, lambda *args: None)
    pids = pa.array(gen.person_ids(config.seed, np.arange(config.people)), type=pa.string())
    table = gen._truth_table(truth, pids, config).to_pandas()
    table = table[table["outcome"] == FALLS.name].rename(columns={"true_probability": "reference"})
    return table.assign(index_date=pd.to_datetime(table["index_date"]))[
        ["person_id", "index_date", "reference"]
    ]


def validation_predictions(home: Path) -> pd.DataFrame:
    from carerisk.settings import load_settings
    from models.registered import CHALLENGER
    from training.tracking import PREDICTIONS_ARTIFACT, client_for

    client = client_for(load_settings(home, env={}).tracking_uri)
    version = client.get_model_version_by_alias(FALLS.model_name, CHALLENGER)
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(str(version.run_id), PREDICTIONS_ARTIFACT, tmp)
        frame = pd.read_parquet(path)
    return frame.assign(index_date=pd.to_datetime(frame["index_date"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    args = parser.parse_args()
    extract = Home(args.home).extract_dir
    truth_file = true_risk_path(extract)
    if truth_file is None:
        raise SystemExit(f"{extract} holds no synthetic truth")
    truth = pd.read_parquet(truth_file)
    truth = truth[truth["outcome"] == FALLS.name]
    truth = truth.assign(index_date=pd.to_datetime(truth["index_date"]))
    keys = ["person_id", "index_date"]
    rows = (
        validation_predictions(args.home)
        .merge(truth[[*keys, "true_probability"]], on=keys, validate="one_to_one")
        .merge(reference_truth(extract), on=keys, validate="one_to_one")
    )
    columns = {
        "model": "p",
        "baseline": "p_baseline",
        "truth": "true_probability",
        "reference_without_proneness": "reference",
    }
    auroc: dict[str, Any] = {
        name: round(float(roc_auc_score(rows["y"], rows[col])), 4) for name, col in columns.items()
    }
    print_json({"people": len(rows), "events": int(rows["y"].sum()), "auroc": auroc})


if __name__ == "__main__":
    main()
