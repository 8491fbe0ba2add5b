from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from features.bands import RiskBands
from features.outcomes import COMPLEX_DEPENDENCY, FALLS
from tests.models.frames import make_frame, small_features, split_latest
from training.config import DEMO_CONFIG_PATH, ConfigError, TrainingConfig
from training.fit import TrainedModels, TrainingError, fit, inner_split, monotone_constraints


def test_shipped_config_loads() -> None:
    config = TrainingConfig.load()
    assert config.lightgbm.deterministic is True
    assert config.lightgbm.max_depth > 0
    assert config.bands_for(FALLS).labels[-1] == "very high"
    assert config.bands_for(COMPLEX_DEPENDENCY).cuts == (0.05, 0.15, 0.30)
    assert config.bands == {}  # the outcomes' own bands (features/outcomes.py)


def test_the_demo_config_is_the_shipped_one_with_its_gate_widened() -> None:
    demo, shipped = TrainingConfig.load(DEMO_CONFIG_PATH), TrainingConfig.load()
    low, high = demo.gate.observed_expected_range
    shipped_low, shipped_high = shipped.gate.observed_expected_range
    assert low < shipped_low and high > shipped_high
    widened = demo.gate.model_copy(update={"observed_expected_range": (shipped_low, shipped_high)})
    assert widened == shipped.gate and demo.config_version != shipped.config_version
    for section in ("lightgbm", "calibration", "validation", "bands", "seed"):
        assert getattr(demo, section) == getattr(shipped, section), section


def test_extends_lays_a_file_over_another(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text('config_version = "a"\n[gate]\nauroc_tolerance = 0.02\n')
    over = tmp_path / "over.toml"
    over.write_text('extends = "base.toml"\n[gate]\nconfidence = 0.9\n')
    config = TrainingConfig.load(over)
    assert (config.config_version, config.gate.auroc_tolerance, config.gate.confidence) == (
        "a", 0.02, 0.9,
    )  # fmt: skip
    over.write_text('extends = "over.toml"\n')
    with pytest.raises(ConfigError, match="extends itself"):
        TrainingConfig.load(over)
    over.write_text('extends = "gone.toml"\n')
    with pytest.raises(ConfigError, match="extends gone.toml, which does not exist"):
        TrainingConfig.load(over)


def test_bad_config_is_named(tmp_path: Path) -> None:
    path = tmp_path / "training.toml"
    path.write_text('config_version = "x"\n[bands.falls]\ncuts = [0.3, 0.1]\n')
    with pytest.raises(ConfigError, match="training.toml is invalid"):
        TrainingConfig.load(path)
    path.write_text('config_version = "x"\n[bands.fals]\ncuts = [0.3]\nlabels = ["a", "b"]\n')
    typo = TrainingConfig.load(path)
    with pytest.raises(ConfigError, match=r"\[bands.fals\], which is not a registered outcome"):
        typo.check_outcomes(["falls", "complex_dependency"])
    path.write_text('config_version = "x"\nbands = {}\n[lightgbm]\ndeterministic = false\n')
    with pytest.raises(ConfigError, match="deterministic"):
        TrainingConfig.load(path)
    with pytest.raises(ConfigError, match="does not exist"):
        TrainingConfig.load(tmp_path / "nope.toml")


def test_config_bands_replace_an_outcomes_own(tmp_path: Path) -> None:
    path = tmp_path / "training.toml"
    path.write_text(
        'config_version = "x"\n[bands.falls]\ncuts = [0.1, 0.3]\nlabels = ["a", "b", "c"]\n'
    )
    config = TrainingConfig.load(path)
    assert config.bands_for(FALLS) == RiskBands((0.1, 0.3), ("a", "b", "c"))
    assert config.bands_for(COMPLEX_DEPENDENCY) == COMPLEX_DEPENDENCY.bands


@pytest.mark.slow  # two trainings
def test_same_data_and_seed_give_identical_model_text(config: TrainingConfig) -> None:
    train, validation = split_latest(make_frame(people=1500, seed=5))
    first = fit(train, validation, small_features(), FALLS, config)
    second = fit(train, validation, small_features(), FALLS, config)
    assert first.bundle.model_text == second.bundle.model_text
    assert first.bundle.calibrator == second.bundle.calibrator
    other = config.model_copy(update={"seed": config.seed + 1})
    third = fit(train, validation, small_features(), FALLS, other)
    assert third.bundle.model_text != first.bundle.model_text


def test_inner_split_is_by_person(config: TrainingConfig) -> None:
    frame = make_frame(people=1000, seed=1)
    train, validation = split_latest(frame)
    split = inner_split(train["person_id"], config, validation["person_id"])
    groups = (split.fit, split.stop, split.calibrate)
    assert (np.sum(groups, axis=0) <= 1).all(), "a training row is in two groups"
    validation_people = set(validation.loc[split.evaluate, "person_id"])
    for mask in groups:
        people = set(train.loc[mask, "person_id"])
        assert not people & set(train.loc[~mask, "person_id"])
        assert not people & validation_people, "a validated person was fitted on"
    assert not (split.recalibrate & split.evaluate).any()
    recalibrating = set(validation.loc[split.recalibrate, "person_id"])
    assert recalibrating <= set(train.loc[split.calibrate, "person_id"])
    assert split.evaluate.mean() == pytest.approx(config.validation.people_fraction, abs=0.04)
    share = config.calibration.holdout_fraction * (1 - config.validation.people_fraction)
    assert split.calibrate.mean() == pytest.approx(share, abs=0.04)
    unused = train.loc[~split.model_rows, "person_id"]
    assert not set(unused) & set(validation.loc[~split.evaluate, "person_id"])


def test_validation_people_do_not_depend_on_the_seed(config: TrainingConfig) -> None:
    train, validation = split_latest(make_frame(people=1000, seed=1))
    other = config.model_copy(update={"seed": config.seed + 1})
    first, second = (
        inner_split(train["person_id"], c, validation["person_id"]) for c in (config, other)
    )
    np.testing.assert_array_equal(first.evaluate, second.evaluate)
    assert not np.array_equal(first.calibrate, second.calibrate)


def test_validation_people_do_not_move_the_model(config: TrainingConfig) -> None:
    """Changing the labels of the people measured at the validation date, at every date,
    leaves the model untouched: they are held out of training altogether."""
    train, validation = split_latest(make_frame(people=1500, seed=5))
    first = fit(train, validation, small_features(), FALLS, config)
    evaluated = set(first.validation_predictions["person_id"])
    flipped = train.copy()
    rows = flipped["person_id"].isin(evaluated).to_numpy()
    flipped.loc[rows, "label"] = 1 - flipped.loc[rows, "label"]
    second = fit(flipped, validation, small_features(), FALLS, config)
    assert rows.any()
    assert second.bundle.model_text == first.bundle.model_text
    assert second.bundle.calibrator == first.bundle.calibrator
    coefficients = [m.baseline.named_steps["logistic"].coef_ for m in (first, second)]
    np.testing.assert_array_equal(*coefficients)


def test_monotone_constraints_follow_registry(trained: TrainedModels) -> None:
    assert monotone_constraints(small_features(), "falls") == [1, 1, 0, 0, 0, 0]
    assert monotone_constraints(small_features(), "complex_dependency") == [1, 0, 0, 0, 0, 0]
    assert "monotone_constraints: 1,1,0,0,0,0" in trained.bundle.model_text.replace("[", "")


def test_validation_metrics_model_and_baseline(trained: TrainedModels) -> None:
    for name in ("model", "baseline"):
        metrics = trained.metrics[name]
        assert 0.65 < metrics["auroc"] < 0.9
        assert 0 < metrics["brier"] < metrics["prevalence"]
        assert 0.6 < metrics["calibration_slope"] < 1.6
    predictions = trained.validation_predictions
    assert list(predictions.columns) == ["person_id", "index_date", "y", "p", "p_baseline"]
    assert predictions["index_date"].nunique() == 1
    assert trained.split_sizes["validation"] == len(predictions)


def test_baseline_reloads_from_skops(trained: TrainedModels, tmp_path: Path) -> None:
    path = tmp_path / "baseline.skops"
    sio.dump(trained.baseline, path)
    untrusted = sio.get_untrusted_types(file=path)
    loaded = sio.load(path, trusted=untrusted)
    frame = make_frame(people=100, seed=8)
    matrix = trained.bundle.matrix(frame)
    np.testing.assert_allclose(
        loaded.predict_proba(matrix)[:, 1], trained.baseline.predict_proba(matrix)[:, 1]
    )


def test_bad_labels_are_named(config: TrainingConfig) -> None:
    train, validation = split_latest(make_frame(people=300, seed=2))
    train.loc[7, "label"] = 2
    with pytest.raises(TrainingError, match="training frame column label must be 0/1; row 7"):
        fit(train, validation, small_features(), FALLS, config)
    with pytest.raises(TrainingError, match="lacks column"):
        fit(validation, validation.drop(columns=["age"]), small_features(), FALLS, config)


def test_a_categorical_empty_in_every_row_is_kept(config: TrainingConfig) -> None:
    """An imported extract can leave a coded column empty for everyone (OMOP carries no
    ethnicity in the county's terms): the baseline keeps it as one constant level."""
    frame = make_frame(people=600, seed=4)
    frame["efi_band"] = None
    train, validation = split_latest(frame)
    trained = fit(train, validation, small_features(), FALLS, config)
    names = trained.baseline.named_steps["columns"].get_feature_names_out().tolist()
    assert [n for n in names if "efi_band" in n] == ["categorical__efi_band_-1.0"]
    assert 0 < trained.metrics["baseline"]["auroc"] < 1
