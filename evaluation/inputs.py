"""Typed inputs of an evaluation: the predictions, the people's groups and the limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.bands import RiskBands
from features.fairness import FAIRNESS_GROUPS
from features.feature_list import Feature

ThresholdKind = Literal["probability", "top_fraction"]

NOT_RECORDED = "Not recorded"
INPUT_NAME = "EvaluationInput"


@dataclass(frozen=True)
class FairnessLimits:
    """How far a group may stray before it is flagged.

    A flag needs the group's bootstrap interval to lie wholly beyond the limit and the
    group to have at least `min_group_size` people; smaller groups are shown, not flagged.
    """

    max_abs_log_oe: float = 0.25  # |log(observed / expected)|; 0.25 is O/E outside 0.78-1.28
    max_fnr_difference: float = 0.15
    max_fpr_difference: float = 0.10
    max_selection_difference: float = 0.10
    max_auroc_difference: float = 0.10
    min_auroc: float = 0.60
    min_group_size: int = 100
    min_group_events: int = 10  # a group AUROC is judged only with this many events and non-events
    # Error-rate gaps are always shown and flagged; they fail the gate only when this is set,
    # because calibration within groups is the prioritised property (see evaluation.fairness).
    error_rates_block: bool = False
    n_boot: int = 200
    ci_level: float = 0.95
    seed: int = 20240601

    def __post_init__(self) -> None:
        if not 0.5 < self.ci_level < 1:
            raise ValueError(f"FairnessLimits.ci_level must be in (0.5, 1), got {self.ci_level}")
        if self.n_boot < 10:
            raise ValueError(f"FairnessLimits.n_boot must be at least 10, got {self.n_boot}")


@dataclass(frozen=True)
class Check:
    """One named pass/fail check with a reason in plain words."""

    name: str
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "passed": self.passed, "reason": self.reason}


@dataclass
class EvaluationInput:
    """Everything an evaluation needs, all on the same validation people in the same order.

    `outcome`, `predicts`, `cohort`, `bands` and `capacity_unit` come from the outcome's
    definition (features/outcomes.py) and the model's bundle.
    """

    outcome: str
    predicts: str  # what a score is the chance of, in words
    model_name: str
    model_version: str
    cohort: str  # the cohort rule in words
    train_index_dates: Sequence[date]
    validation_index_dates: Sequence[date]
    y: np.ndarray
    p_model: np.ndarray
    p_baseline: np.ndarray
    groups: pd.DataFrame
    bands: RiskBands
    capacity_unit: str  # what the capacity view counts
    p_champion: np.ndarray | None = None
    p_true: np.ndarray | None = None
    # the records reference: the truth with every latent no record reveals at its mean
    p_reference: np.ndarray | None = None
    shap_values: np.ndarray | None = None
    feature_values: pd.DataFrame | None = None
    features: Sequence[Feature] = ()
    operating_threshold: float = 0.10
    threshold_kind: ThresholdKind = "probability"
    monthly_capacity: int | None = None
    died_before_event: np.ndarray | None = None
    champion_label: str = "champion"
    # how the model's training rows were sampled, in words (None: every row)
    training_sample: str | None = None
    # the digest of the code lists the features were computed with (codelists/)
    code_lists: str | None = None
    # what the training source lacked (the bundle's coverage record, features.coverage)
    coverage: Mapping[str, Any] | None = None


def _bad_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_probabilities(name: str, p: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(p, dtype=float).ravel()
    if arr.shape[0] != n:
        raise ValueError(f"{INPUT_NAME}.{name}: {arr.shape[0]} values but y has {n} rows")
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
    if bad.any():
        row = _bad_row(bad)
        raise ValueError(
            f"{INPUT_NAME}.{name} row {row}: value {float(arr[row])!r} "
            "is not a probability in [0, 1]"
        )
    return arr


def _check_binary(name: str, values: np.ndarray, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{INPUT_NAME}.{name}: {arr.shape[0]} values but y has {n} rows")
    bad = ~np.isin(arr, (0.0, 1.0))
    if bad.any():
        row = _bad_row(bad)
        raise ValueError(f"{INPUT_NAME}.{name} row {row}: value {float(arr[row])!r} is not 0 or 1")
    return arr.astype(int)


def _check_groups(groups: pd.DataFrame, n: int) -> pd.DataFrame:
    unknown = [c for c in groups.columns if c not in FAIRNESS_GROUPS]
    if unknown:
        raise ValueError(
            f"{INPUT_NAME}.groups column {unknown[0]!r} is not one of {', '.join(FAIRNESS_GROUPS)}"
        )
    if len(groups) != n:
        raise ValueError(f"{INPUT_NAME}.groups: {len(groups)} rows but y has {n} rows")
    # Missing descriptors become their own visible group, never dropped.
    out = groups.reset_index(drop=True).astype(object)
    return out.where(out.notna(), NOT_RECORDED).astype(str)


def _check_shap(inp: EvaluationInput, n: int) -> None:
    if inp.shap_values is None:
        return
    shap = np.asarray(inp.shap_values, dtype=float)
    if inp.feature_values is None:
        raise ValueError(f"{INPUT_NAME}.feature_values is required with shap_values")
    if shap.ndim != 2 or shap.shape != inp.feature_values.shape:
        raise ValueError(
            f"{INPUT_NAME}.shap_values has shape {shap.shape} but feature_values has "
            f"{inp.feature_values.shape}"
        )
    if shap.shape[0] != n:
        raise ValueError(f"{INPUT_NAME}.shap_values: {shap.shape[0]} rows but y has {n} rows")
    bad = ~np.isfinite(shap)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{INPUT_NAME}.shap_values row {row}, column "
            f"{inp.feature_values.columns[col]!r}: value is not finite"
        )


def validated(inp: EvaluationInput) -> EvaluationInput:
    """A copy with arrays as clean numpy arrays; raises ValueError naming the bad field and row."""
    y = _check_binary("y", inp.y)
    n = y.shape[0]
    if n == 0 or y.min() == y.max():
        raise ValueError(f"{INPUT_NAME}.y needs both events and non-events; got {n} rows")
    if inp.threshold_kind == "top_fraction" and not 0 < inp.operating_threshold < 1:
        raise ValueError(f"{INPUT_NAME}.operating_threshold as top_fraction must be in (0, 1)")
    if inp.threshold_kind == "probability" and not 0 < inp.operating_threshold < 1:
        raise ValueError(f"{INPUT_NAME}.operating_threshold as probability must be in (0, 1)")
    _check_shap(inp, n)
    return EvaluationInput(
        outcome=inp.outcome,
        predicts=inp.predicts,
        model_name=inp.model_name,
        model_version=str(inp.model_version),
        cohort=inp.cohort,
        train_index_dates=list(inp.train_index_dates),
        validation_index_dates=list(inp.validation_index_dates),
        y=y,
        p_model=_check_probabilities("p_model", inp.p_model, n),
        p_baseline=_check_probabilities("p_baseline", inp.p_baseline, n),
        groups=_check_groups(inp.groups, n),
        p_champion=None
        if inp.p_champion is None
        else _check_probabilities("p_champion", inp.p_champion, n),
        p_true=None if inp.p_true is None else _check_probabilities("p_true", inp.p_true, n),
        p_reference=None
        if inp.p_reference is None
        else _check_probabilities("p_reference", inp.p_reference, n),
        shap_values=None if inp.shap_values is None else np.asarray(inp.shap_values, float),
        feature_values=inp.feature_values,
        features=list(inp.features),
        bands=inp.bands,
        operating_threshold=float(inp.operating_threshold),
        threshold_kind=inp.threshold_kind,
        monthly_capacity=inp.monthly_capacity,
        capacity_unit=inp.capacity_unit,
        died_before_event=None
        if inp.died_before_event is None
        else _check_binary("died_before_event", inp.died_before_event, n),
        champion_label=inp.champion_label,
        training_sample=inp.training_sample,
        code_lists=inp.code_lists,
        coverage=inp.coverage,
    )
