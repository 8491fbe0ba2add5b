"""Falls trained on one county loaded directly and loaded through OMOP (`synth`'s county
written as a CDM 5.4 DuckDB, imported back and loaded), and a third time on the direct store
with the features the import leaves missing set missing there too: the paired AUROC
differences of the three LightGBM models and of their logistic baselines, on the same
validation people. Writes the `round_trip` section of bench/RESULTS.md.

python -m bench.bench_round_trip --out /tmp/trip --people 20000

The county is generated once; its OMOP form is written from the same extract. Training is
`carerisk train`'s: the default config, index dates and features (no MLflow logging), on the
direct store's index dates for all three. Before training, the two stores' training sets are
checked to hold the same person-dates with the same labels, and every feature is compared
between the direct set (import-missing features set missing) and the imported set.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import machine, markdown_table, print_json, shell_text
from bench.results import RESULTS, write_section
from features.codes import AMBULANCE_FALL_CATEGORIES
from features.coverage import read_store_coverage
from features.definitions import lit, residential_now
from features.engines import open_sources
from features.feature_list import FEATURES
from features.labels import add_months
from features.outcomes import FALLS
from features.store import load_extract
from features.training_sets import build_training_set, split_temporal
from importers.omop import import_omop
from synthetic.config import CountyConfig
from synthetic.generate import generate
from synthetic.omop import OMOP_FILE, write_omop
from training.config import TrainingConfig
from training.fit import KEYS, LABEL, fit
from training.pipeline import default_index_dates
from training.validation_metrics import paired_bootstrap_auroc_difference

MODELS = {"p": "LightGBM", "p_baseline": "logistic baseline"}
SETS = {
    "direct": "the county loaded directly",
    "without": "direct, with the features the import leaves missing set missing",
    "relabelled": "the import's features on the direct store's person-dates and labels",
    "back": "the county written by synth --format omop, imported and loaded",
    "reseeded": "direct, trained with the next seed",
}
# (new, old, labels, meaning): AUROC(new) - AUROC(old) on the same validation people, measured
# against the direct store's labels or the import's
PAIRS = (
    ("back", "direct", "direct", "import minus direct: all that the round trip loses"),
    ("back", "direct", "back", "the same, against the import's own labels"),
    ("without", "direct", "direct", "direct-without-absent minus direct: the absent features"),
    ("relabelled", "without", "direct", "the import's features minus direct-without-absent"),
    ("back", "relabelled", "direct", "import minus its features on the direct cohort and labels"),
    ("reseeded", "direct", "direct", "direct with the next seed minus direct: the seed's noise"),
)
LABEL_COLUMNS = (LABEL, "died_before_event", "follow_up_days")


def stores(out: Path, people: int, seed: int) -> tuple[Path, Path]:
    """The county loaded directly, and through OMOP (import, then load)."""
    generate(CountyConfig(people=people, seed=seed), out / "direct")
    county = json.loads((out / "direct" / "manifest.json").read_text())
    write_omop(out / "direct", out / OMOP_FILE, county["extract_date"], county["start"])
    import_omop(str(out / OMOP_FILE), out / "back", person_ids="person_source_value")
    for name in ("direct", "back"):
        load_extract(out / name, out / f"{name}.duckdb")
    return out / "direct.duckdb", out / "back.duckdb"


def same_cohort(direct: pd.DataFrame, back: pd.DataFrame) -> dict[str, Any]:
    """Whether the two training sets hold the same person-dates with the same labels; the
    counts either way."""
    keys = list(KEYS)
    merged = direct[[*keys, LABEL]].merge(
        back[[*keys, LABEL]], on=keys, how="outer", suffixes=("_direct", "_back"), indicator=True
    )
    both = merged[merged["_merge"] == "both"]
    lost = int(((both[f"{LABEL}_direct"] == 1) & (both[f"{LABEL}_back"] == 0)).sum())
    gained = int(((both[f"{LABEL}_direct"] == 0) & (both[f"{LABEL}_back"] == 1)).sum())
    only_back = merged["_merge"] == "right_only"
    return {
        "person_dates": {"direct": len(direct), "back": len(back)},
        "only_direct": int((merged["_merge"] == "left_only").sum()),
        "only_back": int(only_back.sum()),
        "only_back_events": int(merged.loc[only_back, f"{LABEL}_back"].sum()),
        "events_lost": lost,
        "events_gained": gained,
        "events": {"direct": int(direct[LABEL].sum()), "back": int(back[LABEL].sum())},
        "same": bool(not (merged["_merge"] != "both").any() and lost == gained == 0),
    }


def why_they_differ(
    store: Path, direct: pd.DataFrame, back: pd.DataFrame, dates: list[date]
) -> dict[str, int]:
    """Of the person-dates only the import holds, how many the direct store has in a care home
    at the date (the cohort leaves them out, from social care); of the falls lost through the
    import, how many had an ambulance fall call-out in the horizon (absent through OMOP)."""
    keys = list(KEYS)
    merged = direct[[*keys, LABEL]].merge(back[[*keys, LABEL]], on=keys, how="right",
                                          suffixes=("_direct", "_back"))  # fmt: skip
    extra = merged[merged[f"{LABEL}_direct"].isna()]
    lost = merged[(merged[f"{LABEL}_direct"] == 1) & (merged[f"{LABEL}_back"] == 0)]
    found = {"only_back_in_care_home": 0, "lost_with_ambulance_fall": 0}
    with open_sources(store) as src:
        amb = src["ambulance_incident"]
        for day in dates:
            stamp = pd.Timestamp(day)
            care = _ids(residential_now(src, day))
            end = add_months(day, FALLS.horizon_months)
            window = (amb.incident_date >= lit(day)) & (amb.incident_date < lit(end))
            falls = amb.filter(amb.category.isin(sorted(AMBULANCE_FALL_CATEGORIES)) & window)
            fell = _ids(falls.select("person_id").distinct())
            at = extra[extra["index_date"] == stamp]["person_id"]
            found["only_back_in_care_home"] += int(at.isin(care).sum())
            gone = lost[lost["index_date"] == stamp]["person_id"]
            found["lost_with_ambulance_fall"] += int(gone.isin(fell).sum())
    return found


def _ids(table: Any) -> set[str]:
    return {str(p) for p in table.to_pyarrow().column("person_id").to_pylist()}


def relabelled(direct: pd.DataFrame, back: pd.DataFrame) -> pd.DataFrame:
    """The imported training set cut to the direct set's person-dates, in its order, with the
    direct set's labels: it differs from the direct set in its features only."""
    keys = list(KEYS)
    out = direct[keys].merge(back.drop(columns=list(LABEL_COLUMNS)), on=keys, how="left")
    if out["age_years"].isna().any():
        raise SystemExit("the imported training set lacks some of the direct set's person-dates")
    for col in LABEL_COLUMNS:
        out[col] = direct[col].to_numpy()
    return out


def without_absent(direct: pd.DataFrame, back: pd.DataFrame, absent: list[str]) -> pd.DataFrame:
    """The direct training set with the features the import leaves missing taken as the
    import has them (missing for everyone, the import's dtype); `back` is aligned with it."""
    out = direct.copy()
    for name in absent:
        out[name] = back[name].to_numpy()
        out[name] = out[name].astype(back[name].dtype)
    return out


def differing_features(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, int]:
    """Feature -> rows whose values differ (missing equals missing) between two aligned sets;
    a feature whose dtype differs counts every row."""
    out = {}
    for f in FEATURES:
        x, y = a[f.name], b[f.name]
        if x.dtype != y.dtype:
            out[f"{f.name} (dtype {x.dtype} v {y.dtype})"] = len(x)
            continue
        same = (x == y) | (x.isna() & y.isna())
        rows = int((~same.fillna(False).to_numpy(dtype=bool)).sum())
        if rows:
            out[f.name] = rows
    return out


def validation_predictions(frame: pd.DataFrame, config: TrainingConfig) -> pd.DataFrame:
    """Falls trained on one training set: the validation people's labels and both risks."""
    train, validation = split_temporal(frame)
    return fit(train, validation, FEATURES, FALLS, config).validation_predictions


def compare(predictions: dict[str, pd.DataFrame], config: TrainingConfig) -> list[dict[str, Any]]:
    """The paired AUROC differences of PAIRS, on the validation people all the models share."""
    keys = list(KEYS)
    shared = predictions["direct"][keys]
    for name, frame in predictions.items():
        renamed = {m: f"{m}_{name}" for m in [*MODELS, "y"]}
        shared = shared.merge(frame[[*keys, "y", *MODELS]].rename(columns=renamed), on=keys)
    out = []
    for new, old, labels, meaning in PAIRS:
        for model, title in MODELS.items():
            a, b = shared[f"{model}_{new}"].to_numpy(), shared[f"{model}_{old}"].to_numpy()
            diff, low, high = paired_bootstrap_auroc_difference(
                shared[f"y_{labels}"].to_numpy(), a, b,
                replicates=config.gate.bootstrap_replicates, confidence=config.gate.confidence,
                seed=config.seed,
            )  # fmt: skip
            out.append({"comparison": meaning, "model": title, "labels": labels,
                        "difference": round(diff, 4), "interval": [round(low, 4), round(high, 4)],
                        "agree": bool(low <= 0 <= high),
                        "identical_risks": bool(np.array_equal(a, b))})  # fmt: skip
    return out


def run(out: Path, people: int, seed: int) -> dict[str, Any]:
    clock = time.perf_counter()
    direct_store, back_store = stores(out, people, seed)
    config = TrainingConfig.load()
    dates = default_index_dates(direct_store, FALLS)
    direct = build_training_set(direct_store, FALLS, dates)
    back = build_training_set(back_store, FALLS, dates)
    absent = read_store_coverage(back_store).missing_features(FEATURES)
    aligned = relabelled(direct, back)
    without = without_absent(direct, aligned, absent)
    sets = {"direct": direct, "without": without, "relabelled": aligned, "back": back}
    predictions = {name: validation_predictions(frame, config) for name, frame in sets.items()}
    reseeded = config.model_copy(update={"seed": config.seed + 1})
    predictions["reseeded"] = validation_predictions(direct, reseeded)
    return {
        "people": people,
        "seed": seed,
        "index_dates": [d.isoformat() for d in dates],
        "index_dates_of_the_import": [
            d.isoformat() for d in default_index_dates(back_store, FALLS)
        ],
        "cohort": {
            **same_cohort(direct, back),
            **why_they_differ(direct_store, direct, back, dates),
        },  # fmt: skip
        "absent_features": absent,
        "features_differing": differing_features(without, aligned),
        "validation": {
            name: {"person_dates": len(p), "events": int(p["y"].sum())}
            for name, p in predictions.items()
        },
        "comparisons": compare(predictions, config),
        "seconds": round(time.perf_counter() - clock, 1),
        "machine": machine(),
    }


def _interval(c: dict[str, Any]) -> str:
    low, high = c["interval"]
    return f"{c['difference']:+.4f} ({low:+.4f} to {high:+.4f})"


def section(command: str, result: dict[str, Any]) -> str:
    """The `round_trip` section of bench/RESULTS.md."""
    rows = [[c["comparison"], c["model"], c["labels"], _interval(c), _yes(c["agree"]),
             _yes(c["identical_risks"])] for c in result["comparisons"]]  # fmt: skip
    headers = ["comparison (AUROC new minus old)", "model", "labels",
               "difference (95% paired interval)", "interval holds 0", "same risks"]  # fmt: skip
    sets = "; ".join(f"**{name}**: {words}" for name, words in SETS.items())
    c = result["cohort"]
    differing = ", ".join(f"{n} ({r:,} rows)" for n, r in result["features_differing"].items())
    checks = (
        f"The two stores hold the same cohort and labels: {_yes(c['same'])}. Person-dates: "
        f"{c['person_dates']['direct']:,} direct, {c['person_dates']['back']:,} through the "
        f"import ({c['only_back']:,} only through the import, {c['only_back_events']:,} of "
        f"them with a fall, {c['only_back_in_care_home']:,} of them in residential "
        f"or nursing care at the date by the direct store's social care; "
        f"{c['only_direct']:,} only direct). Events: {c['events']['direct']:,} direct, "
        f"{c['events']['back']:,} through the import; on the person-dates both hold, "
        f"{c['events_lost']:,} falls are lost ({c['lost_with_ambulance_fall']:,} of "
        f"them with an ambulance fall call-out in the horizon) and {c['events_gained']:,} "
        "gained."
    )
    validation = "; ".join(
        f"{name} {v['person_dates']:,} person-dates, {v['events']:,} falls"
        for name, v in result["validation"].items()
    )
    return (
        "## OMOP round trip (bench/bench_round_trip.py)\n\n"
        f"`{command}` (machine: {json.dumps(result['machine'])}; {result['seconds']} s). "
        f"Falls, the default training config, on the direct store's index dates "
        f"{', '.join(result['index_dates'])} (the imported store's own: "
        f"{', '.join(result['index_dates_of_the_import'])}). The models: {sets}. "
        "Each comparison is measured on the validation people all the models share.\n\n"
        f"{checks}\n\nValidation: {validation}.\n\n{markdown_table(headers, rows)}\n\n"
        f"Features the import leaves missing ({len(result['absent_features'])}): "
        f"{', '.join(result['absent_features'])}.\n\n"
        f"Features that differ between direct-without-absent and the import's features on "
        f"the same person-dates: {differing or 'none'}.\n"
    )


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--results", type=Path, default=RESULTS, help="the file to write into")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    result = run(args.out, args.people, args.seed)
    (args.out / "round_trip.json").write_text(json.dumps(result, indent=2) + "\n")
    command = shell_text(["python", "-m", "bench.bench_round_trip", *sys.argv[1:]])
    write_section("round_trip", section(command, result), args.results)
    print_json(result)


if __name__ == "__main__":
    main()
