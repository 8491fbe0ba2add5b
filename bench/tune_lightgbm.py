"""Which LightGBM settings discriminate best on people held out of training?

python -m bench.tune_lightgbm --home H --outcome falls [--variants default,depth3]

H holds a loaded store (H/store.duckdb). The training set is built once with the default
index dates and cached beside the store as Parquet (named by the store's size and time, so a
store loaded again is built again); every variant is then fitted on the same
rows with the same inner split as `carerisk train` (training/fit.py), and measured by AUROC of
the raw score on the validation people at the validation date (the calibrators are monotone, so
this is the model's AUROC up to ties). The logistic baseline is fitted once, as training does.
Prints one JSON object: the baseline's AUROC and each variant's AUROC, its difference from the
baseline's with a paired bootstrap 95% interval (500 resamples of the same people), the trees
and the seconds.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from bench.common import print_json

# each variant: LightGBM parameters over the defaults of config/training.toml, plus the
# OPTIONS: "rounds" (the most boosting rounds), "refit" (boost again on the boosting and
# early-stopping rows with the early-stopped number of rounds), "monotone" (False: no
# constraints) and "from_baseline" (boost from the logistic baseline's log-odds: how much
# the trees add to the linear model; TreeSHAP alone would not explain such a model)
OPTIONS = ("rounds", "refit", "monotone", "from_baseline")
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "depth3": {"max_depth": 3, "num_leaves": 8},
    "depth2": {"max_depth": 2, "num_leaves": 4, "learning_rate": 0.1, "rounds": 3000},
    "stumps": {"max_depth": 1, "num_leaves": 2, "learning_rate": 0.2, "rounds": 5000},
    "regularised": {"min_child_samples": 400, "lambda_l2": 10.0},
    "depth3_slow": {
        "max_depth": 3,
        "num_leaves": 8,
        "learning_rate": 0.03,
        "min_child_samples": 200,
        "lambda_l2": 10.0,
        "rounds": 4000,
    },
    "advanced_monotone": {"monotone_constraints_method": "advanced"},
    "no_monotone": {"monotone": False},
    "depth3_refit": {"max_depth": 3, "num_leaves": 8, "refit": True},
    "default_refit": {"refit": True},
    "from_baseline": {"from_baseline": True},
    "depth3_from_baseline": {"max_depth": 3, "num_leaves": 8, "from_baseline": True},
}


@dataclass(frozen=True)
class Prepared:
    x: pd.DataFrame
    y: np.ndarray
    x_eval: pd.DataFrame
    y_eval: np.ndarray
    split: Any
    features: tuple[Any, ...]


def training_frames(home: Path, outcome: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from features import training_sets
    from features.home import Home
    from features.outcomes import PRODUCT
    from training.pipeline import default_index_dates

    store = Home(home).store_path
    stat = store.stat()
    cache = home / f"tune-{outcome}-{stat.st_size}-{stat.st_mtime_ns}.parquet"
    if not cache.is_file():
        chosen = PRODUCT.get(outcome)
        dates = default_index_dates(store, chosen)
        frame = training_sets.build_training_set(store, chosen, dates)
        frame.to_parquet(cache)
    return training_sets.split_temporal(pd.read_parquet(cache))


def prepare(home: Path, outcome: str, config: Any) -> Prepared:
    from features.feature_list import FEATURES
    from models.encoding import encode
    from training.fit import LABEL, inner_split

    train, validation = training_frames(home, outcome)
    features = tuple(FEATURES)
    split = inner_split(train["person_id"], config, validation["person_id"])
    evaluated = validation[split.evaluate]
    return Prepared(
        x=encode(train, features),
        y=train[LABEL].astype(int).to_numpy(),
        x_eval=encode(evaluated, features),
        y_eval=evaluated[LABEL].astype(int).to_numpy(),
        split=split,
        features=features,
    )


@dataclass(frozen=True)
class Baseline:
    model: Any  # the fitted scikit-learn Pipeline
    log_odds: np.ndarray  # on the validation people


def fit_baseline_once(data: Prepared, config: Any) -> Baseline:
    from training.fit import baseline_rows, fit_baseline

    usable = np.flatnonzero(data.split.model_rows)
    sample = usable[baseline_rows(len(usable), config.seed)]
    model = fit_baseline(data.x.iloc[sample], data.y[sample], data.features)
    return Baseline(model, np.asarray(model.decision_function(data.x_eval)))


def variant_params(data: Prepared, outcome: str, config: Any, variant: dict[str, Any]) -> dict:
    from training.fit import lightgbm_params

    params = lightgbm_params(data.features, outcome, config)
    params.update({k: v for k, v in variant.items() if k not in OPTIONS})
    if variant.get("monotone") is False:
        params.pop("monotone_constraints", None)
    return params


def dataset(data: Prepared, rows: np.ndarray, base: Baseline | None, **kw: Any) -> lgb.Dataset:
    """Rows of the training matrix; boosting starts from the baseline's log-odds if given."""
    x = data.x[rows]
    init = base.model.decision_function(x) if base is not None else None
    return lgb.Dataset(x, data.y[rows], init_score=init, **kw)


def boosted_scores(
    data: Prepared, outcome: str, config: Any, variant: dict[str, Any], baseline: Baseline
) -> tuple[np.ndarray, int]:
    """The variant's log-odds on the validation people, and its early-stopped trees."""
    from models.encoding import categorical_indices

    params = variant_params(data, outcome, config, variant)
    categorical = categorical_indices(data.features)
    base = baseline if variant.get("from_baseline") else None
    train_set = dataset(data, data.split.fit, base, categorical_feature=categorical)
    stop_set = dataset(data, data.split.stop, base, reference=train_set)
    booster = lgb.train(
        params, train_set, num_boost_round=variant.get("rounds", config.lightgbm.n_estimators),
        valid_sets=[stop_set],
        callbacks=[lgb.early_stopping(config.lightgbm.early_stopping_rounds, verbose=False)],
    )  # fmt: skip
    trees = int(booster.best_iteration)
    if variant.get("refit"):
        both = data.split.fit | data.split.stop
        refit_set = dataset(data, both, base, categorical_feature=categorical)
        booster = lgb.train(params, refit_set, num_boost_round=trees)
    score = np.asarray(booster.predict(data.x_eval, raw_score=True, num_iteration=trees))
    return (score + baseline.log_odds if base is not None else score), trees


def fit_variant(
    data: Prepared, outcome: str, config: Any, variant: dict[str, Any], baseline: Baseline
) -> dict:
    from training.validation_metrics import paired_bootstrap_auroc_difference

    started = time.perf_counter()
    score, trees = boosted_scores(data, outcome, config, variant, baseline)
    seconds = time.perf_counter() - started
    diff, low, high = paired_bootstrap_auroc_difference(
        data.y_eval, score, baseline.log_odds, replicates=500, confidence=0.95, seed=config.seed
    )
    return {
        "auroc": round(float(roc_auc_score(data.y_eval, score)), 4),
        "minus_baseline": round(diff, 4),
        "minus_baseline_95ci": [round(low, 4), round(high, 4)],
        "trees": trees,
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> None:
    from features.outcomes import PRODUCT
    from training.config import DEFAULT_CONFIG_PATH, TrainingConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--outcome", choices=PRODUCT.names(), required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    config = TrainingConfig.load(DEFAULT_CONFIG_PATH)
    data = prepare(args.home, args.outcome, config)
    baseline = fit_baseline_once(data, config)
    result: dict[str, Any] = {
        "outcome": args.outcome,
        "validation_people": len(data.y_eval),
        "validation_events": int(data.y_eval.sum()),
        "baseline_auroc": round(float(roc_auc_score(data.y_eval, baseline.log_odds)), 4),
        "variants": {},
    }
    for name in args.variants.split(","):
        result["variants"][name] = fit_variant(data, args.outcome, config, VARIANTS[name], baseline)
        print(name, result["variants"][name], flush=True)
    print_json(result)


if __name__ == "__main__":
    main()
