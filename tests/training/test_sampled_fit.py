"""Fitting on a weighted sample of negative person-dates. The weights reach
LightGBM (boosting and early stopping) and the baseline; the calibration people and the
validation rows stay whole; the bundle says it was fitted on a sample."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from evaluation.inputs import FairnessLimits
from evaluation.report import evaluate, render_html
from features.outcomes import FALLS
from features.training_sets import WEIGHT, NegativeSampling
from models.encoding import encode
from tests import live
from tests.evaluation.conftest import make_input
from tests.models.frames import make_frame, small_features, split_latest
from training.config import ConfigError, TrainingConfig
from training.evaluation_run import sample_words
from training.fit import TrainedModels, TrainingError, calibration_people, fit, inner_split

FRACTION = 0.2


def sampled(train: pd.DataFrame, config: TrainingConfig, whole: bool = True) -> pd.DataFrame:
    """`train` sampled as features/training_sets.py samples a date: every positive, the
    calibration people whole (when `whole`), a share of the other negatives weighted."""
    sampling = NegativeSampling(
        FRACTION, config.seed, whole=calibration_people(config) if whole else None
    )
    parts = []
    for day, part in train.groupby("index_date"):
        weight = sampling.weights(part, pd.Timestamp(day).date())
        parts.append(part.assign(**{WEIGHT: weight}).dropna(subset=[WEIGHT]))
    return pd.concat(parts).sort_index().reset_index(drop=True)


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return split_latest(make_frame(people=8000, seed=11))


@pytest.fixture(scope="module")
def fitted(
    frames: tuple[pd.DataFrame, pd.DataFrame], config: TrainingConfig
) -> tuple[TrainedModels, pd.DataFrame]:
    train, validation = frames
    sample = sampled(train, config)
    cfg = config.with_negative_fraction(FRACTION)
    return fit(sample, validation.assign(**{WEIGHT: 1.0}), small_features(), FALLS, cfg), sample


def _raw_mean(trained: TrainedModels, frame: pd.DataFrame) -> float:
    """The booster's own probability (no calibrator) averaged over `frame`."""
    booster = lgb.Booster(model_str=trained.bundle.model_text)
    return float(np.mean(booster.predict(encode(frame, trained.bundle.features))))


def test_the_weights_reach_the_booster_and_the_baseline(
    frames: tuple[pd.DataFrame, pd.DataFrame],
    fitted: tuple[TrainedModels, pd.DataFrame],
    config: TrainingConfig,
) -> None:
    train, validation = frames
    trained, sample = fitted
    assert len(sample) < 0.5 * len(train) and sample["label"].sum() == train["label"].sum()
    rate = train["label"].mean()
    # weighted, the booster's own level and the baseline's are the population's
    assert _raw_mean(trained, train) == pytest.approx(rate, rel=0.15)
    predictions = trained.validation_predictions
    assert predictions["p_baseline"].mean() == pytest.approx(predictions["y"].mean(), rel=0.15)
    assert predictions["p"].mean() == pytest.approx(predictions["y"].mean(), rel=0.15)
    # unweighted, the same rows overstate the risk by far: the check above can fail
    unweighted = fit(sample.drop(columns=WEIGHT), validation, small_features(), FALLS, config)
    assert _raw_mean(unweighted, train) > 1.5 * rate
    assert unweighted.validation_predictions["p_baseline"].mean() > 1.5 * predictions["y"].mean()


def test_sampled_fit_is_as_good_as_the_full_fit(
    frames: tuple[pd.DataFrame, pd.DataFrame],
    fitted: tuple[TrainedModels, pd.DataFrame],
    config: TrainingConfig,
) -> None:
    train, validation = frames
    full = fit(train, validation, small_features(), FALLS, config)
    trained, _ = fitted
    for key in ("auroc", "calibration_slope"):
        assert trained.metrics["model"][key] == pytest.approx(full.metrics["model"][key], abs=0.05)
    assert trained.validation_predictions["person_id"].equals(
        full.validation_predictions["person_id"]
    )


def test_the_bundle_says_it_was_fitted_on_a_sample(
    fitted: tuple[TrainedModels, pd.DataFrame],
) -> None:
    trained, sample = fitted
    meta = trained.bundle.metadata["sampling"]
    assert meta["negative_fraction"] == FRACTION
    sizes = meta["by_index_date"]
    assert sum(v["rows"] for v in sizes.values()) == len(sample)
    assert sum(v["positives"] for v in sizes.values()) == int(sample["label"].sum())
    represented = sum(v["represented"] for v in sizes.values())
    assert represented == pytest.approx(float(sample[WEIGHT].sum()), abs=1)


def test_the_calibration_people_must_be_whole(
    frames: tuple[pd.DataFrame, pd.DataFrame], config: TrainingConfig
) -> None:
    train, validation = frames
    thinned = sampled(train, config, whole=False)
    split = inner_split(thinned["person_id"], config, validation["person_id"])
    assert (thinned.loc[split.calibrate, WEIGHT] > 1).any()
    with pytest.raises(TrainingError, match="calibration rows .* must not be sampled"):
        fit(thinned, validation, small_features(), FALLS, config)
    bad = sampled(train, config)
    bad.loc[0, WEIGHT] = 0.0
    with pytest.raises(TrainingError, match=f"column {WEIGHT}: row 0"):
        fit(bad, validation, small_features(), FALLS, config)


def test_sampling_is_off_by_default_and_the_fraction_is_checked(config: TrainingConfig) -> None:
    assert config.sampling.negative_fraction == 1.0 and not config.sampling.enabled
    assert not any(k.startswith("sampling") for k in config.flat_params())
    on = config.with_negative_fraction(0.1)
    assert on.flat_params()["sampling.negative_fraction"] == 0.1
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="negative sampling fraction"):
            config.with_negative_fraction(bad)


def test_sampling_from_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "sampled.toml"
    path.write_text('extends = "training.toml"\n[sampling]\nnegative_fraction = 0.25\n')
    (tmp_path / "training.toml").write_text('config_version = "x"\n')
    assert TrainingConfig.load(path).sampling.negative_fraction == 0.25
    path.write_text('config_version = "x"\n[sampling]\nnegative_fraction = 0\n')
    with pytest.raises(ConfigError, match="negative_fraction"):
        TrainingConfig.load(path)


def test_the_model_card_says_the_model_was_fitted_on_a_sample(
    fitted: tuple[TrainedModels, pd.DataFrame],
) -> None:
    trained, sample = fitted
    words = sample_words(trained.bundle.metadata["sampling"])
    assert words is not None and "20% of the negative person-dates" in words
    assert f"{len(sample):,} rows" in words
    assert sample_words(None) is None
    page = render_html(evaluate(make_input(1500, training_sample=words), FairnessLimits(n_boot=20)))
    assert "Training sample" in page and "20% of the negative person-dates" in page
    assert "Training sample" not in render_html(
        evaluate(make_input(1500), FairnessLimits(n_boot=20))
    )


@pytest.mark.slow  # a CLI call each
@pytest.mark.parametrize("fraction", ["0", "1.5"])
def test_the_train_command_names_a_bad_fraction(tmp_path: Path, fraction: str) -> None:
    result = live.carerisk(tmp_path, "train", "--outcome", "falls", "--sample-negatives", fraction)
    assert result.returncode != 0
    assert f"negative sampling fraction {fraction}" in result.stdout + result.stderr
