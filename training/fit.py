"""Fitting one outcome: LightGBM with early stopping, a calibrator, and a logistic baseline."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.feature_list import Feature
from features.outcomes import Outcome
from features.training_sets import WEIGHT, sample_sizes
from models.bundle import ModelBundle
from models.calibration import choose_calibrator, fit_recalibration
from models.encoding import categorical_indices, encode
from training.config import TrainingConfig
from training.validation_metrics import validation_metrics

LABEL = "label"
KEYS = ("person_id", "index_date")


class TrainingError(ValueError):
    """The training data cannot be used as given."""


@dataclass(frozen=True)
class InnerSplit:
    """Each person (not row) belongs to one group, at every date: boosting, early stopping,
    calibration, or validation. Masks over the training frame's rows (validation people's
    training rows are used for nothing) and over the validation frame's rows (calibration
    people recalibrate there; validation people are evaluated; the rest are not used, since
    their labels overlap the labels the model was fitted on)."""

    fit: np.ndarray
    stop: np.ndarray
    calibrate: np.ndarray
    recalibrate: np.ndarray
    evaluate: np.ndarray

    @property
    def model_rows(self) -> np.ndarray:
        """Training rows of everyone but the validation people."""
        return self.fit | self.stop | self.calibrate

    @property
    def boosted_rows(self) -> np.ndarray:
        """The rows the final booster is fitted on: boosting and early stopping."""
        return self.fit | self.stop


@dataclass(frozen=True)
class TrainedModels:
    bundle: ModelBundle
    baseline: Pipeline
    metrics: dict[str, dict[str, float]]  # {"model": {...}, "baseline": {...}}
    validation_predictions: pd.DataFrame  # person_id, index_date, y, p, p_baseline
    best_iteration: int
    split_sizes: dict[str, int]


BASELINE_MAX_ROWS = 400_000  # training rows the logistic baseline is fitted on, at most
MIN_CALIBRATION_EVENTS = 40  # below this, calibrate on held-out people at every date


def fit(
    train_frame: pd.DataFrame,
    validation_frame: pd.DataFrame,
    features: Sequence[Feature],
    outcome: Outcome,
    config: TrainingConfig,
) -> TrainedModels:
    """Train the model, its calibrator and the baseline; measure both on the validation frame."""
    features = tuple(features)
    _check_frame(train_frame, features, "training")
    _check_frame(validation_frame, features, "validation")
    split = inner_split(train_frame["person_id"], config, validation_frame["person_id"])
    x = encode(train_frame, features)
    y = train_frame[LABEL].astype(int).to_numpy()
    w = row_weights(train_frame)
    rows = calibration_rows(train_frame, split)
    _check_whole(train_frame[rows], "calibration rows of the training")
    _check_whole(validation_frame, "validation")
    stopped = fit_booster(x, y, split, features, outcome.name, config, w)
    rounds = int(stopped.best_iteration) or stopped.current_iteration()
    booster = refit_booster(stopped, x, y, split, features, outcome.name, config, rounds, w)
    model_text = booster.model_to_string(num_iteration=rounds)
    held_out = booster.predict(x[rows], raw_score=True, num_iteration=rounds)
    held_y = y[rows]
    calibrator = choose_calibrator(
        np.asarray(held_out, dtype=float),
        held_y,
        min_positives_isotonic=config.calibration.min_positives_isotonic,
        metric=config.calibration.metric,
        seed=config.seed,
    )
    bundle = ModelBundle(
        model_text=model_text,
        calibrator=calibrator,
        features=features,
        outcome=outcome.name,
        bands=config.bands_for(outcome),
        metadata=_metadata(train_frame, rounds, config, split, len(held_y)),
    )
    bundle = recalibrated(
        bundle, validation_frame[split.recalibrate], validation_frame[~split.evaluate], config
    )
    usable = np.flatnonzero(split.boosted_rows if config.lightgbm.refit else split.fit)
    sample = usable[baseline_rows(len(usable), config.seed)]
    baseline = fit_baseline(x.iloc[sample], y[sample], features, None if w is None else w[sample])
    evaluated = validation_frame[split.evaluate]
    predictions = _validation_predictions(evaluated, bundle, baseline)
    metrics = {
        "model": validation_metrics(predictions["y"].to_numpy(), predictions["p"].to_numpy()),
        "baseline": validation_metrics(
            predictions["y"].to_numpy(), predictions["p_baseline"].to_numpy()
        ),
    }
    return TrainedModels(
        bundle=bundle,
        baseline=baseline,
        metrics=metrics,
        validation_predictions=predictions,
        best_iteration=rounds,
        split_sizes=_sizes(split, len(evaluated), len(held_y)),
    )


def recalibrated(
    bundle: ModelBundle, held_out: pd.DataFrame, everyone: pd.DataFrame, config: TrainingConfig
) -> ModelBundle:
    """The bundle with its probabilities moved to the validation date: the slope from the
    calibration people there, the level from everyone but the validation people (never the
    people the validation metrics are measured on). With one quarter of the events, the
    calibration people alone set a level that was 13% low on a 100k county (seed 3)."""
    if held_out.empty:
        return bundle
    day = pd.Timestamp(pd.to_datetime(held_out["index_date"]).max()).date().isoformat()
    recalibration = fit_recalibration(
        bundle.predict(held_out),
        held_out[LABEL].astype(int).to_numpy(),
        index_date=day,
        min_events=config.calibration.recalibration_min_events,
        min_events_slope=config.calibration.recalibration_slope_min_events,
        level=(bundle.predict(everyone), everyone[LABEL].astype(int).to_numpy()),
    )
    return replace(bundle, calibrator=bundle.calibrator.with_recalibration(recalibration))


def calibration_rows(train_frame: pd.DataFrame, split: InnerSplit) -> np.ndarray:
    """Held-out people at the latest training index date: the rows whose history is most like
    the validation date's and the service's (older index dates see truncated lookbacks, so
    their risk level differs); all held-out rows when that date has too few events.
    `recalibrated` then moves this calibrator to the validation date (a refit of isotonic or
    Platt on that date's held-out people alone was tried: too noisy, slopes 1.18 and 1.11)."""
    dates = pd.to_datetime(train_frame["index_date"]).to_numpy()
    latest = split.calibrate & (dates == dates.max())
    events = int(train_frame[LABEL].to_numpy()[latest].sum())
    return latest if events >= MIN_CALIBRATION_EVENTS else split.calibrate


def row_weights(frame: pd.DataFrame) -> np.ndarray | None:
    """The rows' sampling weights (features/training_sets.py NegativeSampling), or None when
    the frame is not sampled."""
    if WEIGHT not in frame:
        return None
    w = frame[WEIGHT].to_numpy(dtype=float)
    bad = ~(np.isfinite(w) & (w > 0))
    if bad.any():
        row = frame.index[bad][0]
        raise TrainingError(f"training frame column {WEIGHT}: row {row} has {w[bad][0]!r}")
    return w


def _check_whole(frame: pd.DataFrame, name: str) -> None:
    """The calibrator, the recalibration and the validation metrics take no weights: their
    rows must be whole (weight 1), as the pipeline's sampling keeps them."""
    if WEIGHT in frame and not np.all(frame[WEIGHT].to_numpy(dtype=float) == 1.0):
        raise TrainingError(f"the {name} rows must not be sampled (column {WEIGHT} is not 1)")


def _check_frame(frame: pd.DataFrame, features: Sequence[Feature], name: str) -> None:
    needed = [*KEYS, LABEL, *(f.name for f in features)]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise TrainingError(f"{name} frame lacks column(s): {', '.join(missing)}")
    labels = frame[LABEL]
    bad = ~labels.isin([0, 1, True, False])
    if bad.any():
        row = frame.index[bad.to_numpy()][0]
        raise TrainingError(
            f"{name} frame column {LABEL} must be 0/1; row {row} has {labels.loc[row]!r}"
        )
    if labels.astype(int).nunique() < 2:
        raise TrainingError(f"{name} frame column {LABEL} holds only one class")


def inner_split(
    person_ids: pd.Series, config: TrainingConfig, validation_ids: pd.Series | None = None
) -> InnerSplit:
    """Each person's group, drawn once over the people of both frames. Validation people are
    never fitted on, so their validation-date labels (whose 12 months overlap the later
    training dates' labels) are unseen when the model is measured on them. They are chosen by
    a fixed hash of the person id, not the seed: every run and every seed is measured on the
    same people, so the gate compares a challenger with its champion on the same people. The
    other groups come from a hash of the id keyed by the seed: one person's draw never depends
    on who else is in the frame."""
    train_ids = person_ids.astype(str).to_numpy()
    val_ids = validation_ids.astype(str).to_numpy() if validation_ids is not None else train_ids[:0]
    people = pd.Index(np.unique(np.concatenate([train_ids, val_ids])))
    by_person = pd.Series(person_groups(people, config), index=people)
    g, g_val = by_person.reindex(train_ids).to_numpy(), by_person.reindex(val_ids).to_numpy()
    return InnerSplit(
        fit=g == "fit",
        stop=g == "stop",
        calibrate=g == "calibrate",
        recalibrate=g_val == "calibrate",
        evaluate=g_val == "validate",
    )


def person_groups(people: pd.Index, config: TrainingConfig) -> np.ndarray:
    """Each person's group (validate, calibrate, stop or fit) from hashes of their id alone."""
    held = people_hash_uniform(people) < config.validation.people_fraction
    draw = people_hash_uniform(people, seed=config.seed)
    return np.select(
        [
            held,
            draw < config.calibration.holdout_fraction,
            draw < config.calibration.holdout_fraction + config.lightgbm.inner_validation_fraction,
        ],
        ["validate", "calibrate", "stop"],
        default="fit",
    )


def calibration_people(config: TrainingConfig) -> Callable[[pd.Series], np.ndarray]:
    """Whether each person id belongs to the calibration people: the sampled training set
    keeps them whole (features/training_sets.py NegativeSampling.whole)."""

    def whole(person_ids: pd.Series) -> np.ndarray:
        people = pd.Index(person_ids.astype(str).to_numpy())
        return np.asarray(person_groups(people, config) == "calibrate")

    return whole


def people_hash_uniform(people: pd.Index, seed: int | None = None) -> np.ndarray:
    """A number in [0, 1) per person id from pandas' SipHash (with a key made from `seed`, or
    pandas' fixed key): the same person always gets the same number, whatever the frame or
    extract, so adding or removing people never moves anyone else between groups."""
    key = None if seed is None else f"{seed % 10**16:016d}"
    series = pd.Series(people, dtype=str)
    hashed = (
        pd.util.hash_pandas_object(series, index=False, hash_key=key)
        if key is not None
        else pd.util.hash_pandas_object(series, index=False)
    ).to_numpy()
    return (hashed >> np.uint64(11)).astype(np.float64) / float(2**53)


def monotone_constraints(features: Sequence[Feature], outcome: str) -> list[int]:
    """+1/-1 where a feature is constrained and has a stated direction; 0 otherwise."""
    return [
        f.direction_for(outcome) if f.constrain and f.kind != "categorical" else 0 for f in features
    ]


def lightgbm_params(
    features: Sequence[Feature], outcome: str, config: TrainingConfig
) -> dict[str, Any]:
    lgbm = config.lightgbm
    params: dict[str, Any] = {
        "objective": "binary",
        "num_leaves": lgbm.num_leaves,
        "max_depth": lgbm.max_depth,
        "learning_rate": lgbm.learning_rate,
        "min_child_samples": lgbm.min_child_samples,
        "feature_fraction": lgbm.feature_fraction,
        "lambda_l2": lgbm.lambda_l2,
        "deterministic": lgbm.deterministic,
        "force_col_wise": lgbm.force_col_wise,
        "num_threads": lgbm.num_threads,
        "seed": config.seed,
        "verbosity": -1,
    }
    constraints = monotone_constraints(features, outcome)
    if lgbm.monotone_constraints and any(constraints):
        params["monotone_constraints"] = constraints
    return params


def fit_booster(
    x: pd.DataFrame,
    y: np.ndarray,
    split: InnerSplit,
    features: Sequence[Feature],
    outcome: str,
    config: TrainingConfig,
    w: np.ndarray | None = None,
) -> lgb.Booster:
    """Early-stopped on the inner stopping rows; with weights (a sampled training set), both
    the boosting and the stopping metric are weighted."""
    categorical = categorical_indices(features)
    for name, mask in (("boosting", split.fit), ("early-stopping", split.stop)):
        if len(np.unique(y[mask])) < 2:
            raise TrainingError(f"the inner {name} rows hold only one class; too few rows")
    train_set = lgb.Dataset(
        x[split.fit], y[split.fit], weight=_part(w, split.fit), categorical_feature=categorical
    )
    stop_set = lgb.Dataset(
        x[split.stop],
        y[split.stop],
        weight=_part(w, split.stop),
        categorical_feature=categorical,
        reference=train_set,
    )
    return lgb.train(
        lightgbm_params(features, outcome, config),
        train_set,
        num_boost_round=config.lightgbm.n_estimators,
        valid_sets=[stop_set],
        valid_names=["inner"],
        callbacks=[lgb.early_stopping(config.lightgbm.early_stopping_rounds, verbose=False)],
    )


def refit_booster(
    stopped: lgb.Booster,
    x: pd.DataFrame,
    y: np.ndarray,
    split: InnerSplit,
    features: Sequence[Feature],
    outcome: str,
    config: TrainingConfig,
    rounds: int,
    w: np.ndarray | None = None,
) -> lgb.Booster:
    """The final booster: with `refit`, boosted again for the early-stopped number of rounds on
    the boosting and early-stopping rows together (a quarter more people than boosting alone:
    measured at 100k, 0.005 AUROC on held-out people); else the early-stopped booster itself."""
    if not config.lightgbm.refit:
        return stopped
    rows = split.boosted_rows
    categorical = categorical_indices(features)
    data = lgb.Dataset(x[rows], y[rows], weight=_part(w, rows), categorical_feature=categorical)
    return lgb.train(lightgbm_params(features, outcome, config), data, num_boost_round=rounds)


def _part(w: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if w is None else w[rows]


def baseline_rows(n: int, seed: int, most: int = BASELINE_MAX_ROWS) -> np.ndarray:
    """All rows, or a seeded sample of `most` of them in their order: a logistic regression
    on 75 inputs is settled long before that, and its scaled and imputed copies of every row
    set the peak memory of training at county scale (12 GiB for complex dependency)."""
    if n <= most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=most, replace=False))


def fit_baseline(
    x: pd.DataFrame, y: np.ndarray, features: Sequence[Feature], w: np.ndarray | None = None
) -> Pipeline:
    """Logistic regression on the same matrix: impute + scale numerics, one-hot categoricals;
    weighted by `w` (a sampled training set's weights) when given."""
    categorical = [f.name for f in features if f.kind == "categorical"]
    numeric = [f.name for f in features if f.kind != "categorical"]
    numeric_steps = Pipeline(
        [
            # a feature the source cannot give is empty in every row (features.coverage):
            # kept, as a constant, so the baseline sees the bundle's columns
            (
                "impute",
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            ),
            ("scale", StandardScaler()),
        ]
    )
    categorical_steps = Pipeline(
        [
            # a code the source never carries (an imported extract's ethnicity) is empty in
            # every row: kept, as the one level "unknown"
            (
                "impute",
                SimpleImputer(strategy="constant", fill_value=-1.0, keep_empty_features=True),
            ),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    columns = ColumnTransformer(
        [("numeric", numeric_steps, numeric), ("categorical", categorical_steps, categorical)]
    )
    model = Pipeline([("columns", columns), ("logistic", LogisticRegression(max_iter=2000))])
    if w is None:
        model.fit(x, y)
    else:
        model.fit(x, y, logistic__sample_weight=w)
    return model


def baseline_coefficients(baseline: Pipeline) -> str:
    """The baseline's coefficients as plain JSON, beside the skops file."""
    names = baseline.named_steps["columns"].get_feature_names_out()
    logistic = baseline.named_steps["logistic"]
    coefficients = dict(zip(names.tolist(), logistic.coef_[0].tolist(), strict=True))
    payload = {"intercept": float(logistic.intercept_[0]), "coefficients": coefficients}
    return json.dumps(payload, indent=2)


def _validation_predictions(
    frame: pd.DataFrame, bundle: ModelBundle, baseline: Pipeline
) -> pd.DataFrame:
    matrix = encode(frame, bundle.features)
    return pd.DataFrame(
        {
            "person_id": frame["person_id"].astype(str).to_numpy(),
            "index_date": pd.to_datetime(frame["index_date"]).to_numpy(),
            "y": frame[LABEL].astype(int).to_numpy(),
            "p": bundle.predict(frame),
            "p_baseline": baseline.predict_proba(matrix)[:, 1],
        }
    )


def _metadata(
    frame: pd.DataFrame,
    rounds: int,
    config: TrainingConfig,
    split: InnerSplit,
    calibration_rows: int,
) -> dict[str, Any]:
    dates = pd.to_datetime(frame["index_date"])
    out: dict[str, Any] = {
        "config_version": config.config_version,
        "seed": config.seed,
        "best_iteration": rounds,
        "refit": config.lightgbm.refit,
        "lightgbm_version": lgb.__version__,
        "training_rows": len(frame),
        "training_index_dates": sorted({d.date().isoformat() for d in dates}),
        "inner_split": _sizes(split, 0, calibration_rows),
    }
    if WEIGHT in frame:
        out["sampling"] = {
            "negative_fraction": config.sampling.negative_fraction,
            "note": "fitted on every positive and a weighted sample of negative person-dates "
            "at the training dates; calibration and validation rows whole",
            "by_index_date": sample_sizes(frame),
        }
    return out


def _sizes(split: InnerSplit, validation_rows: int, calibration_rows: int) -> dict[str, int]:
    sizes = {
        "boosting": int(split.fit.sum()),
        "early_stopping": int(split.stop.sum()),
        "calibration": calibration_rows,
        "recalibration": int(split.recalibrate.sum()),
        "unused_validation_rows": int((~(split.recalibrate | split.evaluate)).sum()),
    }
    if validation_rows:
        sizes["validation"] = validation_rows
    return sizes
