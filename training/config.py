"""The versioned training configuration (config/training.toml), validated by pydantic."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evaluation.drift import DriftLimits
from evaluation.metrics import CalibrationRule
from evaluation.monitor import MonitorLimits
from features.bands import RiskBands
from features.outcomes import Outcome

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "training.toml"
DEMO_CONFIG_PATH = DEFAULT_CONFIG_PATH.with_name("demo.toml")


class ConfigError(ValueError):
    """The training configuration file is missing or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LightGBMConfig(_Strict):
    num_leaves: int = Field(default=31, ge=2, le=1024)
    max_depth: int = Field(default=6, ge=1, le=16)  # always depth-limited
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    n_estimators: int = Field(default=600, ge=1)
    min_child_samples: int = Field(default=50, ge=1)
    feature_fraction: float = Field(default=0.8, gt=0, le=1)
    lambda_l2: float = Field(default=1.0, ge=0)
    early_stopping_rounds: int = Field(default=50, ge=1)
    inner_validation_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    deterministic: Literal[True] = True
    force_col_wise: Literal[True] = True
    num_threads: int = Field(default=2, ge=1)
    monotone_constraints: bool = True
    # boost again for the early-stopped rounds on the boosting and early-stopping rows together
    refit: bool = True


class CalibrationConfig(_Strict):
    holdout_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    min_positives_isotonic: int = Field(default=200, ge=0)
    metric: Literal["brier", "log_loss"] = "brier"
    # recalibration at the validation date on its held-out people (see models/calibration.py):
    # intercept alone from this many events, slope and intercept from the second number
    recalibration_min_events: int = Field(default=50, ge=1)
    recalibration_slope_min_events: int = Field(default=200, ge=1)


class ValidationConfig(_Strict):
    """The share of people held out of training altogether and measured at the validation
    date (the split is by person and by date: see training/fit.py inner_split)."""

    people_fraction: float = Field(default=0.25, gt=0, lt=0.5)


class SamplingConfig(_Strict):
    """Weighted sampling of negative person-dates at the training dates (the validation date
    and the calibration people stay whole): 1 keeps every row, as before. See
    features/training_sets.py NegativeSampling and the README's scale section."""

    negative_fraction: float = Field(default=1.0, gt=0, le=1)

    @property
    def enabled(self) -> bool:
        return self.negative_fraction < 1


class BandConfig(_Strict):
    """An outcome's bands in place of its definition's (features/outcomes.py)."""

    cuts: tuple[float, ...]
    labels: tuple[str, ...]

    def bands(self) -> RiskBands:
        return RiskBands(self.cuts, self.labels)

    @model_validator(mode="after")
    def _valid(self) -> BandConfig:
        self.bands()  # raises on bad cut points
        return self


class GateConfig(_Strict):
    """The promotion gate. Calibration (the slope, observed/expected events) is refused when
    its point lies outside the `..._range` or its whole `confidence` interval lies outside the
    `..._interval_range` (evaluation.metrics.CalibrationRule)."""

    auroc_tolerance: float = Field(default=0.01, ge=0, lt=0.5)
    bootstrap_replicates: int = Field(default=500, ge=10)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    calibration_slope_range: tuple[float, float] = (0.8, 1.2)
    calibration_slope_interval_range: tuple[float, float] = (0.9, 1.1)
    observed_expected_range: tuple[float, float] = (0.85, 1.18)
    observed_expected_interval_range: tuple[float, float] = (0.9, 1.1)

    @model_validator(mode="after")
    def _ordered(self) -> GateConfig:
        self.slope_rule()  # each raises on a range that does not hold 1
        self.observed_expected_rule()
        return self

    def slope_rule(self) -> CalibrationRule:
        return CalibrationRule(self.calibration_slope_range, self.calibration_slope_interval_range)

    def observed_expected_rule(self) -> CalibrationRule:
        return CalibrationRule(self.observed_expected_range, self.observed_expected_interval_range)


class MonitorConfig(_Strict):
    """When `carerisk monitor` says watch or retrain (evaluation/monitor.py, drift.py)."""

    psi_watch: float = Field(default=0.10, gt=0)
    psi_retrain: float = Field(default=0.25, gt=0)
    significance: float = Field(default=0.01, gt=0, lt=1)
    missing_shift_watch: float = Field(default=0.05, gt=0, le=1)
    missing_shift_retrain: float = Field(default=0.20, gt=0, le=1)
    new_level_share_watch: float = Field(default=0.01, gt=0, le=1)
    min_group_size: int = Field(default=200, ge=1)
    mean_risk_change_watch: float = Field(default=0.10, gt=0)
    mean_risk_change_retrain: float = Field(default=0.25, gt=0)
    new_code_min_rows: int = Field(default=50, ge=1)
    auroc_drop_watch: float = Field(default=0.02, ge=0, lt=0.5)
    auroc_drop_retrain: float = Field(default=0.05, ge=0, lt=0.5)
    # the gate's calibration rules (GateConfig), judged on the matured scores: retrain when
    # refused
    calibration_slope_range: tuple[float, float] = (0.8, 1.2)
    calibration_slope_interval_range: tuple[float, float] = (0.9, 1.1)
    observed_expected_range: tuple[float, float] = (0.85, 1.18)
    observed_expected_interval_range: tuple[float, float] = (0.9, 1.1)
    min_matured_events: int = Field(default=50, ge=1)
    bootstrap_replicates: int = Field(default=200, ge=10)

    @model_validator(mode="after")
    def _ordered(self) -> MonitorConfig:
        self.limits()  # raises on watch limits above retrain limits
        if self.auroc_drop_watch > self.auroc_drop_retrain:
            raise ValueError("auroc_drop_watch must not exceed auroc_drop_retrain")
        return self

    def limits(self) -> MonitorLimits:
        drift = DriftLimits(
            psi_watch=self.psi_watch,
            psi_retrain=self.psi_retrain,
            significance=self.significance,
            missing_shift_watch=self.missing_shift_watch,
            missing_shift_retrain=self.missing_shift_retrain,
            new_level_share_watch=self.new_level_share_watch,
            min_group_size=self.min_group_size,
            mean_risk_change_watch=self.mean_risk_change_watch,
            mean_risk_change_retrain=self.mean_risk_change_retrain,
        )
        return MonitorLimits(
            drift=drift,
            new_code_min_rows=self.new_code_min_rows,
            auroc_drop_watch=self.auroc_drop_watch,
            auroc_drop_retrain=self.auroc_drop_retrain,
            slope_rule=CalibrationRule(
                self.calibration_slope_range, self.calibration_slope_interval_range
            ),
            oe_rule=CalibrationRule(
                self.observed_expected_range, self.observed_expected_interval_range
            ),
            min_matured_events=self.min_matured_events,
            n_boot=self.bootstrap_replicates,
        )


class TrainingConfig(_Strict):
    config_version: str
    seed: int = 0
    lightgbm: LightGBMConfig = Field(default_factory=LightGBMConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    bands: dict[str, BandConfig] = Field(default_factory=dict)  # overrides, by outcome name
    gate: GateConfig = Field(default_factory=GateConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)

    @model_validator(mode="after")
    def _shares(self) -> TrainingConfig:
        held = (
            self.validation.people_fraction
            + self.calibration.holdout_fraction
            + self.lightgbm.inner_validation_fraction
        )
        if held >= 0.8:
            raise ValueError(f"validation, calibration and early-stopping shares sum to {held}")
        return self

    def check_outcomes(self, known: Iterable[str]) -> None:
        """Refuse [bands.<name>] sections that name no registered outcome (a typo)."""
        names = list(known)
        unknown = sorted(set(self.bands) - set(names))
        if unknown:
            raise ConfigError(
                f"training config has [bands.{unknown[0]}], which is not a registered outcome "
                f"(registered: {', '.join(names)})"
            )

    def bands_for(self, outcome: Outcome) -> RiskBands:
        """The config's [bands.<outcome>] when it has one, else the outcome's own."""
        override = self.bands.get(outcome.name)
        return override.bands() if override else outcome.bands

    def flat_params(self) -> dict[str, Any]:
        """Every setting as one flat mapping, for MLflow params."""
        out: dict[str, Any] = {"config_version": self.config_version, "seed": self.seed}
        for section in ("lightgbm", "calibration", "validation", "gate"):
            for key, value in getattr(self, section).model_dump().items():
                out[f"{section}.{key}"] = value
        for outcome, band in self.bands.items():
            out[f"bands.{outcome}.cuts"] = list(band.cuts)
        if self.sampling.enabled:
            out["sampling.negative_fraction"] = self.sampling.negative_fraction
        return out

    def with_negative_fraction(self, fraction: float) -> TrainingConfig:
        """This config with [sampling] negative_fraction set (validated)."""
        try:
            sampling = SamplingConfig(negative_fraction=fraction)
        except ValidationError as error:
            raise ConfigError(f"negative sampling fraction {fraction}: {error}") from error
        return self.model_copy(update={"sampling": sampling})

    @classmethod
    def load(cls, path: Path | None = None) -> TrainingConfig:
        path = Path(path) if path else DEFAULT_CONFIG_PATH
        if not path.is_file():
            raise ConfigError(f"training config {path} does not exist")
        try:
            return cls.model_validate(_read_toml(path))
        except (tomllib.TOMLDecodeError, ValidationError) as error:
            raise ConfigError(f"training config {path} is invalid: {error}") from error


def _read_toml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's settings; with `extends = "other.toml"` (beside it), the other file's
    settings with this file's laid over them, section by section."""
    if path.resolve() in seen:
        raise ConfigError(f"training config {path} extends itself")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    base = data.pop("extends", None)
    if base is None:
        return data
    parent = path.parent / str(base)
    if not parent.is_file():
        raise ConfigError(f"training config {path}: extends {base}, which does not exist")
    return _overlay(_read_toml(parent, (*seen, path.resolve())), data)


def _overlay(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _overlay(out[key], value) if both else value
    return out
